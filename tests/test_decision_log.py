"""The decision log is complete: replaying `dedup batch --out` (merges and splits applied in order, keepers
included) gives exactly the `--clusters` table (`consumer.engine.decisions.replay_clusters`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.engine.decisions import replay_clusters


@pytest.mark.parametrize(("profile", "n", "seed"), [("crm-signup", 3132, 1), ("listing", 1500, 9)])
def test_replaying_the_decisions_gives_the_final_cluster_table(tmp_path: Path, profile: str, n: int,
                                                                seed: int) -> None:
    data = tmp_path / "in.csv"
    assert main(["generate", str(data), "-n", str(n), "--seed", str(seed), "--profile", profile]) == 0
    out, table = tmp_path / "d.jsonl", tmp_path / "clusters.csv"
    assert main(["batch", str(data), "--profile", profile, "--out", str(out), "--clusters", str(table), "-q"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    with table.open(newline="") as fh:
        final = {r["record_id"]: (r["cluster_id"], r["canonical_id"]) for r in csv.DictReader(fh)}
    assert replay_clusters(lines) == final
    if profile == "crm-signup":  # the file is chosen so that the log holds splits: the case that differed
        assert any(line.get("splits") for line in lines)
        assert any(line["merged_cluster_ids"] for line in lines)


def test_replay_applies_merges_splits_and_keepers_in_order() -> None:
    lines = [
        {"record_id": "a", "cluster_id": "A", "canonical_id": "a", "outcome": "new", "merged_cluster_ids": []},
        {"record_id": "b", "cluster_id": "B", "canonical_id": "b", "outcome": "new", "merged_cluster_ids": []},
        {"record_id": "c", "cluster_id": "A", "canonical_id": "c", "outcome": "merged", "merged_cluster_ids": ["B"]},
        {"record_id": "d", "cluster_id": "A", "canonical_id": "c", "outcome": "joined", "merged_cluster_ids": [],
         "split_cluster_id": "A", "split_canonical_id": "c",
         "splits": [{"cluster_id": "B2", "canonical_id": "b", "record_ids": ["b"]}]},
        {"record_id": "a", "cluster_id": "A", "canonical_id": "c", "outcome": "replay", "merged_cluster_ids": []},
    ]
    assert replay_clusters(lines) == {"a": ("A", "c"), "b": ("B2", "b"), "c": ("A", "c"), "d": ("A", "c")}
