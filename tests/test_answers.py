"""A user's answers are honoured (`consumer.engine.answers`): a labelled model carries them, hashed, and
every run with it scores an answered pair as answered, so a "yes" links and a "no" stays apart whatever
the correction makes of the other pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from harness.linked import COLUMNS, write_linked
from harness.linked import LINKED as ALL_LINKED

from consumer.cli import main
from consumer.engine.answers import NO_SCORE, YES_SCORE, Answers, key_of
from consumer.io.labels import Label, LabelFile, file_sha256

#: The shared two-shop file (tests/harness/linked.py) without its last three listings: without answers b_2
#: takes a_1's place from b_1 (it matches a_1 better), and b_5 links a_3.
LINKED = ALL_LINKED[:8]
#: What the user said: b_1 is a_1's partner, b_2 is not, and b_5 is not a_3's.
ANSWERS = [("a_1", "b_1", "yes"), ("b_2", "a_1", "no"), ("a_3", "b_5", "no"), ("a_2", "b_4", "unsure")]


def test_answered_pairs_score_as_answered_in_either_order() -> None:
    ids = ["r1", "r2", "r3"]  # the store's ids by row: a live list, rows appended later are read too
    ans = Answers.of({"answers": Answers.rows_for([("r1", "r2", "yes"), ("r3", "r1", "no"), ("r4", "r5", "unsure")])},
                     ids)
    assert ans is not None and len(ans) == 2  # "unsure" is not carried
    ids += ["r4", "r5", ""]  # row 5: an erased record's tombstone
    left, right = np.array([0, 1, 0, 2, 3, 5]), np.array([1, 0, 2, 4, 4, 0])
    scores = np.array([0.1, 0.2, 0.9, 0.5, 0.6, 0.7], np.float32)
    out, said = ans.apply(left, right, scores)
    assert out.tolist() == pytest.approx([YES_SCORE, YES_SCORE, NO_SCORE, 0.5, 0.6, 0.7])
    assert said is not None and said.tolist() == [1, 1, -1, 0, 0, 0]
    assert ans.said(left, right).tolist() == said.tolist() and ans.about("r2", "r1") is True
    assert scores[0] == pytest.approx(0.1)  # the caller's array is not written to
    nothing = np.array([0.3], np.float32)
    assert ans.apply([3], [4], nothing)[0] is nothing
    ans.forget(0)  # erased: its answers no longer reach the row
    assert ans.apply([0], [1], nothing)[0][0] == pytest.approx(0.3)
    assert Answers.of({}) is None and Answers.of(None) is None


def test_the_later_of_two_answers_about_a_pair_wins_and_ids_are_hashed() -> None:
    rows = Answers.rows_for([("a", "b", "yes"), ("b", "a", "no")])
    assert rows == [[key_of("a"), key_of("b"), 1], [key_of("b"), key_of("a"), 0]]
    assert len(key_of("a")) == 16 and "a" not in rows[0][:2]
    out, said = Answers.of({"answers": rows}, ["a", "b"]).apply([0], [1], np.array([0.9], np.float32))
    assert out[0] == pytest.approx(NO_SCORE) and said is not None and said[0] == -1


@pytest.fixture()
def linked(tmp_path: Path) -> Path:
    write_linked(tmp_path, LINKED)
    labels = LabelFile(tmp_path / "labels.csv", file_sha256(tmp_path / "linked.csv"), "listing",
                       [r[0] for r in LINKED])
    for a, b, answer in ANSWERS:
        labels.add(Label(a, b, answer))
    return tmp_path


def _clusters(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {r["record_id"]: r["cluster_id"] for r in csv.DictReader(fh)}


def test_batch_train_and_model_runs_keep_the_answers(linked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three answers are far too few to correct the model (it says so), yet each is kept: b_1 with a_1,
    b_2 and b_5 alone; the saved model does the same in another run and names no record id in its files."""
    d, cfg = linked, str(linked / "c.toml")
    assert main(["batch", str(d / "linked.csv"), "--config", cfg, "--out", str(d / "d0.jsonl"),
                 "--clusters", str(d / "c0.csv"), "-q"]) == 0
    before = _clusters(d / "c0.csv")
    assert before["b_2"] == before["a_1"] != before["b_1"] and before["b_5"] == before["a_3"]
    assert main(["batch", str(d / "linked.csv"), "--config", cfg, "--labels", str(d / "labels.csv"),
                 "--out", str(d / "d1.jsonl"), "--clusters", str(d / "c1.csv"), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"]["labels"]["applied"] is False and summary["model"]["labels"]["honoured"] == 3
    after = _clusters(d / "c1.csv")
    assert after["b_1"] == after["a_1"] != after["b_2"] and after["b_5"] != after["a_3"]
    assert {k: v for k, v in after.items() if k not in ("a_1", "b_1", "b_2", "a_3", "b_5")} == \
        {k: v for k, v in before.items() if k not in ("a_1", "b_1", "b_2", "a_3", "b_5")}
    assert main(["train", str(d / "linked.csv"), "--config", cfg, "--labels", str(d / "labels.csv"),
                 "--model-out", str(d / "m.pkl")]) == 0
    assert main(["batch", str(d / "linked.csv"), "--config", cfg, "--model", str(d / "m.pkl"),
                 "--out", str(d / "d2.jsonl"), "--clusters", str(d / "c2.csv"), "-q"]) == 0
    assert _clusters(d / "c2.csv") == after
    for f in ("m.pkl", "m.json"):
        blob = (d / f).read_bytes()
        assert not any(rid.encode() in blob for rid, *_ in LINKED)
    assert main(["explain-model", str(d / "m.pkl")]) == 0
    assert "the 3 answered pairs score as answered" in capsys.readouterr().out


def test_scoring_an_answered_pair_says_so(linked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dedup score` (POST /v1/score's code) gives an answered pair the answer's score and says it was
    answered; an unanswered pair is the model's, without the field."""
    d, cfg = linked, str(linked / "c.toml")
    assert main(["train", str(d / "linked.csv"), "--config", cfg, "--labels", str(d / "labels.csv"),
                 "--model-out", str(d / "m.pkl")]) == 0
    rows = {r[0]: dict(zip(COLUMNS, r)) for r in LINKED}
    for rid in ("a_1", "b_2", "b_3"):
        (d / f"{rid}.json").write_text(json.dumps(rows[rid]))
    capsys.readouterr()
    assert main(["score", str(d / "a_1.json"), str(d / "b_2.json"), "--config", cfg, "--model", str(d / "m.pkl")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["answered"] == "no" and got["decision"] == "no_match" and got["fused"] == pytest.approx(NO_SCORE)
    assert main(["score", str(d / "a_1.json"), str(d / "b_3.json"), "--config", cfg, "--model", str(d / "m.pkl")]) == 0
    assert "answered" not in json.loads(capsys.readouterr().out)


def _labelled_run(d: Path):  # noqa: ANN202 - a Pipeline
    """`dedup train --labels` on the fixture's file, then the file run with that model: the pipeline after."""
    from consumer.config import load_settings
    from consumer.io.batch import run_batch

    assert main(["train", str(d / "linked.csv"), "--config", str(d / "c.toml"), "--labels", str(d / "labels.csv"),
                 "--model-out", str(d / "m.pkl")]) == 0
    settings = load_settings(d / "c.toml", env={})
    settings.fusion.learned_model = str(d / "m.pkl")
    return run_batch(d / "linked.csv", d / "d.jsonl", settings, progress=False)[1]


def test_an_erased_record_leaves_the_answers_of_its_row(linked: Path) -> None:
    """Erasure (GDPR) forgets the row: the answered pair no longer reaches it, and the rest still holds."""
    pipe = _labelled_run(linked)
    try:
        rows = pipe.store.row_of
        a1, b1, b2 = rows["a_1"], rows["b_1"], rows["b_2"]
        assert pipe.answers.said([a1, a1], [b1, b2]).tolist() == [1, -1]
        assert [e.found for e in pipe.erase(["b_1"])] == [True]
        assert pipe.answers.said([a1, a1], [b1, b2]).tolist() == [0, -1]
    finally:
        pipe.close()


def test_a_yes_partner_the_search_did_not_return_is_scored_all_the_same(linked: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A label file may hold any pair, and a stream's search order is not the questions': a "yes" partner the
    candidate search did not return is added to the record's candidates (`Answers.with_partners`). Here the
    search is made to miss a_1 for b_1 and b_2; b_1 (answered "yes" with a_1) still links it."""
    from consumer.engine.blocking import Blocker

    search = Blocker.candidates
    dropped: list[int] = []

    def missing_a1(self, vecs, rows, *args, **kwargs):  # noqa: ANN001, ANN202 - the method's own signature
        out = search(self, vecs, rows, *args, **kwargs)
        dropped.extend(int(r) for r, c in zip(rows, out) if 0 in c.tolist())
        return [c[c != 0] for c in out]  # a_1 is row 0

    monkeypatch.setattr(Blocker, "candidates", missing_a1)
    pipe = _labelled_run(linked)
    got = pipe.assignments()
    pipe.close()
    assert dropped  # the search did return a_1 and was made to miss it
    assert got["b_1"] == got["a_1"] != got["b_2"]
    rows = np.array([3, 4])
    cands = [np.array([1, 2], np.int64), np.array([], np.int64)]
    ans = Answers.of({"answers": Answers.rows_for([("x0", "x3", "yes"), ("x4", "x9", "yes"), ("x1", "x3", "no")])},
                     ["x0", "x1", "x2", "x3", "x4"])
    assert [c.tolist() for c in ans.with_partners(rows, cands)] == [[1, 2, 0], []]  # x9 is not stored yet
