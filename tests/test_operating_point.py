"""A learned model carries its operating point (match / possible thresholds) in its manifest (issue 11).

Settings left unset use it; set ones win; a model without one keeps 0.5 / 0.25; a malformed one is refused
at load, not discovered as odd decisions later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.config import LINK_MATCH, ConfigError, link_match, load_settings
from consumer.engine.fusion import LearnedModel, ModelError, learned_thresholds, manifest_path
from consumer.io.artifacts import build_pipeline
from tests.harness.service import shared_text_encoder


def _with_point(tmp_path: Path, point: object) -> Path:
    path = tmp_path / "m.pkl"
    model = LearnedModel.load()
    model.meta.pop("operating_point", None)
    model.save(path)
    manifest = json.loads(manifest_path(path).read_text())
    if point is not None:
        manifest["operating_point"] = point
    manifest_path(path).write_text(json.dumps(manifest))
    return path


def test_the_shipped_model_decides_at_its_own_operating_point() -> None:
    shipped = json.loads((Path(__file__).parents[1] / "consumer/data/fusion-default.json").read_text())
    point = shipped["operating_point"]
    pipe = build_pipeline(load_settings(env={}), text_encoder=shared_text_encoder())
    assert (pipe.fuser.match_threshold, pipe.fuser.possible_threshold) == (point["match"], point["possible"])
    assert pipe.guards.match_threshold == point["match"]  # the clustering's guards are in the same units


def test_configured_thresholds_win_and_keep_a_valid_pair() -> None:
    model = LearnedModel.load()
    point = model.meta["operating_point"]
    env = load_settings(env={"DEDUP_FUSION__LEARNED_MATCH": "0.6"}).fusion
    assert learned_thresholds(env, model) == (0.6, point["possible"])
    low = load_settings(env={"DEDUP_FUSION__LEARNED_MATCH": "0.1"}).fusion
    assert learned_thresholds(low, model) == (0.1, 0.1)  # possible never above match
    both = load_settings(env={"DEDUP_FUSION__LEARNED_MATCH": "0.7", "DEDUP_FUSION__LEARNED_POSSIBLE": "0.3"}).fusion
    assert learned_thresholds(both, model) == (0.7, 0.3)
    with pytest.raises(ConfigError, match="learned_possible <= learned_match"):
        load_settings(env={"DEDUP_FUSION__LEARNED_MATCH": "0.3", "DEDUP_FUSION__LEARNED_POSSIBLE": "0.6"})


LINKED = ('[profile]\nname = "{profile}"\nid_field = "listing_id"\nsource_field = "listing_id"\n'
          'source_pattern = "^([^_]+)_"\n')


def _linked(tmp_path: Path, profile: str = "listing", env: dict[str, str] | None = None):  # noqa: ANN202
    cfg = tmp_path / f"{profile}.toml"
    cfg.write_text(LINKED.format(profile=profile))
    return load_settings(cfg, env=env or {})


def test_a_file_linked_across_shops_matches_at_the_link_point(tmp_path: Path) -> None:
    """Two shops linked: a listing's partner in the other shop is a match far more often than a candidate pair
    of a one-pool file, the models' operating points are chosen on the latter; the link point replaces
    them for the shipped model and the fitted weights alike (`fusion.link_match`)."""
    linked = _linked(tmp_path)
    point = LINK_MATCH["listing"]
    assert link_match(linked) == point
    model = LearnedModel.load()
    assert learned_thresholds(linked.fusion, model, link_match(linked)) == (point, point)
    assert link_match(load_settings(env={}, profile="listing")) is None  # one pool: the model's own point
    assert link_match(_linked(tmp_path, "person")) is None  # no default for persons (none measured)
    assert link_match(_linked(tmp_path, "person", {"DEDUP_FUSION__LINK_MATCH": "0.2"})) == 0.2
    explicit = _linked(tmp_path, env={"DEDUP_FUSION__LEARNED_MATCH": "0.6"})
    assert learned_thresholds(explicit.fusion, model, link_match(explicit))[0] == 0.6  # a set threshold wins
    with pytest.raises(ConfigError, match="link_match"):
        _linked(tmp_path, env={"DEDUP_FUSION__LINK_MATCH": "1.5"})


def test_the_link_point_unset_leaves_the_config_hash_as_it_was(tmp_path: Path) -> None:
    """Events and snapshots carry the settings' hash: a setting added unset must not change it, or every
    deployment's snapshots stop matching on upgrade (these are the hashes before `link_match` existed)."""
    assert load_settings(env={}).fingerprint() == "9a539ec5e97b"
    assert load_settings(env={}, profile="listing").fingerprint() == "192c033f59e4"
    assert _linked(tmp_path, env={"DEDUP_FUSION__LINK_MATCH": "0.1"}).fingerprint() != _linked(tmp_path).fingerprint()


def test_a_model_fitted_to_labels_keeps_its_own_point_when_linked(tmp_path: Path) -> None:
    """The user's answers chose a labelled model's point; the link default does not overrule them."""
    model = LearnedModel.load()
    model.meta.update(kind="labelled", operating_point={"match": 0.42, "possible": 0.21})
    linked = _linked(tmp_path)
    assert learned_thresholds(linked.fusion, model, link_match(linked)) == (0.42, 0.21)


def test_the_linked_pipeline_decides_and_clusters_at_the_link_point(tmp_path: Path) -> None:
    from consumer.io.artifacts import build_pipeline

    with build_pipeline(_linked(tmp_path)) as pipe:
        assert pipe.fuser.match_threshold == pipe.guards.match_threshold == LINK_MATCH["listing"]
    with build_pipeline(load_settings(env={}, profile="listing")) as pipe:
        assert pipe.fuser.match_threshold > LINK_MATCH["listing"]


def test_a_model_without_an_operating_point_keeps_even_odds(tmp_path: Path) -> None:
    model = LearnedModel.load(_with_point(tmp_path, None))
    assert learned_thresholds(load_settings(env={}).fusion, model) == (0.5, 0.25)


@pytest.mark.parametrize("point", [{"match": 0.2, "possible": 0.4}, {"match": "high"}, [0.4, 0.2],
                                   {"match": 1.5, "possible": 0.2}])
def test_a_malformed_operating_point_is_refused_at_load(tmp_path: Path, point: object) -> None:
    with pytest.raises(ModelError, match="operating_point"):
        LearnedModel.load(_with_point(tmp_path, point))
