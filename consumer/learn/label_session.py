"""The adapter around `consumer.learn.labelling`: the candidate pairs of a file, answers from a label file, a
person (`consumer.cli.label_terminal`) or a truth file (the oracle), and the model they make.

The pairs are the engine's own: the file is run once exactly as `dedup batch` runs it with no labels (the same fit
to the file, the same shipped model where it adapts), and every pair the candidate search proposed is kept with its
comparison features and that run's probability. That probability is the model the answers correct
(`labelling.fit_correction`), and `dedup batch --labels` then runs the file again with the corrected model: the same
core path, so the labels change *which pairs match*, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.engine.answers import Answers
from consumer.engine.fusion import LearnedModel
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.io.files import InputError
from consumer.io.labels import Label, LabelFile, file_sha256, read_labels, read_oracle
from consumer.learn.labelling import (
    FULL_THRESHOLD,
    MIN_GAIN,
    MIN_PER_CLASS,
    MIN_SCALE,
    NO,
    THRESHOLD_SHARE,
    UNSURE,
    YES,
    Correction,
    LabelledModel,
    choose_next,
    conflict_mask,
    conflicts_confirmed,
    contenders,
    cross_validate,
    f1_threshold,
    feature_effects,
    fit_correction,
    held_out_gain,
    label_warnings,
    logit,
)
from consumer.learn.reciprocal import unread_columns, unread_twins

__all__ = ["PairPool", "build_pool", "fit_labels", "run_oracle", "labelled_model", "Progress"]


@dataclass
class PairPool:
    """Every candidate pair of one run over a file, with what the questions and the fit need."""

    input_sha256: str
    profile: str
    ids: list[str]  # row -> record id
    left: np.ndarray  # rows of each pair (left < right)
    right: np.ndarray
    x: np.ndarray  # comparator features [P, F]
    features: tuple[str, ...]
    base: LearnedModel
    base_p: np.ndarray  # the unlabelled run's probability per pair
    threshold: float
    model_info: dict[str, Any]
    #: (row, row) -> pair index
    index: dict[tuple[int, int], int]
    #: Features of pairs outside the pool (labelled pairs the search never proposed), from the run's state.
    compare: Callable[[Sequence[int], Sequence[int]], np.ndarray]
    #: Per-modality similarities of feature rows (the fuser's explanation of a decision).
    modalities: Callable[[np.ndarray], dict[str, np.ndarray]]
    seconds: float = 0.0
    #: Per feature: True where more similarity can only mean more likely a match (`Comparator.monotone`):
    #: a correction keeps those features' total effect >= 0 (`floors`). None: unconstrained.
    monotone: np.ndarray | None = None
    #: (feature column, level) of the comparisons that can say "two different things" (`Feature.conflict`).
    conflict_columns: tuple[tuple[int, float], ...] = ()
    #: Columns the correction does not read (`reciprocal.unread_twins`), missing in `x` (`base_p` is apart).
    unread: tuple[int, ...] = ()
    #: Per-pool statistics every question needs, computed once per pool size (a 100k-record file has 3.2M
    #: candidate pairs: recomputing them took most of a question's 200 ms budget ten times over).
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.x = unread_columns(self.x, self.unread)

    def _cached(self, name: str, make: Callable[[], Any]) -> Any:
        key = (name, len(self.left))
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def row_of(self) -> dict[str, int]:
        return self._cached("row_of", lambda: {rid: i for i, rid in enumerate(self.ids)})

    @property
    def mean(self) -> np.ndarray:
        """Per-feature mean over the candidate pairs (0 for a feature no pair has)."""
        return self._cached("mean", lambda: _column_stat(self.x, np.nanmean, 0.0))

    @property
    def scale(self) -> np.ndarray:
        return self._cached("scale", lambda: _column_stat(self.x, np.nanstd, 1.0))

    @property
    def design(self) -> np.ndarray:
        """The standardised features every correction of this pool predicts from (float32: 3.2M pairs of
        a 100k-record file hold 140 MB so)."""
        std = Correction(mean=self.mean, scale=np.maximum(self.scale, MIN_SCALE))
        return self._cached("design", lambda: std.design(self.x).astype(np.float32))

    @property
    def conflicting(self) -> np.ndarray:
        """Per pair: do its comparisons say "two different things" (`comparison.conflict_mask`)?"""
        return self._cached("conflicting", lambda: conflict_mask(self.x, self.conflict_columns))

    @property
    def contenders(self) -> np.ndarray:
        """The pairs that are some record's best under the unlabelled model (`labelling.contenders`), which
        the questions keep to: computed once (under the corrected model it cost 105 ms a question at 3.2M
        pairs, half the time budget, and the best pairs barely move)."""
        return self._cached("contenders", lambda: contenders(self.base_p, self.left, self.right))

    @property
    def contender_rows(self) -> np.ndarray:
        """The indices of `contenders` (sorted): the pairs a session predicts and counts over while any is open."""
        return self._cached("contender_rows", lambda: np.flatnonzero(self.contenders))

    @property
    def floors(self) -> np.ndarray | None:
        """Per feature, how much of the unlabelled model's log-odds it carries (per standard deviation;
        NaN: not monotone), which a correction may take back and no more (`labelling.fit_correction`)."""
        if self.monotone is None:
            return None
        return self._cached("floors", lambda: feature_effects(self.design[self.contender_rows],
                                                       self.base_logit[self.contender_rows], self.monotone))

    @property
    def base_logit(self) -> np.ndarray:
        return self._cached("base_logit", lambda: logit(self.base_p))

    def pair(self, label: Label) -> int:
        """The pool index of a labelled pair, adding it (compared now) when the search never proposed it."""
        row = self.row_of
        a, b = sorted((row[label.left], row[label.right]))
        i = self.index.get((a, b))
        if i is None:
            feats = self.compare([b], [a])
            i = len(self.left)
            self.left, self.right = np.append(self.left, a), np.append(self.right, b)
            self.x = np.concatenate([self.x, unread_columns(feats.astype(self.x.dtype), self.unread)])
            self.base_p = np.append(self.base_p, self.base.predict(feats, self.base.columns_for(self.features)))
            self.index[(a, b)] = i
        return i


def _column_stat(x: np.ndarray, stat: Callable[..., np.ndarray], empty: float) -> np.ndarray:
    out = np.full(x.shape[1], empty)
    has = ~np.isnan(x).all(axis=0) if len(x) else np.zeros(x.shape[1], bool)
    if has.any():
        out[has] = stat(x[:, has].astype(np.float64), axis=0)
    return out


def build_pool(input_path: str | Path, settings: Settings, fmt: str | None = None) -> PairPool:
    """Run the file as `dedup batch` would with no labels and keep its candidate pairs."""
    from consumer.io.batch import BatchSummary, iter_records, micro_batches, pipeline_for

    if settings.fusion.mode != "learned":
        raise InputError("labels correct a learned model: run without --fusion rule")
    start = time.perf_counter()
    summary = BatchSummary()
    pipe = pipeline_for(input_path, settings, fmt, summary, None)
    try:
        if pipe.fuser.model is None:
            raise InputError("this file is too small to fit a model to (see the summary of `dedup batch`); "
                             "labels need one to correct")
        pipe.pair_log = []
        records = (rec for _, rec in iter_records(input_path, settings, fmt) if isinstance(rec, Record))
        for _ in pipe.process_stream(micro_batches(records, settings.batch_size)):
            pass
        return _pool_of(pipe, file_sha256(input_path), settings, summary.model, time.perf_counter() - start)
    finally:
        pipe.close()


def _pool_of(pipe: Pipeline, sha: str, settings: Settings, info: dict[str, Any], seconds: float) -> PairPool:
    logged = [(r, c, f) for r, c, f in (pipe.pair_log or []) if len(c)]
    features = tuple(pipe.comparator.features)
    index: dict[tuple[int, int], int] = {}
    left, right, rows = [], [], []
    for r, cands, feats in logged:
        for j, c in enumerate(cands.tolist()):
            key = (min(r, c), max(r, c))
            if key not in index:
                index[key] = len(left)
                left.append(key[0])
                right.append(key[1])
                rows.append(feats[j])
    x = np.stack(rows).astype(np.float32) if rows else np.zeros((0, len(features)), np.float32)
    model = pipe.fuser.model
    assert model is not None
    base_p = model.predict(x, model.columns_for(features)) if len(x) else np.zeros(0, np.float32)
    return PairPool(sha, settings.profile.name, list(pipe.store.record_ids), np.array(left, np.int64),
                    np.array(right, np.int64), x, features, model, base_p.astype(np.float64),
                    pipe.fuser.match_threshold, dict(info), index, pipe.compare_pairs,
                    pipe.fuser.modality_scores, seconds,
                    np.array([pipe.comparator.monotone.get(f, 0) == 1 for f in features], bool),
                    (*pipe.comparator.conflict_columns, *pipe.comparator.floors),
                    unread_twins(features, model.used_features, pipe.frequencies.rarities))


@dataclass
class Fit:
    """The corrected model over the pool, and what the user is told about it."""

    p: np.ndarray  # the corrected probability of every pool pair (of `rows` when given)
    model: LearnedModel
    report: dict[str, Any]
    rows: np.ndarray | None = None  # the pool pairs `p` covers (None: all, in order)


def fit_labels(pool: PairPool, labels: Sequence[Label], *, validate: bool = True,
               rows: np.ndarray | None = None) -> Fit:
    """The base model corrected by `labels` (unsure answers skipped), with cross-validated precision and
    recall on the labels and warnings when they are too few or one-sided.

    `rows`: predict only these pool pairs (a session's questions, `PairPool.contender_rows`): at 100k
    records the pass over all 3.2M candidate pairs was half of a question's 200 ms. With `rows` the
    threshold stays the base model's (it is the expected-F1 threshold over the contenders, and a session's
    `rows` need not be those), so such a fit's model is for asking questions, not for running."""
    pairs = [(pool.pair(lab), lab.answer) for lab in labels if lab.answer in (YES, NO)]
    idx = np.array([i for i, _ in pairs], np.int64)
    y = np.array([a == YES for _, a in pairs], np.int64)
    base_logit = pool.base_logit
    mean, scale = pool.mean, pool.scale
    answers = [lab.answer for lab in labels]
    # Conflicts the answers confirmed (`conflicts_confirmed`): labels may lower such a pair, not raise it, and
    # the correction is fitted to the other answers, the pairs it can still move.
    conflicts = conflicts_confirmed(pool.conflicting[idx], y) if pool.conflict_columns else None
    confirmed = bool(conflicts and conflicts["confirmed"])
    if confirmed:
        idx, y = idx[~pool.conflicting[idx]], y[~pool.conflicting[idx]]
    # Too few answers of one kind say how wrong the model is, not how to fix it (Amazon-Google, 25 answers,
    # 5 yes: the corrected model scored pairwise F1 0.17 against 0.31 without labels): below
    # `MIN_PER_CLASS` of either kind the unlabelled model is used unchanged, and the report says so.
    n_yes, n_no = int(y.sum()), int(len(y) - y.sum())
    balanced = n_yes >= MIN_PER_CLASS and n_no >= MIN_PER_CLASS
    # And only when the correction predicts answers it did not see better than the unlabelled model, by
    # more than noise (`MIN_GAIN`).
    floors = pool.floors
    gain = held_out_gain(base_logit[idx], pool.x[idx], y, mean, scale, floors=floors) if balanced else None
    if gain is not None and gain < MIN_GAIN:
        balanced = False
    corr = fit_correction(base_logit[idx], pool.x[idx], y, mean=mean, scale=scale, floors=floors) if balanced \
        else fit_correction(base_logit[:0], pool.x[:0], y[:0], mean=mean, scale=scale)
    # Uncorrected: the unlabelled run's probabilities as they are (no pass over every pair).
    sel = slice(None) if rows is None else rows  # the pairs `p` covers
    p = corr.predict_standardised(base_logit[sel], pool.design[sel]) if balanced else pool.base_p[sel]
    if capped := balanced and confirmed:
        p = np.where(pool.conflicting[sel], np.minimum(p, pool.base_p[sel]), p)
    report: dict[str, Any] = {"labels": len(labels), "yes": answers.count(YES), "no": answers.count(NO),
                              "unsure": answers.count(UNSURE), "intercept": round(corr.intercept, 4),
                              "slope": round(corr.slope, 4), "slope_low": round(corr.slope_low, 4),
                              "applied": balanced, "warnings": label_warnings(answers, conflicts, (n_yes, n_no)),
                              "held_out_gain": None if gain is None else round(gain, 4),
                              "conflicts": conflicts and {**conflicts, "capped": capped}}
    if gain is not None and gain < MIN_GAIN:
        report["warnings"].append("the corrected model predicts held-out answers no better than the model "
                                  "without labels, so that one is used; label more pairs")
    # The threshold moves from the base model's towards the one that maximises the corrected model's expected
    # F1, `THRESHOLD_SHARE` of the way from `FULL_THRESHOLD` answers of the rarer kind, less before (on
    # Amazon-Google 25 answers, 11 no, moved it from 0.5 to 0.26 at once: F1 0.517, below no labels' 0.523). The
    # expected F1 is taken over the contenders, the pairs the clustering decides on: a sibling nobody prefers
    # never links, and counting it as an expected match lowered the threshold (Abt-Buy, 100 answers, three
    # question orders: F1 0.928 / 0.883 / 0.912 over every pair, 0.924 / 0.898 / 0.923).
    threshold = pool.threshold
    if balanced and rows is None:
        weight = THRESHOLD_SHARE * min(1.0, min(n_yes, n_no) / FULL_THRESHOLD)
        threshold = pool.threshold + weight * (f1_threshold(p[pool.contender_rows]) - pool.threshold)
    report["threshold"] = round(threshold, 4)
    if validate:
        report["cross_validated"] = cross_validate(base_logit[idx], pool.x[idx], y, mean, scale, threshold=threshold,
                                                  floors=floors)
    cap = tuple((pool.features[c], level) for c, level in pool.conflict_columns) if capped else ()
    # Corrected or not, every run with the model scores an answered pair as answered (`consumer.engine.answers`).
    answered = Answers.rows_for((lab.left, lab.right, lab.answer) for lab in labels)
    report["honoured"] = len({frozenset(r[:2]) for r in answered if r[0] != r[1]})  # pairs, once each
    return Fit(p, labelled_model(pool, corr, report, cap, answered), report, rows)


def labelled_model(pool: PairPool, corr: Any, report: dict[str, Any],
                   conflict_cap: Sequence[tuple[str, float]] = (), answers: Sequence[Any] = ()) -> LearnedModel:
    """A `LearnedModel` over `LabelledModel` (saved and loaded like any model file; `dedup run --model`),
    carrying `answers` (`Answers.rows_for` of the labels)."""
    est = LabelledModel(pool.base, corr, pool.features, conflict_cap)
    drop = ("sha256", "used_features", "operating_point", "variant_slots", "variant_keying")
    base_meta = {k: v for k, v in pool.base.meta.items() if k not in drop}
    # The file's variant words the pool was compared with: the labelled model's pipeline reads them too.
    slots = ({"variant_slots": pool.base.meta["variant_slots"], "variant_keying": pool.base.meta.get("variant_keying")}
             if pool.base.meta.get("variant_slots") else {})
    meta = {"kind": "labelled", **slots, "base": base_meta, "base_sha256": pool.base.meta.get("sha256"),
            "input_sha256": pool.input_sha256, "profile": pool.profile, "labels": report, "answers": list(answers),
            "used_features": list(est.used_features), "name_gate": bool(pool.base.meta.get("name_gate", True)),
            "operating_point": {"match": report["threshold"], "possible": round(report["threshold"] / 2, 4)}}
    return LearnedModel(est, pool.features, meta)


@dataclass
class Progress:
    """Where a labelling session stands: the next pair, the answers so far, the current model."""

    pair: int | None
    fit: Fit  # over the pairs questions come from (`fit.rows`)
    step: int

    @property
    def p(self) -> float:
        """The current model's probability of `pair`."""
        assert self.pair is not None
        rows = self.fit.rows
        return float(self.fit.p[self.pair if rows is None else int(np.searchsorted(rows, self.pair))])


class Session:
    """Asks about pairs of a pool and keeps the answers in a label file (resumable, deterministic)."""

    def __init__(self, pool: PairPool, labels_path: str | Path, seed: int = 0) -> None:
        self.pool = pool
        self.seed = seed
        self.file = LabelFile(labels_path, pool.input_sha256, pool.profile, set(pool.ids))

    @property
    def labels(self) -> list[Label]:
        return self.file.labels

    def progress(self) -> Progress:
        """The model of the answers so far and the pair to ask next (None when none is left).

        While a contender is open the questions come from the contenders only (`choose_next`'s `among`),
        so the model is predicted over those alone (a few percent of the pairs of a large file) and the
        choice is made among them: the same pair as over every pair, at a fraction of the time."""
        pool = self.pool
        asked = {pool.pair(lab) for lab in self.labels}
        shown = {r for i in asked for r in (int(pool.left[i]), int(pool.right[i]))}
        answers = [lab.answer for lab in self.labels]
        step, balance = len(self.labels), (answers.count(YES), answers.count(NO))
        rows = pool.contender_rows
        local = np.searchsorted(rows, np.fromiter(asked, np.int64, len(asked)))
        local_asked = {int(j) for j, i in zip(local, asked) if j < len(rows) and rows[j] == i}
        if len(local_asked) < len(rows):
            fit = fit_labels(pool, self.labels, validate=False, rows=rows)
            nxt = choose_next(fit.p, pool.base_p[rows], pool.left[rows], pool.right[rows], local_asked, shown,
                              step, self.seed, balance)
            return Progress(None if nxt is None else int(rows[nxt]), fit, step)
        fit = fit_labels(pool, self.labels, validate=False)  # every contender asked: any pair
        nxt = choose_next(fit.p, pool.base_p, pool.left, pool.right, asked, shown, step, self.seed, balance)
        return Progress(nxt, fit, step)

    def answer(self, pair: int, answer: str) -> None:
        ids = self.pool.ids
        self.file.add(Label(ids[int(self.pool.left[pair])], ids[int(self.pool.right[pair])], answer))

    def undo(self) -> Label | None:
        return self.file.undo()


def run_oracle(pool: PairPool, labels_path: str | Path, truth_path: str | Path, budget: int, seed: int = 0,
               on_answer: Callable[[int], None] | None = None) -> list[Label]:
    """Answer `budget` questions from a truth file (resuming an existing label file): the measurement of
    what labels buy, with no person at the keyboard."""
    entity = read_oracle(truth_path, pool.ids)
    session = Session(pool, labels_path, seed)
    while len(session.labels) < budget:
        nxt = session.progress().pair
        if nxt is None:
            break
        a, b = pool.ids[int(pool.left[nxt])], pool.ids[int(pool.right[nxt])]
        session.answer(nxt, YES if entity.get(a, a) == entity.get(b, b) else NO)
        if on_answer is not None:
            on_answer(len(session.labels))
    return session.labels


def load_labels_for(pool: PairPool, labels_path: str | Path) -> list[Label]:
    """The labels of a file, checked against the pool's input (ids and hash)."""
    if not Path(labels_path).is_file():
        raise InputError(f"label file not found: {labels_path}")
    return read_labels(labels_path, set(pool.ids), pool.input_sha256)

