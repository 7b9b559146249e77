"""Fellegi-Sunter weights by self-training on reciprocal best pairs: the fit without labels for product files.

Why a module of its own: EM (`consumer.learn.fellegi_sunter`, `consumer.learn.fs_fit`) finds the wrong two
classes on product files, where candidate pairs hold far more siblings than duplicates; this fit takes the
pairs that are each other's best as its pseudo-matches instead (`fit_reciprocal`). It shares the model and
its level machinery with EM. Pure: arrays in, a `FellegiSunterModel` out.

Reciprocal pairs are at most one a record and the file's most alike, so in a file of groups (one product
offered by many shops) they undercount matches and see only near-identical titles. Where the model holds a
comparison that tells siblings apart (a declared conflict: code, variant, attributes), EM then re-estimates
the other comparisons' m and the prior over every candidate pair with those held (`refine_fit`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from consumer.encoders.base import Rarity
from consumer.learn.fellegi_sunter import (
    LAMBDA_RANGE,
    Comparison,
    FellegiSunterModel,
    gamma,
    level_probs,
    pattern_counts,
    run_em,
)

__all__ = ["CONFLICT_SHRINK", "MIN_PRESENT", "SIMILARITY_SHRINK", "filled", "fit_reciprocal", "one_of_each",
           "reciprocal_best", "refine_fit", "unread_columns", "unread_twins"]

#: Share of candidate pairs a comparison must be filled on to take part in a reciprocal fit.
MIN_PRESENT = 0.5
#: How far a reciprocal fit shrinks m toward u (toward "no evidence"): the training pairs are a pseudo-labelled
#: sample, and the most alike pairs of the file (each other's best), so a true pair whose titles were
#: rewritten or whose shops price apart is missing from them by selection, not because such pairs are not
#: matches (Amazon-Google: a price level 0.6-0.9 weighed -4.3 bits, like prices nothing alike). A level that
#: is a declared conflict (`Feature.conflict`: a code or variant clash) is what the encoder calls two
#: products; it keeps the light shrink, so a conflict stays a strong no. Chosen by leaving one file out over
#: 0.05 / 0.2 / 0.25 / 0.3 / 0.4 (docs/benchmarks.md, tenth round).
SIMILARITY_SHRINK, CONFLICT_SHRINK = 0.3, 0.05


def reciprocal_best(weight: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Mask of pairs that are each side's best-scoring pair (ties: the first such pair): a record's best pair
    is where it first appears among the pairs' records taken best first (a stable sort)."""
    order = np.argsort(-np.asarray(weight), kind="stable")
    pairs = np.stack([np.asarray(left, np.int64), np.asarray(right, np.int64)], axis=1)
    pairs = pairs - pairs.min(initial=0)  # record numbers from 0: a table's indices
    recs = pairs[order].ravel()
    first = np.full(recs.max(initial=0) + 1, len(recs), np.int64)  # each record's first position in `recs`
    np.minimum.at(first, recs, np.arange(len(recs)))
    best = np.repeat(order, 2)[first[pairs]]  # [pair, side]: that side's best pair
    return (best == np.arange(len(weight))[:, None]).all(axis=1)


def filled(cand_x: np.ndarray) -> np.ndarray:
    """Per comparison column: filled on at least `MIN_PRESENT` of the candidate pairs (what a reciprocal fit
    reads; a comparison most pairs cannot make would make "both filled" look like a match)."""
    return np.isnan(cand_x).mean(axis=0) <= 1 - MIN_PRESENT if len(cand_x) else np.zeros(cand_x.shape[1], bool)


def _twins(rarities: Sequence[Rarity], names: Sequence[str]) -> list[Rarity]:
    """The rarities with a `Rarity.otherwise` where `names` hold both (two overlaps of one title)."""
    return [r for r in rarities if r.otherwise is not None and r.feature in names and r.otherwise in names]


def one_of_each(comps: Sequence[Comparison], cand_x: np.ndarray, present: list[int],
                 rarities: Sequence[Rarity]) -> list[int]:
    """`present` less one of each rarity and its `Rarity.otherwise`: the rarity where the fit reads the
    comparison it leaves to (`Rarity.read_by`, `filled` as the reciprocal fit requires), else the other
    (Amazon-Google's manufacturer column, mostly empty: the title's brand words stay in the overlap). Why: the
    two read one title and would be counted twice."""
    names = [c.feature for c in comps]
    read = filled(cand_x)
    drop = {names.index(r.otherwise if r.read_by in names and read[names.index(r.read_by)] else r.feature)
            for r in _twins(rarities, names)}
    return [k for k in present if k not in drop]


def unread_twins(features: Sequence[str], used: Collection[str], rarities: Sequence[Rarity]) -> tuple[int, ...]:
    """The columns of `features` that a correction by answers leaves unread: of a rarity and its
    `Rarity.otherwise`, the one the model does not read (`core_idf` where it reads `title_idf`, as the shipped
    model does). Why: the two read one title; a correction reading both weighed them against each other
    (cddb with 100 answers: 0.76 -> 0.51; reading one, 0.87)."""
    return tuple(sorted(features.index(r.otherwise if r.feature in used else r.feature)
                        for r in _twins(rarities, features)))


def unread_columns(x: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """`x` with the columns `cols` missing, for a correction by answers (a copy when there are any)."""
    if not cols:
        return x
    x = x.copy()
    x[:, list(cols)] = np.nan
    return x


def _shrunk(m: np.ndarray, u: np.ndarray, shrink: float, veto: bool) -> np.ndarray:
    """`m` moved `shrink` of the way toward `u`, a veto's last level only `CONFLICT_SHRINK`; renormalised."""
    k = np.full(len(m), shrink)
    if veto:
        k[-1] = min(shrink, CONFLICT_SHRINK)
    out = m * (1 - k) + k * u
    return out / out.sum()


def fit_reciprocal(cand_x: np.ndarray, left: np.ndarray, right: np.ndarray, comps: Sequence[Comparison], *,
                   rounds: int = 3, shrink: float = SIMILARITY_SHRINK, first: np.ndarray | None = None,
                   vetoes: Collection[str] = ()) -> FellegiSunterModel:
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
    (higher is better) instead of the summed level ranks. `shrink`: of m toward u on every level but the last
    of the comparisons in `vetoes` (a declared conflict: `CONFLICT_SHRINK`)."""
    names = [c.feature for c in comps]
    if len(cand_x) < 20:
        raise ValueError(f"too few candidate pairs to fit on ({len(cand_x)})")
    # A comparison most pairs cannot make (a brand column one shop fills and the other leaves empty) would
    # make "both filled" look like a match: the reciprocal pairs drift to pairs within the shop that has it.
    present = filled(cand_x)
    if not present.any():
        raise ValueError("no comparison is filled on enough candidate pairs to fit on")
    comps = tuple(c for c, keep in zip(comps, present) if keep)
    cand_x = cand_x[:, present]
    g = gamma(cand_x, comps)
    # first ordering: fewer level steps from the best level is better; a null level counts as halfway
    steps = np.where(g >= 0, g, (np.array([c.n_levels for c in comps]) - 1) / 2.0).sum(axis=1)
    positive = reciprocal_best(-steps if first is None else first, left, right)
    model: FellegiSunterModel | None = None
    for _ in range(max(1, rounds)):
        if positive.sum() < 5 or (~positive).sum() < 5:
            raise ValueError("too few reciprocal best pairs to fit on")
        u = [level_probs(g[:, j], (~positive).astype(np.float64), c.n_levels) for j, c in enumerate(comps)]
        # m shrunk toward u (toward "no evidence"), a declared conflict's level less (`SIMILARITY_SHRINK`,
        # `CONFLICT_SHRINK`): a level the pairs happen to lack must not become a veto (Amazon-Google's prices)
        m = [_shrunk(level_probs(g[:, j], positive.astype(np.float64), c.n_levels), u[j], shrink, c.feature in vetoes)
             for j, c in enumerate(comps)]
        model = FellegiSunterModel(comps, m, u, float(np.clip(positive.mean(), *LAMBDA_RANGE)))
        w = model.match_weight(cand_x)
        nxt = reciprocal_best(w, left, right) & (w > 0)
        if np.array_equal(nxt, positive):
            break
        positive = nxt
    assert model is not None
    model.share = [level_probs(g[:, j], np.ones(len(g)), c.n_levels) for j, c in enumerate(comps)]
    model.u_random = [p.copy() for p in model.u]
    model.info = {"method": "reciprocal-best self-training", "iterations": rounds, "converged": True,
                  "candidate_pairs": int(len(cand_x)), "reciprocal_pairs": int(positive.sum()),
                  "left_out": [n for n in names if n not in {c.feature for c in comps}],
                  "lambda": round(model.lam, 6)}
    return model


def refine_fit(model: FellegiSunterModel, cand_x: np.ndarray, comps: Sequence[Comparison], vetoes: Collection[str],
               shrink: float = SIMILARITY_SHRINK) -> dict[str, float]:
    """A reciprocal fit's prior and m re-estimated by EM over the candidate pairs' level patterns, in place,
    where the fit kept a comparison of `vetoes` (a declared conflict): u kept, the m of those comparisons held,
    the others' m then shrunk toward u as `fit_reciprocal` does. `cand_x` and `comps` as `fit_reciprocal` took
    them. The info gains `lambda_reciprocal` and `em_iterations` (0: not run); returns those and `lambda`.

    Why: reciprocal pairs are at most one a record and the most alike pairs of the file. In a one-pool file
    of groups (a product offered by many shops, a record with four true pairs on average) they set the prior
    at a fiftieth of the matches and m at near-identical titles, so a group's members that are phrased
    apart score no (sibling-offers-1: recall 0.39). EM over all candidate pairs counts them; plain EM finds
    "same product family" instead (the reason for this module), so the comparisons that tell siblings apart
    keep their reciprocal m and stay a strong no, and EM runs only where the model has one. Without one
    (cddb, Amazon-Google: titles, brand, price) the reciprocal model is kept: there EM counts look-alike
    records as matches (cddb 0.81 -> 0.73). Its cost where it runs: a file of siblings whose duplicates are
    pairs loses some precision (docs/benchmarks.md, *EM after the reciprocal fit*). Called after the fit is
    compared with the shipped model (`fusion.adapt`): whether a file is unlike the shipped model's data is
    judged by the reciprocal fit, since counting more matches would make every file look unlike it (a
    400-listing file of our generator: agreement 0.74 -> 0.41, F1 0.995 -> 0.773)."""
    model.info["lambda_reciprocal"], model.info["em_iterations"] = round(model.lam, 6), 0
    held = [c.feature in vetoes for c in model.comparisons]
    if any(held):
        names = [c.feature for c in comps]
        g = gamma(cand_x[:, [names.index(c.feature) for c in model.comparisons]], model.comparisons)
        patterns, counts = pattern_counts(g)
        m, lam, _claimed, iterations, _converged = run_em(patterns, counts, model.u, model.m, model.lam, len(g),
                                                           held=held)
        model.m = [mj if keep else _shrunk(mj, uj, shrink, False) for mj, uj, keep in zip(m, model.u, held)]
        model.lam = lam
        model.info["lambda"], model.info["em_iterations"] = round(lam, 6), iterations
    return {k: model.info[k] for k in ("lambda", "lambda_reciprocal", "em_iterations")}
