"""Parts of one thing agreeing together: what a whole shared address is worth in a file of households.

Fellegi-Sunter weighs each comparison as independent of the others given match status. The parts of an
address fail independently among *matches* (a typo in the street leaves the number and postcode intact,
which is why they are separate comparisons), but among *non-matches* they agree together: two people who
share a street number, street, suburb and postcode share a home. Summed as independent, a whole shared
address weighs the product of the parts' random-pair rates (four parts at +5 to +7 bits each: +21.4 bits on
a 50,000-record file of persons in households), while in a file of households two different people share a
whole address thousands of times more often; a household pair with another given name and date of birth
then still scores as a match.

So for a group of comparisons an encoder declares parts of one thing (`Feature.joint`), the fit reads from
the file what *every stated part agreeing exactly* (two parts stated at least) is worth: among its candidate
pairs at that pattern, the share of matches is estimated by EM over the *other* comparisons' evidence (their
m and u held, as fitted), which gives the expected matches and non-matches there; the pattern's weight is
then log2 of (matches / (lambda x pairs)) / (non-matches / ((1 - lambda) x pairs)), its m over its u. A pair
whose stated parts all agree, exactly or at a lower level that still weighs for a match (a street one typo
apart), has its parts' summed weight capped at it: a partial agreement is never worth more than the whole
one, and the cap never raises a sum below it. Nothing is chosen: where the file shows no non-matches at the
pattern (under `MIN_NON_MATCHES` expected: FEBRL), no cap is set and nothing changes; non-matches counted
are floored at half a pair, the smoothing of the fit's random-pair levels (`SMOOTH`). The cap is applied
by `FellegiSunterModel.match_weight`, to the parts' bits with their rarity adjustments.

A household shares more than a home: its members share a surname too, which the name comparisons weigh
as independent evidence on top of the home's cap. So a group may extend another (`EXTENDS`): the surname
and the address's parts form a *household* group, capped where all of them agree, at what the file says a
shared surname and home are worth; the address's own cap is then read from, and applied to, the pairs that
share a home but not a surname (`joint_patterns`: a pair is capped by the largest group all of it agrees on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from consumer.learn.fellegi_sunter import SMOOTH, all_agree, joint_patterns, log_bf

__all__ = ["EXTENDS", "MIN_NON_MATCHES", "MIN_PAIRS", "all_agree", "expand_groups", "fit_joint", "joint_groups",
           "joint_patterns"]

#: Candidate pairs at the all-agree pattern below which the fit says nothing about it.
MIN_PAIRS = 10
#: Expected non-matches at the pattern below which the file shows no dependence to cap: the estimate would
#: then rest on the floor of half a pair alone, and a small file of independent records (FEBRL1: 60 pairs at
#: the pattern, all matches) got a cap of 16.9 bits against its parts' 51, which partial agreements then met.
MIN_NON_MATCHES = 1.0
#: Groups that extend another (`expand_groups`): a household is a surname and a home. Among non-matches the
#: members of a household share both, so a pair sharing its surname *and* its whole address is weighed at what
#: the file says that is worth, not at a shared home's worth plus a shared surname's, which counts the
#: household twice (a 5,000-person file of households: 210 of its 1,739 false pairs were two people of one
#: surname and home with other given names and dates of birth, against 4 of its 16,968 true pairs).
EXTENDS = {"household": "address"}


def joint_groups(encoders: Iterable[Any]) -> dict[str, list[str]]:
    """The encoders' `Feature.joint` groups (comparisons with levels only), `expand_groups` applied."""
    declared: dict[str, list[str]] = {}
    for f in (f for e in encoders for f in e.contribution.features if f.joint and f.levels):
        declared.setdefault(f.joint, []).append(f.name)
    return expand_groups(declared)


def expand_groups(groups: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """`Feature.joint` groups as the fit takes them: a group that `EXTENDS` another holds that one's parts too;
    without that one (a file with no address) it is no group."""
    out: dict[str, list[str]] = {}
    for name, parts in groups.items():
        base = EXTENDS.get(name)
        if base is None:
            out[name] = list(parts)
        elif base in groups:
            out[name] = list(parts) + [p for p in groups[base] if p not in parts]
    return out


def fit_joint(g: np.ndarray, features: Sequence[str], m: Sequence[np.ndarray], u: Sequence[np.ndarray], lam: float,
              total: float, groups: Mapping[str, Sequence[str]], max_iter: int = 500,
              tol: float = 1e-9) -> tuple[dict[str, tuple[tuple[str, ...], float]], dict[str, dict[str, float]]]:
    """(group -> (its comparisons, cap in bits), a report per group) from candidate pairs' levels `g` (comparison
    order `features`) and a fit's m, u and lambda over `total` record pairs. Groups with fewer than two
    comparisons fitted, or fewer than `MIN_PAIRS` candidate pairs at the all-agree pattern, get no cap."""
    caps: dict[str, tuple[tuple[str, ...], float]] = {}
    report: dict[str, dict[str, float]] = {}
    fitted = {name: idx for name, members in groups.items()
              if len(idx := [features.index(f) for f in members if f in features]) >= 2}
    capped: list[list[int]] = []
    # Largest first: a household's pairs are the household's, and a home's cap is read from the other pairs that
    # share a home, as `FellegiSunterModel.match_weight` applies them (`joint_patterns` over the capped groups).
    for name, idx in sorted(fitted.items(), key=lambda item: -len(item[1])):
        sel = joint_patterns(g, [idx, *capped])[0]
        if int(sel.sum()) < MIN_PAIRS:
            continue
        # The other comparisons' evidence (natural log): the EM below is over the share of matches at the pattern.
        other = [j for j in range(len(features)) if j not in idx]
        ev = log_bf(g[sel], m, u, other)
        share = 0.5
        for _ in range(max_iter):
            p = 1.0 / (1.0 + np.exp(-np.clip(np.log(share / (1.0 - share)) + ev, -50.0, 50.0)))
            new = float(np.clip(p.mean(), 1e-9, 1.0 - 1e-9))
            done = abs(new - share) < tol
            share = new
            if done:
                break
        matches, seen = float(p.sum()), float((1.0 - p).sum())
        parts = round(float(np.median(log_bf(g[sel], m, u, idx)) / np.log(2.0)), 2)
        if seen < MIN_NON_MATCHES:  # no dependence shown: the floor alone would set the cap (FEBRL1: 16.9 of 51 bits)
            report[name] = {"pairs": int(sel.sum()), "matches": round(matches, 1), "non_matches": round(seen, 1),
                            "cap_bits": None, "parts_bits": parts}
            continue
        non = max(seen, SMOOTH)
        cap = float(np.log2(matches / non * (1.0 - lam) / lam)) if matches > 0 else 0.0
        caps[name] = (tuple(features[j] for j in idx), cap)
        capped.append(idx)
        report[name] = {"pairs": int(sel.sum()), "matches": round(matches, 1), "non_matches": round(non, 1),
                        "cap_bits": round(cap, 2), "parts_bits": parts}
    return caps, report

