"""The model a user's answers make: the unlabelled model's log-odds corrected by a logistic regression
with priors that make it that model when there are no answers (`consumer.learn.labelling` says why this
form), fitted, cross-validated and checked on held-out answers. Pure: arrays in, a `Correction` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Correction", "FULL_CORRECTION", "MIN_SCALE", "cross_validate", "f1_threshold", "fit_correction",
           "held_out_gain", "logit"]

#: Log-odds are clipped here: a model that says 1.0 must still be correctable by answers.
MAX_LOGIT = 12.0
#: Prior standard deviations: the intercept, the slope on the base log-odds (around 1), and each
#: correction coefficient (per standard deviation of its feature).
PRIOR_INTERCEPT, PRIOR_SLOPE, PRIOR_CORRECTION = 2.0, 0.5, 0.5
#: Answers of the rarer kind at which feature corrections get their full prior (fewer: proportionally less,
#: which matters inside the held-out folds: the model is corrected at all only from `MIN_PER_CLASS`). Was 20:
#: over three question orders at 100 answers 10 gave Amazon-Google 0.579 -> 0.612, Abt-Buy 0.915 -> 0.919
#: (lowest order 0.898 -> 0.904), RLdata10000 0.978 -> 0.979, and at 25 Abt-Buy 0.904 -> 0.891.
FULL_CORRECTION = 10
#: Feature standardisation: a floor on the spread (a nearly constant feature must not become a huge
#: number) and a clip on the standardised value.
MIN_SCALE, MAX_Z = 0.05, 5.0


def logit(p: np.ndarray) -> np.ndarray:
    """Natural log-odds of probabilities, clipped to +-`MAX_LOGIT`."""
    q = np.clip(np.asarray(p, np.float64), 1e-9, 1 - 1e-9)
    return np.clip(np.log(q / (1 - q)), -MAX_LOGIT, MAX_LOGIT)


@dataclass
class Correction:
    """The fitted correction: p = sigmoid(a + b- * min(z, 0) + b+ * max(z, 0) + c . standardised(features))
    with z the base model's log-odds. Two slopes, because answers near the top of the score range (where
    most questions are) say little about the bottom: a model that is overconfident about its best pairs
    must not make every unrelated pair plausible by flattening one slope for all (Amazon-Google, 50
    answers: one slope raised the expected matches among 140k candidate pairs from 860 to 5,800)."""

    intercept: float = 0.0
    slope: float = 1.0  # for z >= 0
    slope_low: float = 1.0  # for z < 0
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    def design(self, x: np.ndarray) -> np.ndarray:
        """Standardised features, a missing value at the mean (no evidence either way)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -MAX_Z, MAX_Z)

    def logits(self, base_logit: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = (self.intercept + self.slope_low * np.minimum(base_logit, 0.0)
               + self.slope * np.maximum(base_logit, 0.0))
        if len(self.coef):
            out = out + self.design(x) @ self.coef
        return out

    def predict(self, base_logit: np.ndarray, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(base_logit, x), -60, 60)))

    def predict_standardised(self, base_logit: np.ndarray, design: np.ndarray) -> np.ndarray:
        """`predict` from features already standardised with this correction's mean and scale (`design`):
        a session refits after every answer over millions of candidate pairs, whose standardised features
        never change, and standardising them again took over a second per answer at 100k records."""
        low = np.minimum(base_logit, 0.0)
        out = np.subtract(base_logit, low)  # the positive part; in place from here (3.2M pairs a question)
        out *= self.slope
        low *= self.slope_low
        out += low
        out += self.intercept
        if len(self.coef):
            out += design @ self.coef.astype(design.dtype)
        np.clip(out, -60, 60, out=out)
        np.negative(out, out=out)
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)


def fit_correction(base_logit: np.ndarray, x: np.ndarray, y: np.ndarray, *, mean: np.ndarray | None = None,
                   scale: np.ndarray | None = None, iterations: int = 100,
                   floors: np.ndarray | None = None) -> Correction:
    """Maximum a posteriori logistic regression (Newton's method) of labels `y` (1 yes, 0 no) on the base
    log-odds and features `x`, with the priors of the module docstring. `mean`/`scale` standardise `x`
    (from all candidate pairs, not only the labelled ones); with no labels the result is the base model.

    `floors`: per feature, how much of the base log-odds it carries (per standard deviation of it; NaN:
    a feature with no direction, e.g. rarity; `PairPool.floors`). Then both slopes stay >= 0 and each
    floored feature's *total* effect too, c_j + slope * floors[j] >= 0: a correction may take back what the
    unlabelled model gave a similarity, not turn it into evidence against a match. Why: the comparisons of
    one modality are near-copies of each other (a title's cosine, tokens, trigrams and rarity-weighted
    overlap), and a hundred answers fitted them as a difference, a negative weight on one similarity paid
    for by a larger one on another, that reordered the pairs nobody labelled: on Amazon-Google the three
    question orders' corrections at 100 answers disagreed in sign on 6 of 11 comparisons, and one had a
    negative slope on the unlabelled model's own log-odds (F1 0.575 / 0.609 / 0.653; floored 0.631-0.662)."""
    k = x.shape[1]
    mean = np.zeros(k) if mean is None else np.asarray(mean, np.float64)
    scale = np.ones(k) if scale is None else np.maximum(np.asarray(scale, np.float64), MIN_SCALE)
    corr = Correction(0.0, 1.0, 1.0, np.zeros(k), mean, scale)
    if len(y) == 0:
        return corr
    design = np.column_stack([np.ones(len(y)), np.maximum(base_logit, 0.0), np.minimum(base_logit, 0.0),
                              corr.design(x)])
    prior_mu = np.concatenate([[0.0, 1.0, 1.0], np.zeros(k)])
    # Single comparisons are corrected only as far as answers of *both* kinds allow: with a handful of
    # yes answers a feature's coefficient is noise that reorders the pairs, while intercept and slopes
    # only move the threshold and keep the unlabelled model's ranking (Amazon-Google, 10 answers, 2 yes:
    # feature corrections took pairwise F1 from 0.31 to 0.17).
    fewest = min(int((y == 1).sum()), int((y == 0).sum()))
    tau = PRIOR_CORRECTION * min(1.0, fewest / FULL_CORRECTION) + 1e-3
    prior_prec = 1.0 / np.concatenate([[PRIOR_INTERCEPT, PRIOR_SLOPE, PRIOR_SLOPE], np.full(k, tau)]) ** 2
    bounded = floors is not None
    floors = np.full(k, np.nan) if floors is None else np.asarray(floors, np.float64)
    theta = _newton(design, np.asarray(y, np.float64), prior_mu, prior_prec, floors, bounded, iterations)
    return Correction(float(theta[0]), float(theta[1]), float(theta[2]), theta[3:].copy(), mean, scale)


def _newton(design: np.ndarray, y: np.ndarray, prior_mu: np.ndarray, prior_prec: np.ndarray,
            floors: np.ndarray, bounded: bool, iterations: int) -> np.ndarray:
    """`fit_correction`'s posterior mode by damped, projected Newton (Bertsekas 1982). With `bounded`,
    both slopes >= 0 and each floored feature's total effect >= 0, c_j >= -slope * floors[j]: solved in
    the variables e_j = c_j + slope * floors[j], where the constraints are bounds (e_j >= 0) and the
    log-posterior stays concave; without, no bounds and plain damped Newton. Why not a general solver: a
    question refits about seven times, and SLSQP took 19 ms a fit, most of the 200 ms a question may take
    at 100k records; this takes 0.4 ms."""
    k = design.shape[1]
    floored = ~np.isnan(floors)
    # theta = t @ phi: c_j = e_j - slope * floors_j for floored j, every other parameter unchanged.
    t = np.eye(k)
    t[3 + np.flatnonzero(floored), 1] = -floors[floored]
    d = design @ t
    prec = t.T @ (prior_prec[:, None] * t)
    lower = np.full(k, -np.inf)
    if bounded:
        lower[1:3] = 0.0
        lower[3:][floored] = 0.0
    phi = np.maximum(np.linalg.solve(t, prior_mu), lower)  # the prior mean, feasible when floors >= 0

    def objective(f: np.ndarray) -> float:
        z = d @ f
        r = t @ f - prior_mu
        return float((y * z - np.logaddexp(0.0, z)).sum() - 0.5 * (prior_prec * r * r).sum())

    current = objective(phi)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(d @ phi, -60, 60)))
        grad = d.T @ (y - p) - t.T @ (prior_prec * (t @ phi - prior_mu))
        hess = (d * (p * (1 - p))[:, None]).T @ d + prec
        # Variables at their bound that the gradient pushes further out stay there this step.
        free = ~((phi <= lower + 1e-10) & (grad < 0))
        step = np.zeros(k)
        step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        # Damped: the log-posterior is concave, but a full step can overshoot when the answers nearly
        # separate; halve it until the objective improves.
        alpha, moved = 1.0, False
        for _ in range(30):
            trial = np.maximum(phi + alpha * step, lower)
            value = objective(trial)
            if value >= current - 1e-12:
                moved = True
                break
            alpha /= 2
        if not moved:
            break
        change = float(np.abs(trial - phi).max())
        phi, current = trial, value
        if change < 1e-7:
            break
    return t @ phi


def f1_threshold(p: np.ndarray, floor: float = 0.05) -> float:
    """The match threshold that maximises the *expected* F1 over the candidate pairs when `p` are calibrated
    match probabilities: expected true positives above t are the sum of p above t, the expected number of
    matches the sum of all p. Why not 0.5: 0.5 is right for one pair (more likely a match than not), but on
    a file where even the best pairs are uncertain (Amazon-Google: a third of the pairs the unlabelled model
    is sure of are matches) it keeps nothing, and F1, recall included, is what a user judges the clusters by."""
    q = np.asarray(p, np.float64)
    q = np.sort(q[q >= floor])[::-1]  # filter first: most candidate pairs are far below the floor
    # The expected number of matches counts pairs above the floor only: a hundred thousand unrelated
    # candidate pairs at p = 0.02 each are the corrected model's extrapolation, not 2,000 matches.
    total = float(q.sum())
    if len(q) == 0 or total <= 0:
        return 0.5
    tp = np.cumsum(q)
    f1 = 2 * tp / (np.arange(1, len(q) + 1) + total)
    # For calibrated probabilities the F1-optimal threshold is half the best F1 reachable (Lipton, Elkan
    # and Naryanaswamy 2014), so never above 0.5: a higher one is calibration noise, and it costs recall.
    return float(min(q[int(np.argmax(f1))], 0.5))


def _folds(y: np.ndarray, folds: int) -> tuple[np.ndarray, int]:
    """Each answer's fold, stratified by answer (yes and no dealt round-robin), and the number of folds:
    at most `folds`, and no more than answers of the rarer kind."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    folds = int(min(folds, len(pos), len(neg)))
    fold = np.empty(len(y), np.int64)
    if folds > 0:
        fold[pos] = np.arange(len(pos)) % folds
        fold[neg] = np.arange(len(neg)) % folds
    return fold, folds


def cross_validate(base_logit: np.ndarray, x: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                   folds: int = 5, threshold: float = 0.5,
                   floors: np.ndarray | None = None) -> dict[str, Any] | None:
    """Precision and recall of the corrected model on the labels, each label predicted by a fit that did
    not see it (k folds, stratified by answer); None when there are too few of either answer."""
    y = np.asarray(y, np.int64)
    if min(int((y == 1).sum()), int((y == 0).sum())) < 2:
        return None
    fold, folds = _folds(y, folds)
    pred = np.zeros(len(y), bool)
    for f in range(folds):
        test = fold == f
        corr = fit_correction(base_logit[~test], x[~test], y[~test], mean=mean, scale=scale, floors=floors)
        pred[test] = corr.predict(base_logit[test], x[test]) >= threshold
    tp = int((pred & (y == 1)).sum())
    precision = tp / max(int(pred.sum()), 1) if pred.any() else 1.0
    recall = tp / int((y == 1).sum())
    return {"folds": folds, "precision": round(precision, 4), "recall": round(recall, 4),
            "yes": int((y == 1).sum()), "no": int((y == 0).sum())}


def held_out_gain(base_logit: np.ndarray, x: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                  folds: int = 5, floors: np.ndarray | None = None) -> float:
    """How much better the corrected model predicts answers it did not see than the unlabelled model does:
    the mean log-likelihood per answer (k folds, stratified by answer), corrected minus base. Why: a
    correction fitted to a dozen answers of one kind can fit their noise, and the answers themselves can
    say whether it generalises; `fit_labels` keeps the unlabelled model when it does not (a safety net: in
    the benchmark runs of docs/labelling.md it never fired once both kinds reached `MIN_PER_CLASS`)."""
    y = np.asarray(y, np.int64)
    fold, folds = _folds(y, folds)
    if folds < 2:
        return 0.0
    gain = 0.0
    for f in range(folds):
        test = fold == f
        corr = fit_correction(base_logit[~test], x[~test], y[~test], mean=mean, scale=scale, floors=floors)
        for sign, q in ((1.0, corr.predict(base_logit[test], x[test])),
                        (-1.0, 1.0 / (1.0 + np.exp(-base_logit[test])))):
            q = np.clip(q, 1e-6, 1 - 1e-6)
            gain += sign * float(np.where(y[test] == 1, np.log(q), np.log(1 - q)).sum())
    return gain / len(y)
