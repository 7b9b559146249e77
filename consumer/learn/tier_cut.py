"""Whether a file's editions are optional words or other products, read from its prices (issue 37).

Why: an edition stated by one title only ("Glide 3 Mouse Lite" / "Glide 3 Mouse") is read as no conflict,
since shops leave the edition out as often as the colour (Abt-Buy: 32 of 35 such scored pairs are one
product). In a marketplace that lists a model's editions side by side, the same pair is two products, and
their photo is one (photo-offers-1: 368 of 693 false pairs joined a model's editions in one colour). No word
list tells the two files apart; their prices do: two listings of one product differ by the sellers' spread,
two editions by what the edition costs. So the fit compares, among the pairs it learned as matches whose
titles are alike (`title_tok` >= 0.8), the price similarities of those where one title states an edition
and the other none (`tier_alone` 0) with those where both state one and agree (`tier_alone` 1, `variant_agree`
1). Where the first lie clearly lower (the largest gap between the two distributions at least `GATE`, as for
the photos), an edition stated by one title only is a conflict in this file (`tier_cut`: the comparator's
learned floor on `tier_alone`, read by the clustering's partner re-check and merges, never by the score).
Where the gap is small, or too few pairs of either kind (a file without prices or editions), nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consumer.learn.photo_cut import GATE, MIN_PAIRS, SIBLING_TOKENS, largest_gap

__all__ = ["tier_cut"]


def tier_cut(all_x: np.ndarray, features: Sequence[str], positive: np.ndarray) -> dict:
    """{"tiers": figures, and "tier_cut": 0.5 where one-sided editions are two products in this file}.
    `all_x`: every feature of the fit's candidate pairs; `positive`: the pairs the fit learned as matches."""
    need = ("tier_alone", "price", "title_tok", "variant_agree")
    if not all(f in features for f in need) or not len(all_x):
        return {}
    tier, price, tokens, variant = (all_x[:, list(features).index(f)].astype(np.float64) for f in need)
    with np.errstate(invalid="ignore"):
        alike = positive & (tokens >= SIBLING_TOKENS) & ~np.isnan(price)
        alone = np.sort(price[alike & (tier == 0)])
        both = np.sort(price[alike & (tier == 1) & (variant >= 1)])
    info: dict[str, float] = {"alone": float(len(alone)), "both": float(len(both))}
    if len(alone) < MIN_PAIRS or len(both) < MIN_PAIRS:
        return {"tiers": info}
    _, gap = largest_gap(alone, both)
    info["gap"] = round(float(gap.max()), 4)
    return {"tiers": info, **({"tier_cut": 0.5} if gap.max() >= GATE else {})}

