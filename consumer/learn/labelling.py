"""Learning a file's duplicates from a few dozen answers: which pair to ask about, and the model the answers
make. Pure: arrays and labels in, a model and a next pair out (the terminal, the oracle and the label file
are adapters in `consumer.learn.label_session` and `consumer.io.labels`).

**The model.** The answers *correct* the model the run would use without them (the weights fitted to the
file, with the shipped model where it adapts; `consumer.learn.unsupervised`), they do not replace it: a logistic
regression over that model's log-odds and the pair's comparison features, with priors that make it the
unlabelled model when there are no answers (intercept 0, slope 1 on the base log-odds, no correction) and
let each answer move it only as far as the evidence goes (ridge toward those values). With 25 answers the
intercept and slope move (where the threshold lies, how sharp the model is); with a hundred, single
comparisons (a code conflict that is not one in this file, a shared surname that means little here).
A correction may take a similarity's weight back to nothing, never past it (`fit_correction`'s `floors`):
"more alike" never becomes evidence against a match, however a hundred answers fall.
Why not a classifier from the labels alone: dedupe's users stop after 20-60 answers, and a model fitted to
that few pairs forgets everything the unsupervised fit knew about the pairs nobody labelled.

**The questions.** Candidate pairs are binned by the current model's log-odds; questions cycle through the
bins (mostly near the threshold, but likely matches and likely non-matches come early, so a user who stops
after ten answers still gave both kinds); until there are `MIN_PER_CLASS` answers of each kind, a kind that
trails is asked for directly (likely matches when yes answers trail), so the model is corrected from about
25 answers instead of 50 or more; only pairs that are some record's best candidate are asked about
(`contenders`: a sibling nobody prefers stays apart whatever its probability, and its "no" only pulled the
model down); inside a bin the pair where the current model is least sure
and disagrees most with the unlabelled one wins, preferring records not shown yet. The choice depends only
on the answers so far (the tie-break is seeded by their number), so a session that was interrupted and
resumed asks exactly what an uninterrupted one would have asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.engine.comparison import conflict_mask
from consumer.learn.correction import (  # noqa: F401  (re-exported: saved label models name these here)
    FULL_CORRECTION,
    MAX_LOGIT,
    MIN_SCALE,
    PRIOR_CORRECTION,
    PRIOR_INTERCEPT,
    PRIOR_SLOPE,
    Correction,
    cross_validate,
    f1_threshold,
    fit_correction,
    held_out_gain,
    logit,
)

__all__ = ["YES", "NO", "UNSURE", "ANSWERS", "LabelledModel", "Correction", "feature_effects", "fit_correction",
           "cross_validate", "FULL_CORRECTION", "FULL_THRESHOLD", "THRESHOLD_SHARE",
           "MIN_GAIN", "choose_next", "contenders", "held_out_gain", "impact", "label_warnings", "logit",
           "f1_threshold", "conflict_mask", "conflicts_confirmed", "CONFLICT_RATE", "CONFLICT_BELIEF"]

YES, NO, UNSURE = "yes", "no", "unsure"
ANSWERS = (YES, NO, UNSURE)
#: Answers of the rarer kind at which the threshold moves its full share (`THRESHOLD_SHARE`) of the way
#: from the unlabelled model's threshold to the corrected model's expected-F1 threshold.
FULL_THRESHOLD = 20
#: That share: all the way, again. Half way was chosen while a file linking two shops linked in arrival order:
#: the full move (threshold ~0.29) then let the first of two near-identical listings take a partner, and cost
#: Amazon-Google precision (six question orders at 100 answers: full 0.628, half 0.652, none 0.655). Now a
#: better partner takes the place (`consumer.engine.clustering`, `_rival`), and the same six orders give full
#: 0.682, half 0.670, none 0.653 (see `docs/labelling.md`); Abt-Buy and another generator's listings are the
#: same within 0.001 either way.
THRESHOLD_SHARE = 1.0
#: Log-odds bins of the question cycle, and the order they are visited in (index into the bins).
BIN_EDGES = (-6.0, -3.0, -1.0, 1.0, 3.0, 6.0)
BIN_CYCLE = (3, 5, 2, 4, 1, 3, 6, 2, 4, 0)
#: Fewer answers than this: the fit warns. Fewer of one kind than `MIN_PER_CLASS`: the answers are kept
#: but the model is not corrected yet (`consumer.learn.label_session.fit_labels`), and the fit says so.
MIN_LABELS, MIN_PER_CLASS = 20, 10
#: Held-out log-likelihood gain per answer (nats) a correction must reach to be used: below it the answers
#: cannot tell it from the unlabelled model (RLdata10000, 25 answers: gain 0.0017, F1 0.9707 -> 0.9696).
MIN_GAIN = 0.01
#: Conflicts confirmed by the answers (`conflicts_confirmed`): the answers about pairs the comparisons call
#: two different things (`Feature.conflict`) make it at least `CONFLICT_BELIEF` likely that under
#: `CONFLICT_RATE` of such pairs are duplicates (Jeffreys prior): 0 yes of 8, 1 of 23, 2 of 36. Amazon-Google's
#: conflicting answers are a yes a fifth of the time, and a count-and-share rule (at least 5, at most 10% yes)
#: confirmed one question order on 0 of 6 at 50 answers and 1 of 15 at 100, by chance (F1 0.584 -> 0.507 at 50).
CONFLICT_RATE, CONFLICT_BELIEF = 0.1, 0.8
#: Question balance (`choose_next`): how far one kind of answer may lead before questions come from the
#: other side of the threshold, how far past even odds that side starts, and how many of its pairs nearest
#: the threshold compete.
BALANCE_LEAD = 2
BALANCE_LOGIT = 1.0
BALANCE_POOL = 200


class LabelledModel:
    """A model's probabilities corrected by a user's answers: an estimator behind `LearnedModel`.

    Columns: the base model's used features, then the correction features (`used_features`)."""

    def __init__(self, base: Any, correction: Correction, features: Sequence[str],
                 conflict_cap: Sequence[tuple[str, float]] = ()) -> None:
        self.base = base  # a LearnedModel
        self.correction = correction
        #: (feature, level) of the conflicts the answers confirmed (`conflicts_confirmed`): a pair with one
        #: keeps at most the unlabelled model's probability. Empty: no cap.
        self.conflict_cap = tuple(conflict_cap)
        self.correction_features = tuple(features)
        used = list(base.used_features)
        used += [f for f in self.correction_features if f not in used]
        self.used_features = tuple(used)
        self._base_cols = np.array([used.index(f) for f in base.used_features], np.int64)
        self._corr_cols = np.array([used.index(f) for f in self.correction_features], np.int64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        base = self.base.predict(x, self._base_cols)
        p = self.correction.predict(logit(base), x[:, self._corr_cols])
        cap = getattr(self, "conflict_cap", ())  # a model file from before the cap has none
        if cap:
            conflicting = conflict_mask(x, [(self.used_features.index(f), level) for f, level in cap])
            p = np.where(conflicting, np.minimum(p, base), p)
        return np.stack([1 - p, p], axis=1)

    def bind(self, population: Any) -> None:
        """Forward the running population to a base model that reads one (Fellegi-Sunter tf adjustments)."""
        if hasattr(est := self.base.estimator_unless_forest, "bind"):
            est.bind(population)


def conflicts_confirmed(conflicting: np.ndarray, yes: np.ndarray) -> dict[str, Any]:
    """Whether the answers confirm the file's conflicts: of the answered pairs whose comparisons say "two
    different things" (`conflicting`), so few were a yes that their rate is under `CONFLICT_RATE` with
    probability `CONFLICT_BELIEF` or more. Then labels may lower such a pair but not raise it
    (`LabelledModel.conflict_cap`), and the correction is fitted to the other answers (`fit_labels`).

    Why: the questions over-sample near-identical titles the unlabelled model scores low (a typo, capitals,
    the brand moved), and one line's other finishes and sizes, which sit at one fitted level; the correction
    learned from the first that low scores are often wrong and raised the siblings with them, and the
    siblings' many "no" answers pulled its intercept down for every other pair (another generator's
    listings: 100 answers below no labels on one file, 25 answers below on two). There, 0 of 7-18
    conflicting answered pairs per question order were a yes; on Abt-Buy, whose attributes are parsed from
    noisy titles, 37-45 of 59-67 were, so there the conflicts are not confirmed and nothing changes."""
    from scipy.special import betainc  # scikit-learn's own dependency

    n = int(conflicting.sum())
    said_yes = int(np.asarray(yes)[conflicting].sum())
    belief = float(betainc(said_yes + 0.5, n - said_yes + 0.5, CONFLICT_RATE))
    return {"answered": n, "yes": said_yes, "confirmed": belief >= CONFLICT_BELIEF}


def label_warnings(answers: Sequence[str], conflicts: Mapping[str, Any] | None = None,
                   fitted: tuple[int, int] | None = None) -> list[str]:
    """What makes a label set too thin to trust: too few answers, or too few of one kind, counted over the
    answers the correction reads (`fitted`, yes and no: without the conflicting pairs when `conflicts` were
    confirmed, `conflicts_confirmed`)."""
    yes, no = sum(a == YES for a in answers), sum(a == NO for a in answers)
    out = []
    if yes + no < MIN_LABELS:
        out.append(f"only {yes + no} yes/no answers: the model moves little from the unlabelled fit "
                   f"(at least {MIN_LABELS} recommended)")
    if conflicts and conflicts.get("confirmed") and fitted is not None:
        out.append(f"{conflicts['answered'] - conflicts['yes']} of {conflicts['answered']} answered pairs whose "
                   "attributes or codes conflict were a no: such pairs stay apart, and the other answers "
                   f"({fitted[0]} yes, {fitted[1]} no) correct the model")
        yes, no = fitted
    if yes < MIN_PER_CLASS or no < MIN_PER_CLASS:
        side = "yes" if yes < no else "no"
        out.append(f"one-sided answers ({yes} yes, {no} no): fewer than {MIN_PER_CLASS} '{side}' answers, so the "
                   "model without labels is used unchanged (the answered pairs themselves stay as answered); "
                   "label more pairs (`dedup label` asks both kinds)")
    return out


def feature_effects(design: np.ndarray, base_logit: np.ndarray, monotone: np.ndarray) -> np.ndarray:
    """How much of the unlabelled model's (positive) log-odds each monotone feature carries, per standard
    deviation: a ridge least-squares fit of those log-odds on the standardised features (over the
    contenders), negative effects read as none; NaN for features with no direction (rarity). A correction
    may take a feature's effect back to nothing (a shared brand that means little in this file) but not
    past it (`labelling.fit_correction`'s `floors`). Why a joint fit and not each feature alone: a title's
    comparisons move together, and each alone would be credited with the others' share, which let the
    corrections of another generator's listings go below zero (F1 at 100 answers 0.79 against 0.84)."""
    if len(design) < 2:  # nothing to read the shares off: every similarity may only gain
        return np.where(monotone, 0.0, np.nan)
    d = design.astype(np.float64)
    d -= d.mean(axis=0)
    z = np.maximum(base_logit, 0.0)
    w = np.linalg.solve(d.T @ d + 1e-3 * len(d) * np.eye(d.shape[1]), d.T @ (z - z.mean()))
    return np.where(monotone, np.maximum(w, 0.0), np.nan)


def contenders(p: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Pairs (left[i], right[i]) that are the best candidate (highest probability, ties included) of at least
    one of their two records: the pairs whose answer can change a final cluster. Why ask only about these: a
    record links to its best partner, so a sibling that is nobody's best stays apart whatever its
    probability, and answers about siblings misled the correction (Abt-Buy, 25 answers: 15 questions at one
    fitted level, p 0.74, 8 of them siblings answered no; the intercept fell and took true best pairs of
    that level with it)."""
    p = np.asarray(p)
    records = int(max(left.max(initial=-1), right.max(initial=-1))) + 1
    best = np.full(records, -np.inf)
    np.maximum.at(best, left, p)
    np.maximum.at(best, right, p)
    return (p >= best[left]) | (p >= best[right])


def choose_next(p_now: np.ndarray, p_base: np.ndarray, left: np.ndarray, right: np.ndarray,
                asked: set[int], shown_records: set[int], step: int, seed: int = 0,
                answered: tuple[int, int] | None = None, among: np.ndarray | None = None) -> int | None:
    """The index of the next candidate pair to ask about (None when every pair was asked): the bin of
    `BIN_CYCLE` for this `step` (the next non-empty one), and inside it the pair the current model is least
    sure of, that it disagrees most about with the unlabelled model, with records not shown yet first.

    `answered` = (yes, no) so far. While one kind trails the other by more than `BALANCE_LEAD`, the question
    comes from the side of the threshold that kind is likely on (the most likely matches first when yes
    answers trail): the model is corrected only from `MIN_PER_CLASS` answers of each kind, and the bin
    cycle alone gave Abt-Buy and Amazon-Google 4 yes in 25 answers, so 25 labels bought nothing.

    `among` (a mask over the pairs, e.g. `contenders`): questions only about those while any is left open."""
    # Bins from the probabilities directly (the edges mapped once), log-odds only for the pairs in play:
    # the same bins as logit + searchsorted, a few passes fewer over millions of pairs.
    p_now = np.asarray(p_now)
    edges = 1.0 / (1.0 + np.exp(-np.asarray(BIN_EDGES)))
    bins = np.zeros(len(p_now), np.int8)
    for e in edges:
        bins += p_now > e
    open_ = np.ones(len(p_now), bool)
    if asked:
        open_[np.fromiter(asked, np.int64)] = False
    if not open_.any():
        return None
    if among is not None:  # only pairs whose answer can change a cluster, while any is left
        best = open_ & among
        open_ = best if best.any() else open_
    rng = np.random.default_rng(seed + step)
    idx = np.zeros(0, np.int64)
    if answered is not None and min(answered) < MIN_PER_CLASS and abs(answered[0] - answered[1]) > BALANCE_LEAD:
        edge = 1.0 / (1.0 + np.exp(-BALANCE_LOGIT))
        side = open_ & ((p_now >= edge) if answered[0] < answered[1] else (p_now <= 1.0 - edge))
        idx = np.flatnonzero(side)
        if len(idx):
            # Nearest the threshold on that side: the likely matches the model is least sure of.
            near = np.abs(logit(p_now[idx]))
            idx = idx[near <= np.partition(near, min(BALANCE_POOL, len(near)) - 1)[min(BALANCE_POOL, len(near)) - 1]]
    if not len(idx):
        for k in range(len(BIN_CYCLE)):
            b = BIN_CYCLE[(step + k) % len(BIN_CYCLE)]
            idx = np.flatnonzero(open_ & (bins == b))
            if len(idx):
                break
        else:
            idx = np.flatnonzero(open_)
    p = p_now[idx]
    # Vectorised: a bin of a 100k-record file holds hundreds of thousands of pairs, and a Python loop over
    # them took most of the time budget of a question; a mask over records, not `np.isin` (one pass per
    # shown record).
    seen = np.zeros(int(max(left.max(initial=0), right.max(initial=0), max(shown_records, default=0))) + 1, bool)
    seen[np.fromiter(shown_records, np.int64, len(shown_records))] = True
    novel = (~seen[left[idx]]).astype(np.float64) + (~seen[right[idx]])
    priority = 4 * p * (1 - p) + np.abs(p - p_base[idx]) + 0.25 * novel + 0.1 * rng.random(len(idx))
    return int(idx[int(np.argmax(priority))])


def impact(base_logit: np.ndarray, x: np.ndarray, labelled: Mapping[int, int], candidate: int,
           mean: np.ndarray, scale: np.ndarray, current: np.ndarray, threshold: float = 0.5,
           design: np.ndarray | None = None, over: np.ndarray | None = None,
           floors: np.ndarray | None = None) -> dict[str, int]:
    """How many candidate pairs would change side of the threshold if `candidate` were answered yes, or no:
    the answer that changes the model most is the one worth thinking about. `design`: `x` standardised
    with `mean` and `scale` already (`PairPool.design`), so a large file is not standardised twice a pair.
    `over`: count only these pairs, `current` being over them (a session counts the contenders: the pairs
    whose side can change a cluster; a sibling nobody prefers changing side changes nothing)."""
    idx = np.fromiter(labelled, np.int64, len(labelled))
    yv = np.fromiter(labelled.values(), np.int64, len(labelled))
    now = current >= threshold
    logits, feats = base_logit, x
    if over is not None:
        logits = base_logit[over]
        if design is None:
            feats = x[over]
        else:
            design = design[over]
    out = {}
    for name, answer in ((YES, 1), (NO, 0)):
        i, y = np.append(idx, candidate), np.append(yv, answer)
        corr = fit_correction(base_logit[i], x[i], y, mean=mean, scale=scale, floors=floors)
        p = corr.predict(logits, feats) if design is None else corr.predict_standardised(logits, design)
        out[name] = int(((p >= threshold) != now).sum())
    return out
