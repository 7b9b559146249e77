"""Fellegi-Sunter match weights fitted without labels (expectation maximisation, as Splink does).

Why: a new user arrives with their own person file and no labels, and a model trained on someone else's
data (the shipped CRM model) neither fits their columns nor their error rates. The Fellegi-Sunter model
needs no labels: each comparison (given name, surname, street, postcode, ...) is cut into levels (exact,
one typo, related, different, null), and two probabilities per level are estimated from the file itself:

- u = P(level | two different people): first from random record pairs (almost all are non-matches);
- m = P(level | the same person) and the share of matches among candidate pairs (lambda): by EM on the
  candidate pairs the blocking produces (the pairs the engine will actually score). With `fix_u` off, u
  is re-estimated there too: candidate non-matches agree on names far more often than random pairs, and
  the posterior is only ever computed on candidate pairs.

A pair's match weight is log2(lambda / (1 - lambda)) plus, per comparison, log2(m / u) of its level (0
for a null level: a missing value is no evidence); its probability is the logistic of that. Agreeing on a
rare value says more than on a common one: for comparisons with a term-frequency feature the exact level's
u is replaced by the value's share of the records (Splink's term-frequency adjustment).

Pure: arrays in, arrays out; the adapter that runs the engine for candidate and random pairs is
`consumer/unsupervised.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Comparison", "FellegiSunterModel", "fit_fellegi_sunter", "fit_reciprocal", "levels_of", "estimate_u",
           "reciprocal_best"]

#: Smoothing of level counts (pseudo-pairs per level), so an unseen level never has probability 0.
SMOOTH = 0.5
#: Term-frequency adjustments are bounded (bits): a value seen once at the start of a stream is not proof.
TF_CLIP = 4.0
#: Lambda is kept inside this range: a fit that collapses to "no matches" or "all matches" is no model.
LAMBDA_RANGE = (1e-5, 0.5)
#: Share of candidate pairs a comparison must be filled on to take part in a reciprocal fit.
MIN_PRESENT = 0.5


@dataclass(frozen=True)
class Comparison:
    """A feature used as a comparison: `levels` are descending cut points (level i: value >= levels[i];
    the last level: below all; NaN: null), `tf` the rarity feature adjusting the exact level, if any."""

    feature: str
    levels: tuple[float, ...]
    tf: str | None = None

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 1

    def labels(self) -> list[str]:
        return [f">= {c:g}" if c < 1 else "exact" for c in self.levels] + ["else"]


def levels_of(values: np.ndarray, comp: Comparison) -> np.ndarray:
    """Level index per pair (0 = best), -1 where the value is NaN (null level)."""
    out = np.full(len(values), len(comp.levels), np.int8)
    for i in reversed(range(len(comp.levels))):
        out[values >= comp.levels[i] - 1e-6] = i
    out[np.isnan(values)] = -1
    return out


def _gamma(x: np.ndarray, comps: Sequence[Comparison]) -> np.ndarray:
    return np.stack([levels_of(x[:, k], c) for k, c in enumerate(comps)], axis=1) if len(x) else \
        np.zeros((0, len(comps)), np.int8)


def _level_probs(g: np.ndarray, weights: np.ndarray, n_levels: int) -> np.ndarray:
    present = g >= 0
    counts = np.bincount(g[present], weights=weights[present], minlength=n_levels)[:n_levels] + SMOOTH
    return counts / counts.sum()


def estimate_u(random_x: np.ndarray, comps: Sequence[Comparison]) -> list[np.ndarray]:
    """u per comparison level from random record pairs ([R, K] features in comparison order)."""
    g = _gamma(random_x, comps)
    ones = np.ones(len(g))
    return [_level_probs(g[:, k], ones, c.n_levels) for k, c in enumerate(comps)]


@dataclass
class FellegiSunterModel:
    """Fitted parameters; `predict_proba` takes features in `inputs` order (comparisons, then tf features),
    so it can stand in for a classifier behind `consumer.fusion.LearnedModel`."""

    comparisons: tuple[Comparison, ...]
    m: list[np.ndarray]
    u: list[np.ndarray]
    lam: float
    #: u from random pairs (reported beside the u used, which may be the candidate pairs' own).
    u_random: list[np.ndarray] = field(default_factory=list)
    #: Share of candidate pairs per level (reported).
    share: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        tfs = [c.tf for c in self.comparisons if c.tf]
        return tuple([c.feature for c in self.comparisons] + tfs)

    def match_weight(self, x: np.ndarray) -> np.ndarray:
        """log2 Bayes factor plus prior, per pair."""
        k = len(self.comparisons)
        g = _gamma(x[:, :k], self.comparisons)
        w = np.full(len(x), np.log2(self.lam / (1 - self.lam)))
        tf_col = k
        for j, c in enumerate(self.comparisons):
            bf = np.log2(self.m[j] / self.u[j])
            lv = g[:, j]
            w += np.where(lv >= 0, bf[np.maximum(lv, 0)], 0.0)
            if c.tf:
                rarity = x[:, tf_col].astype(np.float64)
                tf_col += 1
                with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                    share = 1.0 / np.expm1(rarity)  # rarity = log1p(N / (1 + count)) -> (1 + count) / N
                    adj = np.clip(np.log2(self.u[j][0] / share), -TF_CLIP, TF_CLIP)
                w += np.where((lv == 0) & np.isfinite(adj), adj, 0.0)
        return w

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp2(-np.clip(self.match_weight(x), -60, 60)))
        return np.stack([1 - p, p], axis=1)

    def explain(self) -> list[dict[str, Any]]:
        """One row per comparison level: m, u, match weight (log2 m/u), share of candidate pairs."""
        rows = [{"comparison": "(prior)", "level": "lambda", "m": None, "u": None,
                 "weight": round(float(np.log2(self.lam / (1 - self.lam))), 3), "share": None}]
        for j, c in enumerate(self.comparisons):
            for i, label in enumerate(c.labels()):
                rows.append({"comparison": c.feature + (" (tf)" if c.tf and i == 0 else ""), "level": label,
                             "m": round(float(self.m[j][i]), 5), "u": round(float(self.u[j][i]), 5),
                             "weight": round(float(np.log2(self.m[j][i] / self.u[j][i])), 3),
                             "share": round(float(self.share[j][i]), 4) if self.share else None})
        return rows


def fit_fellegi_sunter(cand_x: np.ndarray, random_x: np.ndarray, comps: Sequence[Comparison], *,
                       fix_u: bool = False, max_iter: int = 200, tol: float = 1e-6,
                       lam0: float = 0.05) -> FellegiSunterModel:
    """EM on candidate pairs (`cand_x`, [P, K] in comparison order) with u started (or fixed) at its
    random-pair estimate (`random_x`). m starts at "a match mostly agrees" (the top level most likely)."""
    comps = tuple(comps)
    if len(cand_x) < 20:
        raise ValueError(f"too few candidate pairs to fit on ({len(cand_x)})")
    u_random = estimate_u(random_x, comps)
    g = _gamma(cand_x, comps)
    u = [p.copy() for p in u_random]
    m = []
    for c in comps:
        init = np.array([0.8 * 0.25 ** i for i in range(c.n_levels)])
        m.append(init / init.sum())
    lam = lam0
    iterations = 0
    change = np.inf
    while iterations < max_iter:
        iterations += 1
        w = np.full(len(g), np.log(lam / (1 - lam)))
        for j in range(len(comps)):
            lv = g[:, j]
            w += np.where(lv >= 0, np.log(m[j] / u[j])[np.maximum(lv, 0)], 0.0)
        p = 1.0 / (1.0 + np.exp(-np.clip(w, -60, 60)))
        new_lam = float(np.clip(p.mean(), *LAMBDA_RANGE))
        new_m = [_level_probs(g[:, j], p, c.n_levels) for j, c in enumerate(comps)]
        new_u = u if fix_u else [_level_probs(g[:, j], 1 - p, c.n_levels) for j, c in enumerate(comps)]
        change = max(abs(new_lam - lam), *(float(np.abs(a - b).max()) for a, b in zip(new_m, m)),
                     *(float(np.abs(a - b).max()) for a, b in zip(new_u, u)))
        m, u, lam = new_m, new_u, new_lam
        if change < tol:
            break
    share = [_level_probs(g[:, j], np.ones(len(g)), c.n_levels) for j, c in enumerate(comps)]
    info = {"method": "fellegi-sunter-em", "iterations": iterations, "converged": bool(change < tol),
            "candidate_pairs": int(len(cand_x)), "random_pairs": int(len(random_x)), "fix_u": fix_u,
            "lambda": round(lam, 6)}
    return FellegiSunterModel(comps, m, u, lam, u_random, share, info)


def reciprocal_best(weight: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Mask of pairs that are each side's best-scoring pair (ties: the first such pair)."""
    best: dict[int, tuple[float, int]] = {}
    for j in np.argsort(-weight, kind="stable"):
        for r in (int(left[j]), int(right[j])):
            if r not in best:
                best[r] = (float(weight[j]), int(j))
    return np.array([best[int(a)][1] == j and best[int(b)][1] == j for j, (a, b) in enumerate(zip(left, right))],
                    bool)


def fit_reciprocal(cand_x: np.ndarray, left: np.ndarray, right: np.ndarray, comps: Sequence[Comparison], *,
                   rounds: int = 3, shrink: float = 0.05, first: np.ndarray | None = None
                   ) -> FellegiSunterModel:
    """Fellegi-Sunter weights by self-training on reciprocal best pairs, for files where plain EM finds
    the wrong two classes.

    Why: on product files the candidate pairs hold far more *siblings* (the same maker's other models,
    the same title in another colour) than duplicates, and EM's two latent classes become "same product
    family" and "unrelated" (Abt-Buy: lambda 0.035, a code conflict left as weak evidence). A listing's
    duplicate, when it has one, is almost always its best candidate, and the best candidate of that one in
    turn; a sibling rarely is both. So m is estimated from pairs that are each other's best (by the
    current weights: first by the summed level ranks, then by the model itself, `rounds` times), u from
    every other candidate pair (hard non-matches, not random ones), lambda as the share of reciprocal
    pairs with positive evidence. `left`/`right`: the records of each candidate pair. Comparisons filled
    on under `MIN_PRESENT` of the pairs are left out (`info["left_out"]`). `first`: another first ordering
    (higher is better) instead of the summed level ranks."""
    names = [c.feature for c in comps]
    if len(cand_x) < 20:
        raise ValueError(f"too few candidate pairs to fit on ({len(cand_x)})")
    # A comparison most pairs cannot make (a brand column one shop fills and the other leaves empty) would
    # make "both filled" look like a match: the reciprocal pairs drift to pairs within the shop that has it.
    present = np.isnan(cand_x).mean(axis=0) <= 1 - MIN_PRESENT
    if not present.any():
        raise ValueError("no comparison is filled on enough candidate pairs to fit on")
    comps = tuple(c for c, keep in zip(comps, present) if keep)
    cand_x = cand_x[:, present]
    g = _gamma(cand_x, comps)
    # first ordering: fewer level steps from the best level is better; a null level counts as halfway
    steps = np.where(g >= 0, g, (np.array([c.n_levels for c in comps]) - 1) / 2.0).sum(axis=1)
    positive = reciprocal_best(-steps if first is None else first, left, right)
    model: FellegiSunterModel | None = None
    for _ in range(max(1, rounds)):
        if positive.sum() < 5 or (~positive).sum() < 5:
            raise ValueError("too few reciprocal best pairs to fit on")
        u = [_level_probs(g[:, j], (~positive).astype(np.float64), c.n_levels) for j, c in enumerate(comps)]
        # m shrunk toward u (toward "no evidence"): the reciprocal pairs are a pseudo-labelled sample, and
        # a level they happen to lack must not become a veto of -9 bits (Amazon-Google: prices of two shops)
        m = [(_level_probs(g[:, j], positive.astype(np.float64), c.n_levels) * (1 - shrink) + shrink * u[j])
             for j, c in enumerate(comps)]
        model = FellegiSunterModel(comps, m, u, float(np.clip(positive.mean(), *LAMBDA_RANGE)))
        w = model.match_weight(cand_x)
        nxt = reciprocal_best(w, left, right) & (w > 0)
        if np.array_equal(nxt, positive):
            break
        positive = nxt
    assert model is not None
    model.share = [_level_probs(g[:, j], np.ones(len(g)), c.n_levels) for j, c in enumerate(comps)]
    model.u_random = [p.copy() for p in model.u]
    model.info = {"method": "reciprocal-best self-training", "iterations": rounds, "converged": True,
                  "candidate_pairs": int(len(cand_x)), "reciprocal_pairs": int(positive.sum()),
                  "left_out": [n for n in names if n not in {c.feature for c in comps}],
                  "lambda": round(model.lam, 6)}
    return model
