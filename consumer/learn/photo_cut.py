"""Whether a file's photos tell sibling listings apart, and below which photo similarity two listings are two
products: learned from the file, without labels (issue 37).

Why: a listing whose title names no colour ("gaming mouse vista 5s") matches every colour of its model, and
only the photo can say which one it is. But what a photo similarity means depends on the file: where the
variants of a line share one packshot (this project's generator) a low similarity is a re-shot duplicate
and a high one says nothing; where each colour has its own photo (a marketplace), a low one is a sibling.
So the fit looks at two sets of its candidate pairs that need no labels:

- *siblings by text*: pairs whose titles agree on almost every word (`title_tok` >= 0.8) but which the
  comparisons call two products (a `Feature.conflict`: another colour, capacity or model code);
- *pseudo-matches*: the pairs the fit learned from (reciprocal best pairs with positive evidence) that no
  comparison calls two products.

When the siblings' photo similarities lie clearly below the pseudo-matches' (the largest gap between the two
empirical distribution functions, Kolmogorov-Smirnov, at least `GATE`), the photo tells siblings apart in
this file, and a pair whose photos are less similar than where that gap is largest is a *conflict*: the
partner re-check keeps two groups holding such a pair apart, as it does two colours the titles name (not
where the titles say one product: `consumer.engine.comparison.WAIVERS`). Where
the gap is small, or there are too few pairs of either kind (a file without photos), nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consumer.engine.comparison import FLOORS
from consumer.learn.fellegi_sunter import FellegiSunterModel
from consumer.learn.reciprocal import reciprocal_best

__all__ = ["GATE", "largest_gap", "learned_matches", "photo_cut", "photo_info"]

#: The smallest gap between the two distributions (Kolmogorov-Smirnov statistic) at which photos count as
#: telling siblings apart. Set with the suite's two photo files' gaps known (0.44 on marketplace listings
#: whose colours have their own photos, 0.09 on generated listings whose variants share a packshot), so
#: neither is held out for it; files kept out of sight are the test.
GATE = 0.25
#: Pairs of each kind needed to judge (fewer: the file decides nothing).
MIN_PAIRS = 30
#: Title-word overlap from which a conflicting pair counts as siblings (the same title but for a variant).
SIBLING_TOKENS = 0.8
#: The comparison whose "two different ones" (0) picks the siblings a photo comparison is judged on, where
#: not any conflict: the colour signature only on pairs whose titles name two colours (a capacity or a pack
#: sibling has the same colours, and judged on those the bar landed among re-shot duplicates: listings-9).
SIBLINGS_BY = {"image_colour": "colour_agree"}
#: The photo comparisons judged here, and the key of the fit's figures for each (their bars: `FLOORS`).
PHOTOS = {"image_cos": "photos", "image_colour": "colours"}
#: For those, the pairs that show how far one product's own photos drift in the file (edits, re-shoots) are
#: the learned matches whose titles name the same colour, and the bar stays where at most this share of
#: them falls below it: a file whose sellers re-colour photos (listings-9: a tenth of one product's photo
#: pairs share under 0.88 of their colours) gets a low bar or none.
MATCH_LOSS = 0.02


def photo_cut(all_x: np.ndarray, features: Sequence[str], positive: np.ndarray,
              conflict: np.ndarray | None, feature: str = "image_cos") -> tuple[float | None, dict[str, float]]:
    """(the photo similarity below which a pair is a conflict, or None; figures for the fit's summary).
    `all_x`: every feature of the fit's candidate pairs; `positive`: the pairs the fit learned as matches;
    `conflict`: the comparator's conflicts on those pairs (None: the profile cannot say); `feature`: the
    photo comparison judged (the network's cosine, or the colour signature's shared share)."""
    if conflict is None or feature not in features or "title_tok" not in features:
        return None, {}
    photo = all_x[:, list(features).index(feature)].astype(np.float64)
    tokens = all_x[:, list(features).index("title_tok")].astype(np.float64)
    has = ~np.isnan(photo)
    differ, alike = conflict, ~conflict
    if (by := SIBLINGS_BY.get(feature)) is not None:
        if by not in features:
            return None, {}
        said = all_x[:, list(features).index(by)]
        with np.errstate(invalid="ignore"):
            differ, alike = said == 0, said >= 1
    with np.errstate(invalid="ignore"):
        siblings = np.sort(photo[has & differ & (tokens >= SIBLING_TOKENS)])
    matches = np.sort(photo[has & positive & alike])
    info = {"siblings": float(len(siblings)), "matches": float(len(matches))}
    if len(siblings) < MIN_PAIRS or len(matches) < MIN_PAIRS:
        return None, info
    grid, gap = largest_gap(siblings, matches)
    k = int(np.argmax(gap))
    if by is not None:  # no higher than where a share MATCH_LOSS of one product's own photos already falls
        k = min(k, int(np.searchsorted(grid, np.quantile(matches, MATCH_LOSS), side="left")))
    info["gap"] = round(float(gap[k]), 4)
    if gap[k] < GATE:
        return None, info
    cut = float(grid[k])
    info["cut"] = round(cut, 4)
    if by is not None:  # from here two photos show one colour as rarely as titles naming two colours do
        info["same"] = round(float(np.quantile(siblings, 1.0 - MATCH_LOSS)), 4)
    return cut, info


def largest_gap(lower: np.ndarray, higher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every value of the two sorted samples, the share of `lower` strictly below each minus the share of
    `higher`): where `lower` lies below `higher`, the largest of these (Kolmogorov-Smirnov) says how clearly."""
    grid = np.unique(np.concatenate([lower, higher]))
    return grid, (np.searchsorted(lower, grid, side="left") / len(lower)
                  - np.searchsorted(higher, grid, side="left") / len(higher))


def learned_matches(fs: FellegiSunterModel, cand_x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The pairs a reciprocal-best fit (`fs`, fitted on `cand_x`) learned from: reciprocal best, positive weight."""
    w = fs.match_weight(cand_x)
    return reciprocal_best(w, left, right) & (w > 0)


def photo_info(all_x: np.ndarray, features: Sequence[str], positive: np.ndarray, conflict: np.ndarray | None) -> dict:
    """What a reciprocal-best fit adds to its summary: the figures of each photo comparison (`PHOTOS`) and,
    where the photos tell siblings apart, its bar (`FLOORS`). `positive`: the pairs it learned from
    (`learned_matches`)."""
    out: dict = {}
    for feature, figures in PHOTOS.items():
        cut, info = photo_cut(all_x, features, positive, conflict, feature)
        out[figures] = info
        if cut is not None:
            out[FLOORS[feature]] = cut
    return out
