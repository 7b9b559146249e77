"""Fitting Fellegi-Sunter weights to a file, with guards against a fit that cannot be right.

EM finds *a* two-class split of the candidate pairs, not necessarily matches versus non-matches: where the
comparisons are not independent among non-matches, a split along another axis explains the pairs better
(RLdata10000 under the old candidate-pair fit: "same given name, other surname", 12 matching pairs per
record, a 427-record cluster; a file of households: "same surname, address and phone"). So a fit is
checked before it is used, against facts any person file obeys:

- **plausible matches**: the number of matching pairs the fit claims among the candidate pairs. A group
  of k records holds k(k-1)/2 pairs, (k-1)/2 per record: files of pairs hold well under N (RLdata10000:
  0.1N; FEBRL3, 60% duplicates in clusters up to 6: 1.3N), a registry merged from many sources, with
  groups of 3-20 records, 3-4N; over 5N would take groups averaging eleven records, and the collapse this
  guard exists for claimed 12N (RLdata10000 under the old candidate-pair fit, below). The bound was 2N,
  which took a file of large groups for a collapse (a generator of groups of 3-20: EM claimed 3.29 pairs
  per record, the truth 3.4; the default weights it fell back to scored 0.872 against 0.913);
- **matches mostly look like matches**: a deterministic rule (the candidate pairs that agree, or nearly,
  on all but a quarter of the comparisons present, one of them exactly) finds 90-97% of the true
  matching pairs of every file measured (RLdata10000, FEBRL1, 2, 4, with and without date of birth: EM
  claims at most 1.1 times the rule's count there); a fit that claims more than `RULE_RATIO` times as
  many has found something else (simulated files with 0.08 to 1 household pair per record: 1.7 to 8
  times, and a precision of 0.56 to 0.09). A split along households has a shape, though: its "matches"
  disagree on the fields that tell the members of a household apart (given name, date of birth) as
  often as strangers do, while they agree on the shared ones (surname, address) as the rule's pairs do.
  Heavy corruption (every field typed, swapped or dropped at random) lowers agreement on every field
  alike. So EM's count over `RULE_RATIO` times the rule's is taken for a wrong split only when the fit's
  top-level agreement falls short of the rule pairs' by `SPLIT_SPREAD` more on some comparison than on
  the median one (simulated households at 0.08 to 1 pair per record: 0.33 to 0.64; every real file and
  the simulated files without households: 0.00 to 0.12). Why: fake-1000 (errors in every field, groups
  up to 8: EM claims 1,467 pairs, 1.6 times the rule's 927, and the truth has 2,031) and a third-party
  generator's person file (EM 2,869 pairs, truth 2,685) were refitted on a right fit, and the refit kept
  fewer matches still;
- **agreement is evidence for a match**: each comparison's top level must weigh > -0.5 bits, its last
  level ("else") < +0.5 bits, and agreeing more than disagreeing.

A fit that fails is replaced by the deterministic rule's: each comparison's m from the pairs the *other*
comparisons alone call a match (`rule_m_without`), or, where that fails the same checks or too few pairs are
left, from the rule's own pairs blended half and half with the defaults; lambda read from the file by EM over
lambda alone, m and u held (`_fit_lambda`). m is not re-estimated: EM drifts back to the split it found
(measured on the simulated households); lambda was the rule's count until issue 37, a floor rather than an
estimate (fake-1000, heavy errors in every field: the rule accepts 925 pairs of the truth's 2,031, and the
refit kept 1,228; F1 0.708 -> 0.732).
Measured on the real files, the rule's weights score within
0.003 pairwise F1 of the EM's, so a needless refit costs little. If the refit fails the guards too, the
stated default weights are used (`default_m` per comparison, u from random pairs, lambda
`DEFAULT_MATCHES_PER_RECORD`) rather than clusters nobody believes. `info["fit"]` says which path was
taken and `info["reasons"]` why; `dedup batch` puts both in its summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from consumer.learn.fellegi_sunter import (
    LAMBDA_RANGE,
    SMOOTH,
    Comparison,
    FellegiSunterModel,
    default_m,
    estimate_u,
    gamma,
    level_probs,
    levels_of,
    match_mass,
    pattern_counts,
    run_em,
)
from consumer.learn.joint import fit_joint

__all__ = ["fit_fellegi_sunter", "fit_near_count", "matches_removed", "check_fit", "rule_matches", "rule_m_without",
           "MAX_MATCHES_PER_RECORD", "RULE_RATIO", "SPLIT_SPREAD", "split_spread", "DEFAULT_MATCHES_PER_RECORD",
           "FIT_OK", "FIT_REFIT", "FIT_FALLBACK"]

#: Guard: at most this many matching pairs per record (groups averaging eleven records; module docstring).
MAX_MATCHES_PER_RECORD = 5.0
#: Guard: at most this many times the deterministic rule's matches (plus `RULE_SLACK` per record, so a
#: file with a handful of duplicates is not judged on a handful).
RULE_RATIO = 1.5
RULE_SLACK = 0.01
#: ... unless the fit's shortfall in top-level agreement against the rule's pairs is about as large on every
#: comparison (max minus median below this): corruption, not a split along some fields (module docstring).
#: Half-way between the simulated files without households (0.00) and the mildest with (0.33).
SPLIT_SPREAD = 0.165
#: Where EM starts (matches per record), and the prior of the default-weights fallback.
SEED_MATCHES_PER_RECORD = 0.5
DEFAULT_MATCHES_PER_RECORD = 0.1
#: Tolerance of the evidence-direction guard (bits): a near-constant field (every record in one state)
#: weighs ~0 either way and must not fail it.
TOL_BITS = 0.5
#: Rounds of (u from the random pairs' non-matches, EM again) at most, and the relative change of lambda at
#: which they stop (`_without_random_matches`): convergence settings, not a fitted choice.
U_ROUNDS, U_TOL = 10, 1e-3
FIT_OK = "ok"
FIT_REFIT = "refit: m and lambda from a deterministic rule"
FIT_FALLBACK = "fallback: default weights"


def _pairs(records: int) -> float:
    return records * (records - 1) / 2.0


def split_spread(m: Sequence[np.ndarray], rule_m: Sequence[np.ndarray]) -> float:
    """How unevenly the fit's matches agree less than the rule's pairs, comparison by comparison: the
    largest shortfall of top-level agreement minus the median one (0 when every field falls alike)."""
    drops = np.array([float(r[0] - f[0]) for f, r in zip(m, rule_m)])
    return float(drops.max() - np.median(drops)) if len(drops) else 0.0


def check_fit(comps: Sequence[Comparison], m: Sequence[np.ndarray], u: Sequence[np.ndarray], claimed: float,
              records: int, rule: float, rule_m: Sequence[np.ndarray] | None = None) -> list[str]:
    """Why a fit cannot be right (empty: it passes). `claimed`: expected matching pairs among the candidate
    pairs; `rule`: pairs the deterministic rule accepts; `rule_m`: the level shares among the rule's pairs,
    when given an excess over the rule's count fails only a fit split along some fields (`split_spread`).
    Reasons name comparisons and counts, never values."""
    reasons = []
    spread = split_spread(m, rule_m) if rule_m is not None else None
    if claimed > MAX_MATCHES_PER_RECORD * records:
        reasons.append(f"{claimed:.0f} matching pairs claimed among {records} records ({claimed / records:.1f} "
                       f"per record, more than the plausible {MAX_MATCHES_PER_RECORD:g})")
    if claimed > RULE_RATIO * rule + RULE_SLACK * records and (spread is None or spread > SPLIT_SPREAD):
        split = "" if spread is None else f", and they agree less on some comparisons only (spread {spread:.2f})"
        reasons.append(f"{claimed:.0f} matching pairs claimed, {claimed / max(rule, 1):.1f} times the {rule:.0f} "
                       f"that agree on nearly every comparison{split}: the fitted matches are mostly something else "
                       "(relatives, households?)")
    for j, c in enumerate(comps):
        w = np.log2(m[j] / u[j])
        top, last = float(w[0]), float(w[-1])
        if top < -TOL_BITS:
            reasons.append(f"{c.feature}: agreeing weighs {top:+.1f} bits, against a match")
        if last > TOL_BITS:
            reasons.append(f"{c.feature}: disagreeing weighs {last:+.1f} bits, for a match")
        if top <= last:
            reasons.append(f"{c.feature}: agreeing weighs no more than disagreeing ({top:+.1f} <= {last:+.1f} bits)")
    return reasons


def _present_close(patterns: np.ndarray, comps: Sequence[Comparison]) -> tuple[np.ndarray, np.ndarray]:
    """(stated, at its top level or the next) per pair and comparison: what the deterministic rule reads (the
    next level only where a comparison has one besides "else")."""
    n_levels = np.array([c.n_levels for c in comps])
    close_upto = np.maximum(0, np.minimum(1, n_levels - 2))
    present = patterns >= 0
    return present, present & (patterns <= close_upto)


def rule_matches(patterns: np.ndarray, comps: Sequence[Comparison]) -> np.ndarray:
    """Which patterns the deterministic rule accepts: at least two comparisons present, one at its top
    level, and all but a quarter of them at the top level or the next (never the last, "else")."""
    present, close = _present_close(patterns, comps)
    n_present = present.sum(axis=1)
    return (n_present >= 2) & ((patterns == 0).sum(axis=1) >= 1) & (n_present - close.sum(axis=1) <= n_present // 4)


#: The refit's m of a comparison is read from the pairs the others call a match only where they are at
#: least this many, each at its top level or the next (none at "else"): with two, namesakes with nothing
#: else stated would pass as matches and teach every other comparison that matches disagree.
MIN_OTHERS = 3
#: Pairs the others must select for a comparison's own m; below it the rule's pairs (blended) stand.
MIN_SELECTED = 20


def rule_m_without(patterns: np.ndarray, counts: np.ndarray, comps: Sequence[Comparison]) -> list[np.ndarray | None]:
    """Per comparison, its level shares among the pairs that the *other* comparisons alone call a match (at
    least `MIN_OTHERS` of them present, each at its top level or the next, one at the top); None where
    fewer than `MIN_SELECTED` pairs are left.

    Why: the rule's own pairs agree on the comparison by selection, so their m puts too much of a match at
    the top level and too little at "else" (a 50,000-person file with large groups: given name "else" 0.059
    in the refit against 0.144 over the true pairs, its top level 0.687 against 0.465), and a rewritten
    given name then weighs like a stranger's. Chosen without the comparison, the pairs show how it varies
    among matches (given name 0.478 / 0.251 / 0.151 / 0.121 against the truth's 0.465 / 0.240 / 0.151 / 0.144)."""
    present, close = _present_close(patterns, comps)
    far = present & ~close
    top = patterns == 0
    n_present, n_far, n_top = present.sum(axis=1), far.sum(axis=1), top.sum(axis=1)
    out: list[np.ndarray | None] = []
    for j, c in enumerate(comps):
        chosen = ((n_present - present[:, j] >= MIN_OTHERS) & (n_far - far[:, j] == 0)
                  & (n_top - top[:, j] >= 1))
        weights = counts * chosen
        seen = float(weights[present[:, j]].sum())
        out.append(level_probs(patterns[:, j], weights, c.n_levels) if seen >= MIN_SELECTED else None)
    return out


def _fit_lambda(patterns: np.ndarray, counts: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray],
                lam0: float, total: float, max_iter: int = 200, tol: float = 1e-6) -> tuple[float, float]:
    """(lambda, claimed matches) by EM over lambda alone, m and u held: the refit's prior read from the file.

    Why: the rule's count is a floor, not an estimate (it leaves out every match that a corrupted field
    keeps off the top levels: on fake-1000 the rule accepts 925 pairs of 2,031 true ones); with m pinned by
    the rule's pairs EM cannot drift back to the split the guards rejected, since a pair that disagrees
    where the rule's matches agree stays unlikely whatever lambda is."""
    lam = lam0
    claimed = float(match_mass(patterns, counts, m, u, lam).sum())
    for _ in range(max_iter):
        new = float(np.clip(claimed / total, lam0, 0.5))
        if abs(np.log(new / lam)) < tol:
            break
        lam = new
        claimed = float(match_mass(patterns, counts, m, u, lam).sum())
    return lam, claimed


def fit_fellegi_sunter(cand_x: np.ndarray, random_x: np.ndarray, comps: Sequence[Comparison], *, records: int,
                       max_iter: int = 500, tol: float = 1e-6, joint: Mapping[str, Sequence[str]] | None = None,
                       scored_x: np.ndarray | None = None) -> FellegiSunterModel:
    """Weights for `comps` from candidate pairs (`cand_x`, [P, K] in comparison order) and random pairs
    (`random_x`, for u) of a file (or sample) of `records` records: EM, checked; refitted; or defaults.
    `joint`: groups of comparisons that agree together among non-matches (`consumer.learn.joint`), capped
    where every stated part agrees, at what the file says that is worth (not after the default weights).
    `scored_x`: the same candidate pairs with their rarity features (`FellegiSunterModel.inputs` order), which
    a trusted fit's last EM rounds count (`_em_as_scored`); None: levels only."""
    comps = tuple(comps)
    if len(cand_x) < 20:
        raise ValueError(f"too few candidate pairs to fit on ({len(cand_x)})")
    records = max(int(records), 2)
    total = _pairs(records)
    u = estimate_u(random_x, comps)
    g = gamma(cand_x, comps)
    patterns, counts = pattern_counts(g)
    accepted = counts * rule_matches(patterns, comps)
    rule = float(accepted.sum())
    m, lam, claimed, iterations, converged = run_em(
        patterns, counts, u, [default_m(c.n_levels) for c in comps], SEED_MATCHES_PER_RECORD * records / total,
        total, max_iter=max_iter, tol=tol)
    rule_m = [level_probs(patterns[:, j], accepted, c.n_levels) for j, c in enumerate(comps)]
    first = check_fit(comps, m, u, claimed, records, rule, rule_m)
    fit, reasons = FIT_OK, first
    if first:
        # Trust the rule instead: lambda read with m held. m first from the pairs the other comparisons call a
        # match (`rule_m_without`); where that claims too many (in a file of households a household whose
        # dates agree by chance passes for a match with a rewritten given name) from the rule's own pairs,
        # blended half and half with the defaults (the rule leaves out the lower levels real matches reach
        # too). No EM: EM is what drifted to the wrong split (re-running it drifts back, simulated households).
        blended = [0.5 * r + 0.5 * default_m(c.n_levels) for r, c in zip(rule_m, comps)]
        own = rule_m_without(patterns, counts, comps)
        tries = [blended] if all(w is None for w in own) else [
            [b if w is None else w for w, b in zip(own, blended)], blended]
        fit = FIT_REFIT
        for m in tries:
            lam, claimed = _fit_lambda(patterns, counts, m, u, max(rule, 1.0) / total, total)
            second = check_fit(comps, m, u, claimed, records, rule)
            if not second:
                break
        if second:
            m = [default_m(c.n_levels) for c in comps]
            lam = DEFAULT_MATCHES_PER_RECORD * records / total
            fit, reasons = FIT_FALLBACK, first + [f"after the refit: {r}" for r in second]
    share = [level_probs(g[:, j], np.ones(len(g)), c.n_levels) for j, c in enumerate(comps)]
    random_u = u
    if fit == FIT_OK and len(random_x):  # a trusted fit: its lambda and m say how many matches random pairs held
        m, lam, u = _without_random_matches(patterns, counts, random_u, m, lam, total, len(random_x), max_iter, tol)
    caps, joint_report = ({}, {}) if fit == FIT_FALLBACK or not joint else fit_joint(
        g, [c.feature for c in comps], m, u, lam, total, joint)
    model = FellegiSunterModel(comps, m, u, lam, [x.copy() for x in random_u], share, {}, records=records, joint=caps)
    if fit == FIT_OK:  # EM once more, each pair weighed as the model will score it (rarity, caps)
        rarity = model.rarity_bits(scored_x, g) if scored_x is not None else {}
        joint_report = _em_as_scored(model, g, rarity, total, joint, SCORED_TOL) or joint_report
    expected = model.lam * total
    model.info = {"method": "fellegi-sunter-em", "fit": fit, "reasons": reasons, "iterations": iterations,
                  "converged": converged, "candidate_pairs": int(len(cand_x)), "random_pairs": int(len(random_x)),
                  "lambda": float(f"{model.lam:.6g}"), "expected_matches": round(expected, 1),
                  "matches_per_record": round(expected / records, 4), "rule_matches": int(rule),
                  "joint": joint_report}
    return model


#: Rounds of EM over the candidate pairs as the model scores them, each followed by the joint caps read again.
SCORED_ROUNDS = 3
#: EM iterations per such round at most (each is one pass over the candidate pairs), and the change of m (and
#: of log lambda) below which a round stops: 1e-4 of a probability moves no pair's weight measurably
#: (RLdata10000 and a 5,000-person group file: the same clusters as at 1e-6, in 14 passes instead of 37).
SCORED_ITERATIONS, SCORED_TOL = 60, 1e-4


def _em_as_scored(model: FellegiSunterModel, g: np.ndarray, rarity: dict[int, np.ndarray], total: float,
                  joint: Mapping[str, Sequence[str]] | None, tol: float) -> dict[str, dict[str, float]]:
    """m and lambda of `model` refitted by EM that weighs each candidate pair as the model will score it: the
    joint groups capped and each value's rarity counted; then the caps read again from the new m,
    `SCORED_ROUNDS` times or until no cap moves by 0.05 bits. Returns the caps' report.

    Why: EM over level patterns takes the parts of a shared home as independent and a common name as worth
    a rare one's bits, so two members of a household, or two people of a common name with no address, sit in
    its match class, and their other date of birth becomes what matches look like (a 5,000-person file of
    households: m of "another date of birth" 0.114, the truth 0.003), which weakens that comparison for every
    pair. Splink's EM counts term frequencies the same way by default."""
    names = [c.feature for c in model.comparisons]
    report: dict[str, dict[str, float]] = {}
    for _ in range(SCORED_ROUNDS):
        for _ in range(SCORED_ITERATIONS):
            p = 1.0 / (1.0 + np.exp2(-np.clip(model.weight_of(g, rarity), -60, 60)))
            m = [level_probs(g[:, j], p, c.n_levels) for j, c in enumerate(model.comparisons)]
            lam = float(np.clip(p.sum() / total, *LAMBDA_RANGE))
            change = max(abs(np.log(lam / model.lam)), *(float(np.abs(a - b).max()) for a, b in zip(m, model.m)))
            model.m, model.lam = m, lam
            if change < tol:
                break
        if not joint:
            break
        caps, report = fit_joint(g, names, model.m, model.u, model.lam, total, joint)
        moved = set(caps) != set(model.joint) or any(abs(caps[k][1] - model.joint[k][1]) > 0.05 for k in caps)
        model.joint = caps
        if not moved:
            break
    return report


def matches_removed(u: Sequence[np.ndarray], m: Sequence[np.ndarray], lam: float,
                    random_pairs: int) -> list[np.ndarray]:
    """u among non-matching pairs from the level shares of random pairs, which hold matches at the rate
    lambda: share = (1 - lambda) u + lambda m. Floored at half a random pair (`SMOOTH`), renormalised."""
    floor = SMOOTH / max(random_pairs, 1)
    out = []
    for uj, mj in zip(u, m):
        v = np.maximum((uj - lam * mj) / (1.0 - lam), floor)
        out.append(v / v.sum())
    return out


def _without_random_matches(patterns: np.ndarray, counts: np.ndarray, random_u: Sequence[np.ndarray],
                            m: Sequence[np.ndarray], lam: float, total: float, random_pairs: int, max_iter: int,
                            tol: float) -> tuple[list[np.ndarray], float, list[np.ndarray]]:
    """(m, lambda, u) with u read from the random pairs' non-matches, EM re-run on it until lambda settles.

    Why: random pairs are all pairs, matches included. Where matches are common among all pairs (a small
    file, or groups of many records: lambda 0.0035 on fake-1000) they are a large part of the random pairs
    at a rare level (an exact date of birth), so u read directly overstates that level several times and
    understates its evidence; Splink's u from random sampling has the same bias. lambda settles within a
    few rounds (fake-1000: 0.00345 -> 0.00352, then changes under 0.1%)."""
    u = matches_removed(random_u, m, lam, random_pairs)
    for _ in range(U_ROUNDS):
        m, new_lam, _claimed, _it, _conv = run_em(patterns, counts, u, m, lam, total, max_iter=max_iter, tol=tol)
        u = matches_removed(random_u, m, new_lam, random_pairs)
        settled = abs(new_lam - lam) <= U_TOL * lam
        lam = new_lam
        if settled:
            break
    return list(m), lam, u


def fit_near_count(model: FellegiSunterModel, x: np.ndarray) -> dict[str, float]:
    """For each comparison with a `tf_near` feature: the typical number of records holding the rarer value
    of the pairs at its second level (one edit apart), weighted by each pair's match probability under
    `model` (a geometric mean); `x`: the candidate pairs' features in `model.inputs` order, the `tf_near`
    features after them.

    Why: a typo makes a value held once, so among true pairs one edit apart the rarer value is held by one
    or two records (RLdata10000: 343 of 349 given names), while two names one edit apart that dozens of
    records hold (Schmitt / Schmidt, Andrea / Andreas: 39 to 135 each) are two names, and were 14 of that
    file's 27 false pairs. A pair at that level then weighs log2(typical count / its rarer value's count)
    bits more (bounded by `TF_CLIP`), as the exact level's term-frequency adjustment does for a common
    name: a pair whose rarer value is as rare as the matches' keeps the fitted weight. Read from the file
    itself, no setting."""
    p = model.predict_proba(x)[:, 1] if len(x) else np.zeros(0)
    out: dict[str, float] = {}
    for j, col in model.near_columns():
        c = model.comparisons[j]
        if c.n_levels < 3:  # no level between exact and the rest
            continue
        logc = x[:, col].astype(np.float64)
        at = (levels_of(x[:, j], c) == 1) & np.isfinite(logc)
        weight = p[at]
        if weight.sum() < 1.0:  # under one expected match at the level: nothing to read
            continue
        out[c.feature] = float(np.exp((weight * logc[at]).sum() / weight.sum()))
    return out
