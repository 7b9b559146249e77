"""`dedup generate`, `train`, `eval` (with --plot) and `demo` as a user runs them, on small files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.cli import main


@pytest.mark.slow
def test_generate_train_eval_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    assert main(["generate", str(train), "-n", "1500", "--seed", "21"]) == 0
    assert main(["generate", str(test), "-n", "1200", "--seed", "22"]) == 0
    model = tmp_path / "model.pkl"
    assert main(["train", str(train), str(tmp_path / "train.truth.csv"), "--out", str(model)]) == 0
    capsys.readouterr()
    plot, figures = tmp_path / "pr.png", tmp_path / "eval.json"
    assert main(["eval", str(test), str(tmp_path / "test.truth.csv"), "--model", str(model), "--plot", str(plot),
                 "--json", str(figures)]) == 0
    table = capsys.readouterr().out
    for method in ("string baseline", "paper multimodal replica", "rule fusion", "learned fusion"):
        assert method in table
    assert "candidate recall" in table
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(figures.read_text())
    learned = result["methods"]["dedup-stream, learned fusion"]
    assert learned["f1"] > result["methods"]["string baseline (SequenceMatcher >= 0.85)"]["f1"]
    assert result["candidate_recall"] > 0.95


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "-n", "800"]) == 0
    out = capsys.readouterr().out
    assert "pairwise precision" in out and "cluster cl_" in out
    assert (tmp_path / "demo" / "clusters.jsonl").stat().st_size > 0


@pytest.mark.parametrize(("truth", "expect"), [
    ("listing_id,entity_id\nA,1\nB,1\nC,2\n", {"A": "1", "B": "1", "C": "2"}),
    ("id,entity\nA,1\nB,1\nC,2\n", {"A": "1", "B": "1", "C": "2"}),  # the real-data files' layout
    ("\ufeffrecord;cluster\nA;x\nB;x\nC;y\n", {"A": "x", "B": "x", "C": "y"}),  # a European Excel export
])
def test_a_truth_file_is_read_by_its_columns(truth: str, expect: dict[str, str], tmp_path: Path) -> None:
    from consumer.evaluation.evaluate import load_truth

    (tmp_path / "t.csv").write_text(truth, encoding="utf-8")
    assert load_truth(tmp_path / "t.csv", "listing_id") == expect


def test_eval_with_a_truth_file_of_pairs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dedup eval` needs each record's entity; a file of pairs (what `dedup label --oracle` also reads) is a
    one-line error naming its columns, not a KeyError traceback."""
    assert main(["generate", str(tmp_path / "in.csv"), "-n", "60", "--seed", "3"]) == 0
    (tmp_path / "pairs.csv").write_text("left_id,right_id\nc1,c2\n")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "in.csv"), str(tmp_path / "pairs.csv"), "--no-baselines"]) == 2
    err = capsys.readouterr().err
    assert "needs an id column and an entity column" in err and "left_id, right_id" in err
    assert "Traceback" not in err
