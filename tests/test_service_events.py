"""Events and input decoding of `dedup run`, without a broker: schema validity, stable ids, reasons.

Why: the event id must depend only on what the event says (so a replay at another offset repeats it), every
event must validate against the published schema file, and every kind of bad input must map to a stable
reason code instead of an exception.
"""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Message
from harness.service import event_validator

from consumer.config import load_settings
from consumer.engine.pipeline import Decision, Match
from consumer.engine.records import Record
from consumer.io.events import Source, build_events, event_id, upgrade_event
from consumer.service.batch import PROFILE_HEADER, DeadLetter, Output, decode_message

MODS = {"text": 0.91, "name": 0.97, "city": 1.0, "behaviour": None, "device": 0.6}
SRC = Source("signups", 0, 41, 1_700_000_000_123)


def decisions() -> dict[str, Decision]:
    match = Match("r1", "cl_a", 0.93, "match", dict(MODS))
    possible = Match("r7", "cl_b", 0.55, "possible", {**MODS, "text": 1.0000001})
    return {
        "new": Decision("r2", "cl_r2", "r2", "new", 2),
        "joined": Decision("r3", "cl_a", "r1", "joined", 3, matches=[match, possible]),
        "merged": Decision("r4", "cl_a", "r1", "merged", 4, ["cl_c", "cl_b"], [match]),
    }


def events_of(d: Decision, source: Source = SRC, now: float = 1_700_000_001.5, version: str = "2") -> list[dict]:
    return build_events(d, source, model_version="learned:abc", config_version="cfg123", now=now,
                        schema_version=version)


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", ["new", "joined", "merged"])
def test_events_validate_against_schema_file(kind: str, version: str) -> None:
    evs = events_of(decisions()[kind], version=version)
    assert {e["schema_version"] for e in evs} == {version}
    for e in evs:
        assert list(event_validator().iter_errors(e)) == [], e
    types = [e["event_type"] for e in evs]
    assert types[0] == "record.clustered"
    assert types.count("clusters.merged") == (kind == "merged")
    assert types.count("duplicate.possible") == (kind == "joined")


def test_event_content() -> None:
    joined = events_of(decisions()["joined"])
    clustered, possible = joined
    assert clustered["outcome"] == "joined" and clustered["fused"] == 0.93
    assert clustered["scores"]["behaviour"] is None and clustered["record_time"] == "2023-11-14T22:13:20.123Z"
    assert possible["candidate_record_id"] == "r7" and possible["scores"]["text"] == 1.0  # clamped
    merged = events_of(decisions()["merged"])
    assert merged[0]["outcome"] == "merged"  # v2: the decision's outcome, as in a dedup batch line
    assert events_of(decisions()["merged"], version="1")[0]["outcome"] == "joined"  # v1 keeps its words
    assert merged[1]["surviving_cluster_id"] == "cl_a" and merged[1]["merged_cluster_ids"] == ["cl_b", "cl_c"]
    new = events_of(decisions()["new"], Source("signups", 0, 3, None))[0]
    assert new["fused"] is None and new["scores"] == {} and new["record_time"] is None


def test_v2_scores_are_the_profiles_modalities() -> None:
    """A plug-in modality (e.g. the postcode of docs/extending.md) reaches the events; v1 cannot carry it."""
    match = Match("r1", "cl_a", 0.93, "match", {"text": 0.9, "name": 1.0, "city": 1.0, "postcode": 0.5})
    d = Decision("r3", "cl_a", "r1", "joined", 3, matches=[match])
    (v2,) = events_of(d)
    assert v2["scores"]["postcode"] == 0.5 and v2["matches"][0]["scores"]["postcode"] == 0.5
    assert list(event_validator().iter_errors(v2)) == []
    (v1,) = events_of(d, version="1")
    assert "postcode" not in v1["scores"] and v1["scores"]["behaviour"] is None


@pytest.mark.parametrize("kind", ["new", "joined", "merged"])
def test_v1_events_upgrade_to_v2_and_keep_their_ids(kind: str) -> None:
    d = decisions()[kind]
    for v1, v2 in zip(events_of(d, version="1"), events_of(d), strict=True):
        assert v1["event_id"] == v2["event_id"]  # subscribers de-duplicate across the upgrade
        if v2.get("outcome") == "merged":  # a v1 event alone cannot tell a bridge (its clusters.merged can)
            v2 = {**v2, "outcome": "joined"}
        assert upgrade_event(v1) == v2
        assert upgrade_event(v2) is v2


def test_event_ids_ignore_offsets_and_time_but_not_content() -> None:
    d = decisions()["joined"]
    a = [e["event_id"] for e in events_of(d)]
    b = [e["event_id"] for e in events_of(d, Source("other", 3, 999, None), now=1_800_000_000)]
    assert a == b and len(set(a)) == len(a)
    assert a[0] == event_id("r3", "record.clustered")
    assert event_id("r3", "record.clustered") != event_id("r4", "record.clustered")


def test_replays_are_not_built() -> None:
    with pytest.raises(ValueError):
        events_of(Decision("r1", "cl_a", "r1", "replay", 1))


def test_output_key_is_the_cluster() -> None:
    e = events_of(decisions()["merged"])[1]
    out = Output.from_bytes(orjson.dumps(e))
    assert out.key == b"cl_a" and out.event_type == "clusters.merged" and out.event_id == e["event_id"]


def msg(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Message:
    return Message(topic="in", partition=0, offset=7, value=value, headers=headers, timestamp=(1, 1))


GOOD = {"customer_id": "c1", "name": "Ana Souza", "city": "Recife", "browser": "Chrome", "os": "Android",
        "login_times": '["2024-01-02 03:04:05"]'}


@pytest.mark.parametrize(("value", "headers", "reason", "stage"), [
    (b'{"customer_id": "c1", "name": ', None, "malformed_json", "decode"),
    (b"\xff\xfe{}", None, "bad_encoding", "decode"),
    (None, None, "empty_value", "decode"),
    (b"[1, 2]", None, "not_an_object", "validate"),
    (orjson.dumps({**GOOD, "customer_id": None}), None, "missing_id", "validate"),
    (orjson.dumps({**GOOD, "name": {"first": "Ana"}}), None, "wrong_type", "validate"),
    (orjson.dumps({**GOOD, "name": "A" * 600}), None, "oversized_field", "validate"),
    (orjson.dumps({**GOOD, "pad": "x" * 70_000}), None, "oversized_record", "decode"),
    (orjson.dumps({**GOOD, "login_times": '["yesterday"]'}), None, "bad_timestamps", "validate"),
    (orjson.dumps(GOOD), [(PROFILE_HEADER, b"no-such-profile")], "unknown_profile", "decode"),
])
def test_bad_input_reasons(value: bytes | None, headers: list | None, reason: str, stage: str) -> None:
    got = decode_message(msg(value, headers), load_settings(env={}))
    assert isinstance(got, DeadLetter) and (got.reason, got.stage) == (reason, stage)
    assert "Ana" not in got.detail and "Recife" not in got.detail


def test_good_input_with_matching_profile_header() -> None:
    got = decode_message(msg(orjson.dumps(GOOD), [(PROFILE_HEADER, b"crm-signup")]), load_settings(env={}))
    assert isinstance(got, Record) and got.record_id == "c1"
