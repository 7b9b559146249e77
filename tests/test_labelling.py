"""Active labelling (issue 21): the model the answers make, the questions asked, the label file, the
oracle, `dedup batch/train --labels`, and a session through a real terminal (tmux)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from consumer.cli import main
from consumer.cli.label_terminal import diff_marks, render_pair
from consumer.io.files import InputError
from consumer.io.labels import LabelFile, file_sha256, read_labels, read_oracle
from consumer.learn.labelling import YES, choose_next, cross_validate, fit_correction, label_warnings, logit

DEDUP = str(Path(sys.executable).with_name("dedup"))


# -- the model --------------------------------------------------------------------------------------------
def test_no_answers_leave_the_unlabelled_model_unchanged() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 3, 500)
    x = rng.random((500, 3))
    corr = fit_correction(base[:0], x[:0], np.zeros(0))
    np.testing.assert_allclose(corr.logits(base, x), base)


def test_answers_correct_the_model_where_it_is_wrong() -> None:
    """The base model calls pairs with feature 0 high a match; the answers say feature 1 decides."""
    rng = np.random.default_rng(1)
    x = rng.random((2000, 2))
    base = logit(np.clip(x[:, 0], 0.05, 0.95))
    truth = x[:, 1] > 0.5
    idx = rng.choice(2000, 120, replace=False)
    corr = fit_correction(base[idx], x[idx], truth[idx].astype(int), mean=x.mean(0), scale=x.std(0))
    before = ((base > 0) == truth).mean()
    after = ((corr.predict(base, x) >= 0.5) == truth).mean()
    assert before < 0.6 < 0.85 < after


def test_separable_answers_do_not_blow_up_the_fit() -> None:
    base = np.array([-5.0, -4.0, 4.0, 5.0] * 10)
    x = np.zeros((40, 1))
    corr = fit_correction(base, x, (base > 0).astype(int), mean=np.zeros(1), scale=np.ones(1))
    assert np.isfinite([corr.intercept, corr.slope]).all() and 0.5 < corr.slope < 5


def test_a_correction_takes_back_a_similarity_but_never_turns_it_against_a_match() -> None:
    """Near-copy comparisons (a title's cosine and its trigrams) fitted from 40 answers: without floors
    the fit weighs them as a difference (one negative); with floors each similarity's total effect (its
    share of the base log-odds times the slope, plus its correction) stays >= 0, both slopes too, and
    the fit is the constrained optimum (a general solver agrees)."""
    from scipy.optimize import minimize

    import consumer.learn.labelling as lab

    rng = np.random.default_rng(11)
    n = 40
    x = rng.normal(size=(n, 3))
    x[:, 1] = x[:, 0] + 0.4 * rng.normal(size=n)  # a near-copy of feature 0
    base = 1.5 * (x[:, 0] + x[:, 1])
    y = (x[:, 0] - x[:, 1] + 0.3 * x[:, 2] > 0).astype(int)  # the answers reward their difference
    free = fit_correction(base, x, y, mean=np.zeros(3), scale=np.ones(3))
    assert free.coef[:2].min() + free.slope * 1.5 < 0  # unconstrained: a similarity counts against a match
    floors = np.array([1.5, 1.5, np.nan])  # feature 2 has no direction
    corr = fit_correction(base, x, y, mean=np.zeros(3), scale=np.ones(3), floors=floors)
    assert corr.slope >= 0 and corr.slope_low >= 0
    assert (corr.coef[:2] + corr.slope * floors[:2] >= -1e-9).all()
    assert corr.coef[2] > 0  # unconstrained where there is no direction

    design = np.column_stack([np.ones(n), np.maximum(base, 0), np.minimum(base, 0), x])
    fewest = min(int(y.sum()), int(n - y.sum()))
    tau = lab.PRIOR_CORRECTION * min(1.0, fewest / lab.FULL_CORRECTION) + 1e-3
    prec = 1 / np.array([lab.PRIOR_INTERCEPT, lab.PRIOR_SLOPE, lab.PRIOR_SLOPE, tau, tau, tau]) ** 2
    mu = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.0])

    def post(t: np.ndarray) -> float:
        z = design @ t
        return float((y * z - np.logaddexp(0, z)).sum() - 0.5 * (prec * (t - mu) ** 2).sum())

    rows = np.array([[0, 1.5, 0, 1, 0, 0], [0, 1.5, 0, 0, 1, 0]])
    bounds = [(None, None), (0, None), (0, None)] + [(None, None)] * 3
    ref = minimize(lambda t: -post(t), mu, method="SLSQP", bounds=bounds, options={"ftol": 1e-12, "maxiter": 1000},
                   constraints=[{"type": "ineq", "fun": lambda t: rows @ t}])
    mine = np.concatenate([[corr.intercept, corr.slope, corr.slope_low], corr.coef])
    assert post(mine) >= post(ref.x) - 1e-6


def test_cross_validation_and_warnings() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0, 3, 60)
    y = (base + rng.normal(0, 1, 60) > 0).astype(int)
    cv = cross_validate(base, np.zeros((60, 1)), y, np.zeros(1), np.ones(1))
    assert cv is not None and cv["precision"] > 0.7 and cv["recall"] > 0.7
    assert cross_validate(base[:3], np.zeros((3, 1)), np.array([1, 0, 0]), np.zeros(1), np.ones(1)) is None
    assert any("one-sided" in w for w in label_warnings(["no"] * 30))
    assert any("only 4" in w for w in label_warnings(["yes", "no", "yes", "no"]))
    assert label_warnings(["yes"] * 15 + ["no"] * 15) == []


def test_questions_span_the_score_range_and_depend_only_on_the_answers() -> None:
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-rng.normal(-4, 4, 5000)))
    left, right = rng.integers(0, 3000, 5000), rng.integers(3000, 6000, 5000)
    asked: set[int] = set()
    picks = []
    for step in range(10):
        i = choose_next(p, p, left, right, asked, set(), step)
        assert i is not None
        asked.add(i)
        picks.append(p[i])
    assert max(picks) > 0.95 and min(picks) < 0.1 and any(0.25 < q < 0.75 for q in picks)
    again = [choose_next(p, p, left, right, set(), set(), s) for s in range(3)]
    assert again == [choose_next(p, p, left, right, set(), set(), s) for s in range(3)]


def test_questions_ask_the_trailing_kind_until_both_can_correct_the_model() -> None:
    rng = np.random.default_rng(4)
    p = 1 / (1 + np.exp(-rng.normal(-4, 4, 5000)))
    left, right = rng.integers(0, 3000, 5000), rng.integers(3000, 6000, 5000)
    z = np.log(p / (1 - p))
    # Yes answers trail: a likely match; no answers trail: a likely non-match; both at 10: the bin cycle.
    assert z[choose_next(p, p, left, right, set(), set(), 7, answered=(1, 6))] >= 1.0
    assert z[choose_next(p, p, left, right, set(), set(), 7, answered=(6, 1))] <= -1.0
    both = choose_next(p, p, left, right, set(), set(), 7, answered=(10, 30))
    assert both == choose_next(p, p, left, right, set(), set(), 7)


def test_contenders_are_some_records_best_pair_and_questions_keep_to_them() -> None:
    from consumer.learn.labelling import contenders

    # records 0-2 against 10-12; pair k = (left[k], right[k])
    left = np.array([0, 0, 1, 1, 2, 2])
    right = np.array([10, 11, 10, 11, 12, 11])
    p = np.array([0.9, 0.6, 0.5, 0.4, 0.3, 0.35])
    # 0's best (0.9), 11's best (0.6), 1's best (0.5), 2's best (0.35), 12's only pair (0.3); (1, 11) is nobody's
    assert contenders(p, left, right).tolist() == [True, True, True, False, True, True]
    # the sibling (1, 11) is near even odds, but its answer could not change a cluster: asked last
    among = contenders(p, left, right)
    picks = {choose_next(p, p, left, right, set(), set(), s, among=among) for s in range(10)}
    assert 3 not in picks
    assert choose_next(p, p, left, right, {0, 1, 2, 4, 5}, set(), 0, among=among) == 3


# -- files ---------------------------------------------------------------------------------------------------
def _labels(tmp_path: Path, body: str, sha: str = "abc") -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(f"# dedup labels v1; input sha256={sha}; profile=person\nleft_id,right_id,label\n{body}")
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("1,2,yes\n1,9,no\n", "line 4: unknown id '9'"),
    ("1,2,yes\n2,1,yes\n", "line 4: the same pair labelled again"),
    ("1,2,yes\n2,1,no\n", "line 4: conflicting label (yes on line 3)"),
    ("1,2,maybe\n", "line 3: label must be yes, no or unsure"),
    ("1,2\n", "line 3: expected 3 fields"),
    ("1,1,yes\n", "line 3: a record paired with itself"),
])
def test_bad_label_files_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_labels(_labels(tmp_path, body), {"1", "2", "3"}, "abc")


def test_label_file_of_another_input_or_with_wrong_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="line 1: these labels were made for another input file"):
        read_labels(_labels(tmp_path, "1,2,yes\n"), {"1", "2"}, "def")
    path = tmp_path / "l.csv"
    path.write_text("a,b,answer\n1,2,yes\n")
    with pytest.raises(InputError, match="line 1: expected the columns left_id,right_id,label"):
        read_labels(path, {"1", "2"})


def test_label_file_appends_and_undoes_atomically(tmp_path: Path) -> None:
    from consumer.io.labels import Label

    path = tmp_path / "labels.csv"
    lf = LabelFile(path, "abc", "person", {"1", "2", "3"})
    lf.add(Label("1", "2", "yes"))
    lf.add(Label("2", "3", "no"))
    assert [lab.answer for lab in read_labels(path, {"1", "2", "3"}, "abc")] == ["yes", "no"]
    assert lf.undo() == Label("2", "3", "no")
    assert read_labels(path, {"1", "2", "3"}, "abc") == [Label("1", "2", "yes")]
    assert not list(tmp_path.glob("*.tmp"))


def test_oracle_reads_entities_or_matching_pairs(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d"]
    (tmp_path / "t1.csv").write_text("id,entity\na,1\nb,1\nc,2\n")
    e = read_oracle(tmp_path / "t1.csv", ids)
    assert e["a"] == e["b"] != e["c"] and e["d"] == "d"
    (tmp_path / "t2.csv").write_text("left_id,right_id\na,c\nc,d\n")
    e = read_oracle(tmp_path / "t2.csv", ids)
    assert e["a"] == e["c"] == e["d"] != e["b"]


def test_render_marks_differing_characters() -> None:
    assert diff_marks("Kingston upon Hull", "Hull")[1] == ""
    screen = render_pair("r1", "r2", {"name": "Jon Smith"}, {"name": "John Smith"}, {"name": 0.9}, 0.8, "pair 1",
                         {"yes": 3, "no": 12})
    lines = screen.splitlines()
    mark = lines[lines.index(next(ln for ln in lines if ln.startswith("name"))) + 1]
    assert "^" in mark and "a no 12" in screen and "[b] undo" in screen


# -- the commands --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("label")
    assert main(["generate", str(d / "in.csv"), "-n", "300", "--seed", "3"]) == 0
    return d


def test_without_a_terminal_it_points_to_the_oracle(small: Path) -> None:
    proc = subprocess.run([DEDUP, "label", str(small / "in.csv"), "--labels", str(small / "x.csv")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "stdin is not" in proc.stderr and "--oracle" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_oracle_labels_then_batch_and_train_use_them(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = small / "oracle.csv"
    assert main(["label", str(small / "in.csv"), "--labels", str(labels), "--oracle", str(small / "in.truth.csv"),
                 "--budget", "24"]) == 0
    got = read_labels(labels, None, file_sha256(small / "in.csv"))
    assert len(got) == 24 and {lab.answer for lab in got} == {"yes", "no"}
    assert main(["batch", str(small / "in.csv"), "--labels", str(labels), "--out", str(small / "d.jsonl"),
                 "--clusters", str(small / "c1.csv"), "-q"]) == 0
    assert '"corrected by labels"' in capsys.readouterr().out
    assert main(["train", str(small / "in.csv"), "--labels", str(labels), "--model-out", str(small / "m.pkl")]) == 0
    assert main(["batch", str(small / "in.csv"), "--model", str(small / "m.pkl"), "--out", str(small / "d2.jsonl"),
                 "--clusters", str(small / "c2.csv"), "-q"]) == 0
    assert (small / "c1.csv").read_text() == (small / "c2.csv").read_text()
    # labels made for another file are refused before any work
    assert main(["generate", str(small / "other.csv"), "-n", "100", "--seed", "4"]) == 0
    capsys.readouterr()
    assert main(["batch", str(small / "other.csv"), "--labels", str(labels), "--out", str(small / "d3.jsonl")]) == 2
    assert "made for another input file" in capsys.readouterr().err


def test_a_session_asks_what_a_choice_over_every_pair_would_ask(small: Path, tmp_path: Path) -> None:
    """The session predicts and chooses over the contenders only (speed, issue 21): the same questions as
    the choice over every candidate pair restricted to them, with the correction applied or not."""
    import consumer.learn.label_session as ls
    from consumer.config import load_settings
    from consumer.io.labels import Label
    from consumer.learn.labelling import NO, impact

    pool = ls.build_pool(small / "in.csv", load_settings(env={}))
    # Similarities carry a floor (their share of the unlabelled log-odds), rarity features none.
    rarity = np.array([f.endswith("_rarity") for f in pool.features])
    assert pool.floors is not None and rarity.any() and np.isnan(pool.floors[rarity]).all()
    similar = ~np.isnan(pool.floors)
    assert (pool.floors[similar] >= 0).all() and (pool.floors[similar] > 0).sum() >= 3
    entity = read_oracle(small / "in.truth.csv", pool.ids)
    session = ls.Session(pool, tmp_path / "labels.csv")
    old_gain = ls.MIN_GAIN
    ls.MIN_GAIN = -float("inf")  # the correction applied as soon as both kinds reach 10
    try:
        applied = 0
        for step in range(40):
            prog = session.progress()
            labels = session.labels
            full = ls.fit_labels(pool, labels, validate=False)
            asked = {pool.pair(lab) for lab in labels}
            shown = {r for i in asked for r in (int(pool.left[i]), int(pool.right[i]))}
            yes = sum(lab.answer == YES for lab in labels)
            want = choose_next(full.p, pool.base_p, pool.left, pool.right, asked, shown, step, 0,
                               (yes, len(labels) - yes), pool.contenders)
            assert prog.pair == want and prog.pair is not None
            assert prog.p == pytest.approx(float(full.p[prog.pair]), abs=1e-6)
            applied += bool(prog.fit.report["applied"])
            labelled = {pool.pair(lab): int(lab.answer == YES) for lab in labels}
            some = impact(pool.base_logit, pool.x, labelled, prog.pair, pool.mean, pool.scale, prog.fit.p,
                          design=pool.design, over=prog.fit.rows, floors=pool.floors)
            every = impact(pool.base_logit, pool.x, labelled, prog.pair, pool.mean, pool.scale, full.p,
                           design=pool.design, floors=pool.floors)
            assert all(0 <= some[k] <= every[k] for k in some)
            a, b = pool.ids[int(pool.left[prog.pair])], pool.ids[int(pool.right[prog.pair])]
            session.file.add(Label(a, b, YES if entity.get(a, a) == entity.get(b, b) else NO))
        assert applied > 0
        # the threshold of a full fit moves (all the way, from 20 answers of the rarer kind) to the one that
        # maximises the expected F1 over the contenders, the pairs clustering decides on
        from consumer.learn.labelling import f1_threshold
        full = ls.fit_labels(pool, session.labels, validate=False)
        yes, no = full.report["yes"], full.report["no"]
        weight = ls.THRESHOLD_SHARE * min(1.0, min(yes, no) / ls.FULL_THRESHOLD)
        assert ls.THRESHOLD_SHARE == 1.0
        want_t = pool.threshold + weight * (f1_threshold(full.p[pool.contender_rows]) - pool.threshold)
        assert full.report["applied"] and full.report["threshold"] == pytest.approx(want_t, abs=1e-4)
    finally:
        ls.MIN_GAIN = old_gain


# -- through a real terminal ---------------------------------------------------------------------------------
#: A tmux server of this test process's own (`-L`): session names cannot collide with another run's (two
#: suites on one machine once shared `dedup-label-a` on the default server and read each other's screens).
_TMUX_SOCKET = f"dedup-test-{os.getpid()}"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", _TMUX_SOCKET, *args], capture_output=True, text=True, timeout=30).stdout


class _Term:
    """One `dedup label` in a detached tmux session, driven by send-keys and read by capture-pane."""

    def __init__(self, name: str, cwd: Path, labels: Path) -> None:
        self.name = name
        # Killing the last session of a socket makes its tmux server exit, asynchronously: a new-session
        # at that moment can reach the dying server and create nothing (CI once waited 120 s on an empty
        # screen). So the session is created until tmux reports it exists.
        for _ in range(20):
            _tmux("new-session", "-d", "-s", name, "-x", "150", "-y", "45",
                  f"cd {cwd} && {DEDUP} label in.csv --labels {labels}; echo EXITED $?; sleep 60")
            if name in _tmux("list-sessions", "-F", "#{session_name}").split():
                return
            time.sleep(0.25)
        raise AssertionError(f"tmux did not start the session {name}")

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.name)

    def wait(self, text: str, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.2)
        sessions = _tmux("list-sessions", "-F", "#{session_name} pane_dead=#{pane_dead} pid=#{pane_pid}")
        raise AssertionError(f"{text!r} never appeared; tmux sessions: {sessions!r}; screen:\n{self.screen()}")

    def answer(self, keys: str) -> None:
        for k in keys:
            count = self._answered()
            _tmux("send-keys", "-t", self.name, "-l", k)
            if k == "f":
                return
            self.wait(f"answered {count - 1 if k == 'b' else count + 1} (")

    def _answered(self) -> int:
        s = self.wait("answered ")
        return int(s.split("answered ", 1)[1].split(" ", 1)[0])

    def kill(self) -> None:  # the terminal closes under the session
        _tmux("kill-session", "-t", self.name)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt install tmux)")
def test_a_terminal_session_that_is_killed_and_resumed_keeps_every_answer(small: Path) -> None:
    first, whole = small / "killed.csv", small / "whole.csv"
    a = _Term("dedup-label-a", small, first)
    try:
        a.wait("answered 0 (")
        screen = a.screen()
        assert "p(duplicate)" in screen and "[y] yes" in screen and "a yes would change" in screen
        a.answer("ynub" + "ny")  # undo takes back the 'unsure'
    finally:
        a.kill()
    assert [lab.answer for lab in read_labels(first, None)] == ["yes", "no", "no", "yes"]
    b = _Term("dedup-label-b", small, first)
    try:
        b.wait("resuming: 4 answers")
        b.answer("nyf")
        b.wait("EXITED 0")
    finally:
        b.kill()
    c = _Term("dedup-label-c", small, whole)
    try:
        c.answer("ynubnynyf")
        c.wait("EXITED 0")
    finally:
        c.kill()
    assert first.read_text() == whole.read_text()
    assert [lab.answer for lab in read_labels(whole, None)] == ["yes", "no", "no", "yes", "no", "yes"]
    assert YES == "yes"


class _Logistic:
    """A stand-in base model: p = sigmoid(10 * (x0 - 0.5))."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-10 * (x[:, 0] - 0.5)))
        return np.stack([1 - p, p], axis=1)


def _pool(n: int = 400) -> tuple[object, list[str]]:
    from consumer.engine.fusion import LearnedModel
    from consumer.learn.label_session import PairPool

    rng = np.random.default_rng(5)
    x = rng.random((n, 2)).astype(np.float32)
    base = LearnedModel(_Logistic(), ("f0", "f1"), {"used_features": ["f0", "f1"]})
    ids = [f"r{i}" for i in range(2 * n)]
    left, right = np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2)
    p = base.predict(x, np.array([0, 1]))
    pool = PairPool("sha", "person", ids, left, right, x, ("f0", "f1"), base, p.astype(np.float64), 0.5, {},
                    {(int(a), int(b)): i for i, (a, b) in enumerate(zip(left, right))},
                    lambda a, b: np.zeros((len(a), 2), np.float32), lambda f: {}, 0.0)
    return pool, ids


def test_answers_of_one_kind_leave_the_model_unchanged_and_say_so() -> None:
    from consumer.io.labels import Label
    from consumer.learn.label_session import fit_labels

    pool, ids = _pool()
    # the truth: f1 decides, not f0; a few yes answers only
    order = np.argsort(-pool.x[:, 1])
    few = [Label(ids[2 * i], ids[2 * i + 1], "yes") for i in order[:4]] + \
          [Label(ids[2 * i], ids[2 * i + 1], "no") for i in order[-30:]]
    fit = fit_labels(pool, few)
    assert fit.report["applied"] is False and any("one-sided" in w for w in fit.report["warnings"])
    np.testing.assert_allclose(fit.p, pool.base_p, rtol=1e-6)
    enough = [Label(ids[2 * i], ids[2 * i + 1], "yes") for i in order[:15]] + few[4:]
    fit = fit_labels(pool, enough)
    assert fit.report["applied"] is True and fit.report["threshold"] <= 0.5
    truth = pool.x[:, 1] > np.sort(pool.x[:, 1])[-40]
    assert ((fit.p >= fit.report["threshold"]) == truth).mean() > ((pool.base_p >= 0.5) == truth).mean()


def _conflict_pool(n: int = 600) -> tuple[object, list[str]]:
    """A pool whose base model reads f0 only, whose truth is f1 (high) unless f2, a comparison that can say
    "two different things" (`Feature.conflict` at 0: say two finishes of one line), is 0 (a third of the
    pairs; NaN, not stated, for a sixth)."""
    from consumer.engine.fusion import LearnedModel
    from consumer.learn.label_session import PairPool

    rng = np.random.default_rng(7)
    x = rng.random((n, 3)).astype(np.float32)
    x[:, 2] = np.where(rng.random(n) < 0.33, 0.0, 1.0)
    x[rng.random(n) < 0.16, 2] = np.nan
    base = LearnedModel(_Logistic(), ("f0", "f1"), {"used_features": ["f0", "f1"]})
    ids = [f"r{i}" for i in range(2 * n)]
    left, right = np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2)
    p = base.predict(x, np.array([0, 1]))
    pool = PairPool("sha", "listing", ids, left, right, x, ("f0", "f1", "f2"), base, p.astype(np.float64), 0.5, {},
                    {(int(a), int(b)): i for i, (a, b) in enumerate(zip(left, right))},
                    lambda a, b: np.zeros((len(a), 3), np.float32), lambda f: {}, 0.0, None, ((2, 0.0),))
    return pool, ids


def _answers(pool, ids, conflicting_yes: int) -> list:
    """Yes for 20 pairs with high f1 and no conflict, no for 20 with low f1, and 8 conflicting pairs with
    high f1 answered no (the first `conflicting_yes` of them yes)."""
    from consumer.io.labels import Label

    conf = pool.x[:, 2] == 0
    clean = np.where(~conf & ~np.isnan(pool.x[:, 2]))[0]
    high = clean[np.argsort(-pool.x[clean, 1])][:20]
    low = clean[np.argsort(pool.x[clean, 1])][:20]
    odd = np.where(conf)[0][np.argsort(-pool.x[conf, 1])][:8]

    def lab(i: int, answer: str) -> Label:
        return Label(ids[2 * i], ids[2 * i + 1], answer)

    return ([lab(i, "yes") for i in high] + [lab(i, "no") for i in low]
            + [lab(i, "yes" if k < conflicting_yes else "no") for k, i in enumerate(odd)])


def test_answers_that_confirm_conflicts_keep_labels_from_raising_conflicting_pairs() -> None:
    """The questions teach the correction that the base model's low scores are often wrong (here: f1 decides,
    not f0); without the cap it raised conflicting pairs with them. When every answered conflicting pair was
    a no, a conflicting pair keeps at most its unlabelled probability, in the pool and in the model file."""
    from consumer.learn.label_session import fit_labels

    pool, ids = _conflict_pool()
    fit = fit_labels(pool, _answers(pool, ids, conflicting_yes=0))
    assert fit.report["applied"] is True
    assert fit.report["conflicts"] == {"answered": 8, "yes": 0, "confirmed": True, "capped": True}
    conf = pool.conflicting
    assert conf.sum() > 100 and not conf[np.isnan(pool.x[:, 2])].any()  # NaN: not stated, no conflict
    assert (fit.p[conf] <= pool.base_p[conf] + 1e-9).all()
    assert (fit.p[~conf] > pool.base_p[~conf] + 0.05).any()  # the correction still raises the rest
    # The model a run loads applies the same cap (`LabelledModel.conflict_cap`).
    model_p = fit.model.predict(pool.x, fit.model.columns_for(pool.features))
    np.testing.assert_allclose(model_p, fit.p, rtol=1e-5, atol=1e-6)
    # The conflicting answers decided the cap; the correction is fitted to the others, so their "no"s do not
    # pull down the intercept of every other pair.
    others = fit_labels(pool, _answers(pool, ids, conflicting_yes=0)[:40])
    assert others.report["conflicts"]["answered"] == 0
    for key in ("intercept", "slope", "slope_low"):  # (the threshold reads the capped probabilities)
        assert fit.report[key] == others.report[key], key
    from consumer.learn.unsupervised import explain_model

    assert "0 of 8 answered pairs whose attributes or codes conflict were a yes: confirmed" in explain_model(fit.model)
    assert any("8 of 8 answered pairs whose attributes or codes conflict were a no" in w
               for w in fit.report["warnings"])
    # 20 yes and 13 no, but 8 of the no are the conflicting pairs: the correction would read 20 yes and 5 no,
    # too one-sided to move the model, and the report says why.
    thin = _answers(pool, ids, conflicting_yes=0)
    thin = thin[:25] + thin[40:]
    few = fit_labels(pool, thin)
    assert few.report["applied"] is False and few.report["conflicts"]["confirmed"] is True
    assert any("one-sided answers (20 yes, 5 no)" in w for w in few.report["warnings"])
    np.testing.assert_allclose(few.p, pool.base_p, rtol=1e-6)


def test_answers_that_say_yes_to_conflicts_leave_them_uncapped() -> None:
    """Where conflicts are parsed from noisy titles (Abt-Buy: 37 of 59 answered conflicting pairs were a
    yes), a conflicting pair may be raised like any other, and every answer corrects the model: 2 yes of 8
    do not confirm them."""
    from consumer.learn.label_session import fit_labels

    pool, ids = _conflict_pool()
    fit = fit_labels(pool, _answers(pool, ids, conflicting_yes=2))
    assert fit.report["conflicts"] == {"answered": 8, "yes": 2, "confirmed": False, "capped": False}
    conf = pool.conflicting
    assert (fit.p[conf] > pool.base_p[conf] + 0.05).any()
    assert not getattr(fit.model.estimator, "conflict_cap", ())


def test_conflicts_are_confirmed_by_enough_answers_with_few_yes() -> None:
    """Confirmed: at least 80% sure that under a tenth of such pairs are duplicates (0 of 8, 1 of 23)."""
    from consumer.learn.labelling import conflict_mask, conflicts_confirmed

    def said(yes: int, n: int) -> bool:
        return conflicts_confirmed(np.ones(n, bool), np.array([1] * yes + [0] * (n - yes)))["confirmed"]

    assert said(0, 8) and not said(0, 7)  # too few to say
    assert said(1, 23) and not said(1, 22) and not said(1, 15)
    assert conflicts_confirmed(np.zeros(10, bool), np.ones(10))["answered"] == 0
    x = np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0], [0.5, np.nan]], np.float32)
    assert conflict_mask(x, [(0, 0.0), (1, 0.0)]).tolist() == [True, True, False, False]


def test_the_next_command_it_suggests_reads_the_file_as_the_session_did(
        small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dedup label ... --profile P --format F` is followed by a `dedup batch` line with the same flags (before,
    a listing file labelled with `--profile listing` was suggested a batch that read it as CRM signups)."""
    import shlex

    labels = small / "next.csv"
    assert main(["label", str(small / "in.csv"), "--profile", "crm-signup", "--format", "csv", "--labels",
                 str(labels), "--oracle", str(small / "in.truth.csv"), "--budget", "12"]) == 0
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("next: "))
    argv = shlex.split(line[len("next: "):])
    assert argv[:3] == ["dedup", "batch", str(small / "in.csv")]
    assert argv[3:7] == ["--profile", "crm-signup", "--format", "csv"] and argv[7:9] == ["--labels", str(labels)]
    out = small / "next-decisions.jsonl"
    assert main([*argv[1:argv.index("--out")], "--out", str(out), "-q"]) == 0 and out.exists()
