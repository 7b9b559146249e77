"""The worked example of docs/extending.md: a postcode modality added as one module plus a profile entry.

Shows that the engine follows the encoder's contribution everywhere: its columns are built and stored,
its features reach comparison (and rarity), its score reaches rule fusion and is reported in decisions,
training would constrain it, and a learned model that never saw it refuses to run with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.service import event_validator

from consumer.config import Settings, load_settings
from consumer.engine.fusion import ModelError
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record, parse_record
from consumer.io.artifacts import build_pipeline
from consumer.io.events import Source, build_events

PROFILE = """
[profile]
name = "person"
id_field = "id"
key_fields = []
roles = { postcode = "postcode" }
encoders = ["text", "names", "consumer.encoders.postcode:PostcodeEncoder"]

[fusion]
mode = "rule"
"""

ROWS = [
    {"id": "1", "given_name": "Robert", "surname": "Smith", "suburb": "Carlton", "postcode": "3053"},
    {"id": "2", "given_name": "Bob", "surname": "Smith", "suburb": "Carlton", "postcode": "3053"},
    {"id": "3", "given_name": "Robert", "surname": "Smith", "suburb": "Carlton", "postcode": "3121"},
    {"id": "4", "given_name": "Alice", "surname": "Nguyen", "suburb": "Richmond", "postcode": ""},
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("cfg") / "people.toml"
    path.write_text(PROFILE)
    return load_settings(path, env={})


@pytest.fixture(scope="module")
def pipe(settings: Settings) -> Pipeline:
    return build_pipeline(settings)


def _records(settings: Settings) -> list[Record]:
    return [parse_record(r, settings.profile, settings.limits) for r in ROWS]


def test_profile_builds_only_its_encoders_and_their_columns(pipe: Pipeline, settings: Settings) -> None:
    assert [e.name for e in pipe.encoders] == ["text", "names", "postcode"]
    assert _records(settings)[0].role("postcode") == "3053"
    cols = pipe.encode(_records(settings))
    assert "postcode" in cols and cols["postcode"].shape == (4, 2)
    assert not {"hour", "device"} & set(cols)  # no behaviour or device encoder: no empty columns
    assert cols["postcode"][3].tolist() == [0, 0]  # absent
    assert "encode_postcode" in pipe.encode_stages


def test_features_rarity_and_monotone_derive_from_the_contribution(pipe: Pipeline) -> None:
    feats = pipe.comparator.features
    assert "postcode" in feats and "postcode_rarity" in feats
    assert not any(f.startswith("beh_") for f in feats) and "device" not in feats
    assert pipe.comparator.monotone["postcode"] == 1 and pipe.comparator.monotone["postcode_rarity"] == 0
    assert "postcode" in pipe.fuser.modalities
    assert ("postcode", 0.2) in pipe.fuser.layout.rule  # the encoder's declared default weight


def test_postcode_score_reaches_fusion_and_decisions(settings: Settings, pipe: Pipeline) -> None:
    pipe = build_pipeline(settings, text_encoder=pipe.text)
    pipe.pair_log = []
    out = {d.record_id: d for d in pipe.process(_records(settings))}
    same = next(m for m in out["2"].matches if m.record_id == "1")
    assert same.scores["postcode"] == 1.0 and "postcode" in same.to_dict()["scores"]
    other = next(m for m in out["3"].matches if m.record_id == "1")
    assert other.scores["postcode"] == 0.0
    # ...and the events (schema v2's score map), which validate against the published schema.
    events = build_events(out["2"], Source("people", 0, 1, None), model_version=pipe.model_version,
                          config_version=pipe.config_version, now=0.0)
    assert events[0]["scores"]["postcode"] == 1.0 and events[0]["matches"][0]["scores"]["postcode"] == 1.0
    assert all(not list(event_validator().iter_errors(e)) for e in events)
    assert pipe.store.column("postcode").shape == (4, 2)  # stored with the record (keyed hashes)
    # The same pair with an agreeing postcode fuses higher: the feature reaches the rule.
    row, cands, feats = next(e for e in pipe.pair_log if e[0] == 2)
    pair = feats[list(cands).index(0)][None, :].copy()
    agree = pair.copy()
    agree[0, pipe.comparator.features.index("postcode")] = 1.0
    assert pipe.fuser.score(agree)[0][0] > pipe.fuser.score(pair)[0][0]


def test_weight_is_configurable_and_in_the_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(PROFILE + "\n[fusion.weights]\npostcode = 0.0\n")
    zero = load_settings(path, env={})
    path.write_text(PROFILE)
    default = load_settings(path, env={})
    assert zero.fingerprint() != default.fingerprint()
    assert ("postcode", 0.0) in build_pipeline(zero, text_encoder=build_pipeline(default).text).fuser.layout.rule


def test_a_learned_model_that_never_saw_the_modality_refuses(settings: Settings, pipe: Pipeline) -> None:
    import dataclasses

    learned = dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="learned"))
    with pytest.raises(ModelError, match="postcode"):
        build_pipeline(learned, text_encoder=pipe.text)


def test_profile_without_behaviour_or_device_builds_neither(pipe: Pipeline) -> None:
    person = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    p = build_pipeline(person, text_encoder=pipe.text)
    assert [e.name for e in p.encoders] == ["text", "names", "person", "address"]
    cols = p.encode([parse_record(ROWS[0], person.profile, person.limits)])
    assert not {"hour", "weekend", "device"} & set(cols)
    assert set(p.fuser.modalities) == {"text", "name", "city", "dob", "phone", "address"}
    # The shipped CRM model never saw the person fields: learned fusion needs a model for this profile
    # (`dedup batch` fits one to its input without labels, `dedup fit` writes one).
    with pytest.raises(ModelError, match="dedup fit"):
        build_pipeline(load_settings(profile="person", env={}), text_encoder=pipe.text)
