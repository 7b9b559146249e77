"""Linking across sources (`profile.source_field`, `consumer.engine.sources`): a file joining two shops'
catalogues is linked across them, never inside one (Amazon-Google lost most of its precision to pairs
inside one shop when deduplicated as one pool)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from consumer.config import LINK_MATCH, ConfigError, load_settings
from consumer.engine.clustering import ClusterState, Guards
from consumer.engine.records import parse_record, source_of
from consumer.engine.sources import across_sources

LINK = ('[profile]\nname = "listing"\nid_field = "listing_id"\nsource_field = "listing_id"\n'
        'source_pattern = "^([^_]+)_"\n')


def test_the_source_is_cut_from_a_column_by_the_pattern(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(LINK)
    s = load_settings(cfg, env={})
    rec = parse_record({"listing_id": "b_17", "title": "sony turntable"}, s.profile, s.limits)
    assert rec.role("source") == "b"
    assert source_of("no-prefix", "^([^_]+)_") == ""  # no match: compared with every source
    assert source_of("shop-a", None) == "shop-a"


@pytest.mark.parametrize("extra, message", [('source_pattern = "^[^_]+_"\n', "exactly one group"),
                                            ('source_pattern = "(["\n', "not a regular expression")])
def test_a_bad_pattern_is_a_one_line_error(tmp_path: Path, extra: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profile]\nname = "listing"\nid_field = "listing_id"\nsource_field = "listing_id"\n' + extra)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env={})
    cfg.write_text('[profile]\nname = "listing"\nsource_pattern = "^(a)"\n')
    with pytest.raises(ConfigError, match="without profile.source_field"):
        load_settings(cfg, env={})


def test_candidates_of_the_own_source_are_dropped_unknown_sources_kept() -> None:
    stored = np.array([5, 5, 7, 0], np.uint32)
    got = across_sources([np.array([0, 1, 2, 3]), np.array([0, 2]), np.array([0, 1])],
                         np.array([5, 7, 0], np.uint32), stored)
    assert [g.tolist() for g in got] == [[2, 3], [0], [0, 1]]


def test_a_cluster_never_holds_two_records_of_one_source() -> None:
    src = np.array([1, 2, 2], np.uint32)
    g = Guards(0.5, 0.0, 0.0, sources=lambda rows: src[np.asarray(rows)])
    cs = ClusterState()
    assert cs.assign(0, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), g).outcome == "new"
    assert cs.assign(1, np.array([0]), np.array([0.9]), np.array([2]), g).outcome == "joined"
    # row 2 (source 2) matches row 0, whose cluster already holds row 1 of source 2: it stays alone
    a = cs.assign(2, np.array([0]), np.array([0.95]), np.array([2]), g)
    assert a.outcome == "new" and cs.cluster_of[2] != cs.cluster_of[0]


def _clusters(tmp_path: Path, config: str, summaries: list | None = None) -> dict[str, str]:
    from consumer.io.batch import run_batch

    rows = [("a_1", "sony turntable pslx350h belt drive", "sony", "149.99"),
            ("a_2", "sony turntable pslx350h belt drive", "sony", "149.99"),
            ("b_1", "Sony turntable PS-LX350H belt drive", "sony", "149.99"),
            ("b_2", "bose companion 2 series iii speakers", "", "99.00")]
    data = tmp_path / "listings.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["listing_id", "title", "brand", "price"])
        w.writerows(rows)
    cfg = tmp_path / "c.toml"
    cfg.write_text(config)
    summary, _ = run_batch(data, tmp_path / "out.jsonl", load_settings(cfg, env={}), progress=False,
                           clusters_path=tmp_path / "cl.csv")
    if summaries is not None:
        summaries.append(summary.as_dict())
    with (tmp_path / "cl.csv").open() as fh:
        return {r["record_id"]: r["cluster_id"] for r in csv.DictReader(fh)}


def test_linking_across_sources_end_to_end(tmp_path: Path) -> None:
    summaries: list = []
    pooled = _clusters(tmp_path, '[profile]\nname = "listing"\nid_field = "listing_id"\n', summaries)
    assert pooled["a_1"] == pooled["a_2"] == pooled["b_1"]  # one pool: all three are one
    linked = _clusters(tmp_path, LINK, summaries)
    # the summary says where a link becomes a match (the listing link point); a one-pool run has no such line
    assert "linked_match_at" not in summaries[0].get("model", {})
    assert summaries[1]["model"]["linked_match_at"] == LINK_MATCH["listing"]
    assert linked["a_1"] != linked["a_2"]  # linked across shops: never two of one shop in a cluster
    assert linked["b_1"] in (linked["a_1"], linked["a_2"])  # ...while the other shop's listing is linked
    assert len({linked["b_2"], linked["a_1"], linked["b_1"]}) >= 2


def _scorer(table: dict[frozenset, float]):
    return lambda left, right: np.array([table.get(frozenset((a, b)), 0.0) for a, b in zip(left, right)],
                                        np.float32)


def test_a_better_partner_from_the_same_source_takes_the_place() -> None:
    """Arrival order must not decide a one-to-one link: the second listing of a shop that matches the other
    shop's listing better than the first takes its place, and the first is split off alone."""
    pair = {frozenset((0, 1)): 0.7, frozenset((0, 2)): 0.9, frozenset((0, 3)): 0.8, frozenset((4, 5)): 0.7,
            frozenset((4, 6)): 0.75}
    src = np.array([1, 2, 2, 2, 1, 2, 2], np.uint32)
    g = Guards(0.5, 0.0, 0.0, sources=lambda rows: src[np.asarray(rows)])
    cs = ClusterState()
    score = _scorer(pair)
    cs.assign(0, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), g, scorer=score)
    assert cs.assign(1, np.array([0]), np.array([0.7]), np.array([2]), g, scorer=score).outcome == "joined"
    a = cs.assign(2, np.array([0]), np.array([0.9]), np.array([2]), g, scorer=score)
    assert a.outcome == "joined" and cs.cluster_of[2] == cs.cluster_of[0] == 0
    assert a.split_from == 0 and a.splits == [(1, [1])] and cs.cluster_of[1] == 1
    # a weaker third (0.8 < 0.9) stays alone
    a = cs.assign(3, np.array([0]), np.array([0.8]), np.array([2]), g, scorer=score)
    assert a.outcome == "new" and cs.cluster_of[3] == 3 and sorted(cs.members[0]) == [0, 2]
    # so does a newcomer better by less than DISPLACE_MARGIN log-odds (0.75 against 0.7: 0.25 nats)
    cs.assign(4, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), g, scorer=score)
    cs.assign(5, np.array([4]), np.array([0.7]), np.array([2]), g, scorer=score)
    a = cs.assign(6, np.array([4]), np.array([0.75]), np.array([2]), g, scorer=score)
    assert a.outcome == "new" and sorted(cs.members[4]) == [4, 5]


def test_a_displaced_founder_keeps_its_id_and_the_pair_moves() -> None:
    """When the listing taken out founded the cluster, it keeps the id (ids derive from founding records) and
    the new pair is the piece under its earliest record; replaying the decision gives the same clusters."""
    src = np.array([2, 1, 2], np.uint32)
    score = _scorer({frozenset((0, 1)): 0.6, frozenset((1, 2)): 0.95})
    g = Guards(0.5, 0.0, 0.0, sources=lambda rows: src[np.asarray(rows)])
    cs = ClusterState()
    cs.assign(0, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), g, scorer=score)
    cs.assign(1, np.array([0]), np.array([0.6]), np.array([2]), g, scorer=score)
    a = cs.assign(2, np.array([1]), np.array([0.95]), np.array([2]), g, scorer=score)
    assert a.cluster == 1 and a.split_from == 0 and a.splits == [(1, [1, 2])]
    assert cs.members[0] == [0] and cs.cluster_of[0] == 0 and sorted(cs.members[1]) == [1, 2]


def test_a_possible_pair_displaces_a_weaker_partner_too() -> None:
    """The partner re-check links a reciprocal-best *possible* pair; a weaker partner from the record's own
    source does not keep it from doing so."""
    src = np.array([1, 2, 2], np.uint32)
    score = _scorer({frozenset((0, 1)): 0.25, frozenset((0, 2)): 0.45})
    g = Guards(0.5, 0.0, 0.0, partner=True, sources=lambda rows: src[np.asarray(rows)])
    cs = ClusterState()
    cs.assign(0, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), g, scorer=score)
    assert cs.assign(1, np.array([0]), np.array([0.25]), np.array([1]), g, scorer=score).outcome == "joined"
    a = cs.assign(2, np.array([0]), np.array([0.45]), np.array([1]), g, scorer=score)
    assert a.outcome == "joined" and sorted(cs.members[0]) == [0, 2] and cs.cluster_of[1] == 1
