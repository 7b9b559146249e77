"""Fellegi-Sunter match weights fitted without labels (expectation maximisation, as Splink does).

Why: a new user arrives with their own person file and no labels, and a model trained on someone else's
data (the shipped CRM model) neither fits their columns nor their error rates. The Fellegi-Sunter model
needs no labels: each comparison (given name, surname, street, postcode, ...) is cut into levels (exact,
one typo, related, different, null), and two probabilities per level are estimated from the file itself:

- u = P(level | two different people), from random record pairs (almost all are non-matches), and kept
  fixed;
- m = P(level | the same person) and lambda, the probability that two records drawn at random from the
  file are the same person, by EM over the candidate pairs the blocking produces (the only pairs where
  matches are common enough to learn from; the pairs it never proposes are non-matches for the fit).

Why u stays at its random-pair value and lambda is over *all* pairs (Splink's model), not over the
candidate pairs: candidate non-matches were chosen for agreeing on something (the name index proposes
namesakes), so among them the comparisons are far from independent (two candidates share a given name
or a surname, rarely both). EM with u re-estimated there explains that pattern instead of the matches:
on RLdata10000 (given name, surname, date of birth) its "match" class became "same given name, other
surname" (lambda 0.37 of the candidate pairs, a 427-record cluster, pairwise F1 0.003). Over all pairs
the comparisons are close to independent among non-matches, which is what the model assumes.

A pair's match weight is log2(lambda / (1 - lambda)) plus, per comparison, log2(m / u) of its level (0
for a null level: a missing value is no evidence); its probability is the logistic of that. Agreeing on a
rare value says more than on a common one: for comparisons with a term-frequency feature the exact level's
u is replaced by the value's share of the records (Splink's term-frequency adjustment). One edit apart, the
rarer of the two values tells a typo (held once) from two names (Schmitt / Schmidt, each held by dozens):
`consumer.learn.fs_fit.fit_near_count`.

The fit is checked before it is used (`consumer/learn/fs_fit.py`: a plausible number of matches, agreement is
evidence for a match), re-seeded from a deterministic rule when it fails, and replaced by stated default
weights when that fails too; `info["fit"]` says which.

Pure: arrays in, arrays out; the adapter that runs the engine for candidate and random pairs is
`consumer/learn/unsupervised.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consumer.engine.frequencies import MIN_RECORDS as FREQ_SCALE

__all__ = ["Comparison", "FellegiSunterModel", "Population", "levels_of", "estimate_u", "default_m",
           "pattern_counts", "match_mass", "log_bf", "run_em", "all_agree", "joint_patterns", "inputs_of"]

#: Smoothing of level counts (pseudo-pairs per level), so an unseen level never has probability 0.
SMOOTH = 0.5
#: Term-frequency adjustments are bounded (bits): a value seen once at the start of a stream is not proof.
TF_CLIP = 4.0
#: Bounds of lambda (the probability that two random records match) during EM: never exactly 0 or 1.
LAMBDA_RANGE = (1e-12, 0.5)


@dataclass(frozen=True)
class Comparison:
    """A feature used as a comparison: `levels` are descending cut points (level i: value >= levels[i];
    the last level: below all; NaN: null), `tf` the rarity feature adjusting the exact level, if any,
    `tf_near` the rarer-value count adjusting the second level (`FellegiSunterModel.near_count`)."""

    feature: str
    levels: tuple[float, ...]
    tf: str | None = None
    tf_near: str | None = None

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 1

    def labels(self) -> list[str]:
        return [f">= {c:g}" if c < 1 else "exact" for c in self.levels] + ["else"]


class Population(Protocol):
    """What the term-frequency adjustment reads at prediction time: how many records the rarity counts
    were taken over (a pipeline's `FrequencyTable`)."""

    records: int


def inputs_of(comps: Sequence[Comparison]) -> tuple[str, ...]:
    """The features a model of `comps` reads, in order: the comparisons, then their `tf`, then their `tf_near`."""
    return tuple([c.feature for c in comps] + [c.tf for c in comps if c.tf] + [c.tf_near for c in comps if c.tf_near])


def levels_of(values: np.ndarray, comp: Comparison) -> np.ndarray:
    """Level index per pair (0 = best), -1 where the value is NaN (null level)."""
    out = np.full(len(values), len(comp.levels), np.int8)
    for i in reversed(range(len(comp.levels))):
        out[values >= comp.levels[i] - 1e-6] = i
    out[np.isnan(values)] = -1
    return out


def gamma(x: np.ndarray, comps: Sequence[Comparison]) -> np.ndarray:
    """Level indices [P, K] of pairs' comparison values [P, K] (in comparison order)."""
    return np.stack([levels_of(x[:, k], c) for k, c in enumerate(comps)], axis=1) if len(x) else \
        np.zeros((0, len(comps)), np.int8)


def level_probs(g: np.ndarray, weights: np.ndarray, n_levels: int) -> np.ndarray:
    """Weighted level distribution of one comparison's level column (nulls left out), smoothed. One count over
    every pair, the nulls in a slot after the last level (no mask to gather by: EM's scored passes call it for
    every comparison and pass)."""
    counts = np.bincount(np.where(g >= 0, g, n_levels), weights=weights, minlength=n_levels + 1)[:n_levels] + SMOOTH
    return counts / counts.sum()


def estimate_u(random_x: np.ndarray, comps: Sequence[Comparison]) -> list[np.ndarray]:
    """u per comparison level from random record pairs ([R, K] features in comparison order)."""
    g = gamma(random_x, comps)
    ones = np.ones(len(g))
    return [level_probs(g[:, k], ones, c.n_levels) for k, c in enumerate(comps)]


def default_m(n_levels: int) -> np.ndarray:
    """The stated default m of a comparison with `n_levels` levels: 0.80 for the top level, 0.05 for the
    last ("else"), the rest shared by the levels between (0.95 / 0.05 for two levels). What a match looks
    like in a clerically kept file; the EM's starting point and the weights of the last-resort fallback."""
    if n_levels <= 2:
        return np.array([0.95, 0.05][:n_levels]) / sum([0.95, 0.05][:n_levels])
    middle = [0.15 / (n_levels - 2)] * (n_levels - 2)
    return np.array([0.80, *middle, 0.05])


def pattern_counts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct level patterns of [P, K] level indices and how many pairs have each: EM over a few
    hundred patterns instead of hundreds of thousands of pairs gives the same fit, far faster."""
    if len(g) == 0:
        return g, np.zeros(0)
    # One integer per pattern (levels + 1 in a mixed radix, null = 0): a 1-D unique is ~10x faster than
    # np.unique(axis=0) on hundreds of thousands of rows.
    radix = int(g.max()) + 2
    if radix ** g.shape[1] >= 2 ** 62:
        patterns, counts = np.unique(g, axis=0, return_counts=True)
        return patterns, counts.astype(np.float64)
    codes = np.zeros(len(g), np.int64)
    for j in range(g.shape[1]):
        codes = codes * radix + (g[:, j].astype(np.int64) + 1)
    uniq, first, counts = np.unique(codes, return_index=True, return_counts=True)
    return g[first], counts.astype(np.float64)


def log_bf(patterns: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray],
            cols: Sequence[int] | None = None) -> np.ndarray:
    """Natural-log Bayes factor of each pattern (null levels add 0), over `cols` only when given."""
    out = np.zeros(len(patterns))
    for j in range(patterns.shape[1]) if cols is None else cols:
        lv = patterns[:, j]
        out += np.where(lv >= 0, np.log(m[j] / u[j])[np.maximum(lv, 0)], 0.0)
    return out


def all_agree(g: np.ndarray, idx: Sequence[int], agreeing: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Pairs whose every stated comparison of `idx` agrees, two stated at least: the pattern a
    `consumer.learn.joint` group is capped at. Agreeing: the exact level (0), or with `agreeing` (per
    comparison of `idx`, a flag per level) any level flagged."""
    lv = g[:, list(idx)]
    if agreeing is None:
        ok = lv <= 0
    else:
        ok = np.stack([np.append(flags, True)[lv[:, i]] for i, flags in enumerate(agreeing)], axis=1)
    return ok.all(axis=1) & ((lv >= 0).sum(axis=1) >= 2)


def joint_patterns(g: np.ndarray, groups: Sequence[Sequence[int]],
                   agreeing: Mapping[int, np.ndarray] | None = None) -> list[np.ndarray]:
    """Per group of comparisons (in the order given), the pairs whose summed weight it caps: every stated part
    agreeing (`all_agree`; `agreeing`: comparison -> which of its levels agree, else the exact level only),
    less the pairs that a larger group holding all of its parts caps already (a household's shared surname
    and home are capped once, as a household, not once more as a home)."""
    agree = [all_agree(g, idx, None if agreeing is None else [agreeing[j] for j in idx]) for idx in groups]
    out = [mask.copy() for mask in agree]
    for i, small in enumerate(groups):
        for k, large in enumerate(groups):
            if len(large) > len(small) and set(small) <= set(large):
                out[i] &= ~agree[k]
    return out


def match_mass(patterns: np.ndarray, counts: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray],
               lam: float) -> np.ndarray:
    """Expected number of matches per pattern (its count times its posterior match probability)."""
    w = np.log(lam / (1 - lam)) + log_bf(patterns, m, u)
    return counts / (1.0 + np.exp(-np.clip(w, -60, 60)))


def run_em(patterns: np.ndarray, counts: np.ndarray, u: Sequence[np.ndarray], m0: Sequence[np.ndarray],
           lam0: float, pairs_total: float, *, fix_lam: bool = False, max_iter: int = 500,
           tol: float = 1e-6, held: Sequence[bool] = ()) -> tuple[list[np.ndarray], float, float, int, bool]:
    """EM for m (and lambda, unless `fix_lam`) over candidate-pair patterns with u fixed; lambda is matches
    over *all* `pairs_total` record pairs (pairs the blocking never proposes count as non-matches). The m of
    a comparison whose `held` entry is true stays as in `m0`.
    Returns (m, lambda, claimed: the expected number of matches among the candidate pairs, iterations,
    converged)."""
    m = [np.asarray(x, np.float64) for x in m0]
    lam = float(np.clip(lam0, *LAMBDA_RANGE))
    n_levels = [len(x) for x in u]
    change, iterations, claimed = np.inf, 0, 0.0
    while iterations < max_iter:
        iterations += 1
        p = match_mass(patterns, counts, m, u, lam)
        claimed = float(p.sum())
        new_lam = lam if fix_lam else float(np.clip(claimed / pairs_total, *LAMBDA_RANGE))
        new_m = [m[j] if j < len(held) and held[j] else level_probs(patterns[:, j], p, n_levels[j])
                 for j in range(len(u))]
        change = max(abs(np.log(new_lam / lam)), *(float(np.abs(a - b).max()) for a, b in zip(new_m, m)))
        m, lam = new_m, new_lam
        if change < tol:
            break
    return m, lam, claimed, iterations, bool(change < tol)


@dataclass
class FellegiSunterModel:
    """Fitted parameters; `predict_proba` takes features in `inputs` order (comparisons, then tf features),
    so it can stand in for a classifier behind `consumer.engine.fusion.LearnedModel`.

    `lam` is the probability that two random records of the file are the same person (Splink's
    "probability two random records match"), the prior of every pair the blocking proposes."""

    comparisons: tuple[Comparison, ...]
    m: list[np.ndarray]
    u: list[np.ndarray]
    lam: float
    #: The level shares of random pairs, matches included (`u` is their non-matches' share, `fs_fit`): what a
    #: new file's random pairs are compared with (`drift_notes`).
    u_random: list[np.ndarray] = field(default_factory=list)
    #: Share of candidate pairs per level (reported).
    share: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: Records of the file the model was fitted to: the scale of the rarity counts when no running
    #: population is bound (a service that loaded the model file).
    records: int = 0
    #: Per comparison with a `tf_near` feature: the typical count of the rarer value among the likely
    #: matches at its second level (one edit apart, `fit_near_count`); a pair there loses the bits by which
    #: its rarer value is more common than that. Empty: no adjustment (a model fitted before it existed).
    near_count: dict[str, float] = field(default_factory=dict)
    #: Parts of one thing that agree together among non-matches (an address): group -> (its comparisons, the
    #: bits their sum is capped at where every stated part agrees), read from the file (`consumer.learn.joint`).
    joint: dict[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.population: Population | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["population"] = None  # a pipeline's live table is never part of the model file
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("records", 0)  # model files written before the fields existed
        state.setdefault("near_count", {})
        state.setdefault("joint", {})
        state.setdefault("population", None)
        self.__dict__.update(state)

    def bind(self, population: Population | None) -> None:
        """Read the number of records the rarity counts cover from `population` (the running pipeline's
        frequency table) instead of the fitted file's size, so a stream or file larger than the fit does
        not make every value look more common than it is."""
        self.population = population

    @property
    def inputs(self) -> tuple[str, ...]:
        return inputs_of(self.comparisons)

    def near_columns(self) -> list[tuple[int, int]]:
        """(comparison index, column in `inputs` order) of each comparison's `tf_near` feature."""
        first = len(self.comparisons) + sum(1 for c in self.comparisons if c.tf)
        return [(j, first + i) for i, j in enumerate(j for j, c in enumerate(self.comparisons) if c.tf_near)]

    def _scale(self) -> float:
        """Records the rarity counts are taken over: the running count, else the fitted file's, never
        below the frequency table's extrapolation scale (smaller indexes are extrapolated to it)."""
        n = self.population.records if self.population is not None else self.records
        return float(max(n, FREQ_SCALE))

    def match_weight(self, x: np.ndarray) -> np.ndarray:
        """log2 Bayes factor plus prior, per pair."""
        g = gamma(x[:, :len(self.comparisons)], self.comparisons)
        near = np.zeros(len(x))
        for j, col in self.near_columns():
            typical = self.near_count.get(self.comparisons[j].feature)
            if typical:  # log2(typical count / this pair's count of its rarer value), second level only
                bits = np.log2(typical) - x[:, col].astype(np.float64) / np.log(2.0)
                near += np.where((g[:, j] == 1) & np.isfinite(bits), np.clip(bits, -TF_CLIP, TF_CLIP), 0.0)
        return self.weight_of(g, self.rarity_bits(x, g), near)

    def rarity_bits(self, x: np.ndarray, g: np.ndarray) -> dict[int, np.ndarray]:
        """Per comparison with a `tf` feature, each pair's term-frequency adjustment of its exact level (bits;
        0 at other levels): it does not depend on m, so EM's last rounds compute it once (`fs_fit`)."""
        out: dict[int, np.ndarray] = {}
        tf_col, scale = len(self.comparisons), self._scale()
        for j, c in enumerate(self.comparisons):
            if c.tf:
                # rarity = log1p(estimated number of *other* records with the value, at `scale` records):
                # the value's share of the records is (others + 1) / scale; it replaces the exact level's u.
                rarity = x[:, tf_col].astype(np.float64)
                tf_col += 1
                with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                    share = (np.expm1(rarity) + 1.0) / scale
                    adj = np.clip(np.log2(self.u[j][0] / share), -TF_CLIP, TF_CLIP)
                out[j] = np.where((g[:, j] == 0) & (rarity >= 0) & np.isfinite(adj), adj, 0.0)
        return out

    def weight_of(self, g: np.ndarray, rarity: dict[int, np.ndarray], near: np.ndarray | float = 0.0) -> np.ndarray:
        """`match_weight` of pairs at levels `g` with their rarity (`rarity_bits`) and near-level adjustments.
        A joint group's cap, read at its whole exact agreement, bounds every pair whose stated parts all agree
        at a level that weighs for a match (a street one typo apart): a partial agreement is never worth more
        than the whole one (the parts summed as independent made a home with a misspelt street worth 22 bits
        where the same home written alike was capped at 12)."""
        w = np.log2(self.lam / (1 - self.lam)) + np.zeros(len(g)) + near
        names = [c.feature for c in self.comparisons]
        groups = [[names.index(f) for f in parts] for parts, _ in self.joint.values()]
        # Each grouped comparison's bits (its rarity adjustment included), which a group's cap bounds together.
        parts: dict[int, np.ndarray] = {}
        tables = [np.log2(m / u) for m, u in zip(self.m, self.u)]  # bits per level
        for j in range(len(self.comparisons)):
            bits = np.append(tables[j], 0.0)[g[:, j]]  # the null level (-1) reads the 0
            if j in rarity:
                bits += rarity[j]
            w += bits
            parts[j] = bits
        agreeing = {j: tables[j] > 0 for idx in groups for j in idx}
        for idx, (_, cap), sel in zip(groups, self.joint.values(), joint_patterns(g, groups, agreeing)):
            if sel.any():  # the group's summed bits where all of it agrees, never above what the file says
                w[sel] -= np.maximum(sum(parts[j][sel] for j in idx) - cap, 0.0)
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
