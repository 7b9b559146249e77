"""`dedup eval --sizes`: sizes parse, and each size gets final-cluster figures (issue 11)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.evaluation.scale_eval import parse_sizes


def test_parse_sizes() -> None:
    assert parse_sizes("10k, 250000,1M,1.5k") == [10_000, 250_000, 1_000_000, 1_500]
    for bad in ("ten", "10x", "", "1"):
        with pytest.raises(ValueError, match="--sizes"):
            parse_sizes(bad)


def test_eval_sizes_reports_final_cluster_figures_per_size(tmp_path: Path) -> None:
    out, js = tmp_path / "sizes.csv", tmp_path / "sizes.json"
    assert main(["eval", "--sizes", "300,600", "--variant", "heldout", "--seed", "5", "--workdir",
                 str(tmp_path / "files"), "--csv", str(out), "--json", str(js)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["records"]) for r in rows] == [300, 600]
    for r in rows:
        assert 0 < float(r["f1"]) <= 1 and 0 < float(r["bcubed_f1"]) <= 1
        assert int(r["largest_cluster"]) >= 1 and int(r["largest_true_cluster"]) >= 1
        assert 0 < float(r["candidate_recall"]) <= 1 and r["variant"] == "heldout"
    assert json.loads(js.read_text())[0]["records"] == 300
    assert (tmp_path / "files" / "crm-heldout-s5-600.truth.csv").exists()


def test_eval_without_files_or_sizes_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval"]) == 2
    assert "--sizes" in capsys.readouterr().err
