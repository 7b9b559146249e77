"""Whether a file's editions are optional words or other products, read from its prices
(`consumer.learn.tier_cut`, issue 37): a marketplace that lists "Mouse" and "Mouse Lite" side by side prices
them apart, and there an edition stated by one title only is a conflict; where one-sided editions are priced
like one product (shops leaving the word out), nothing changes."""

from __future__ import annotations

import numpy as np

from consumer.engine.comparison import Comparator
from consumer.learn.photo_cut import GATE
from consumer.learn.tier_cut import tier_cut
from tests.test_titles import _encoded

FEATURES = ("tier_alone", "price", "title_tok", "variant_agree")


def pairs(rng: np.random.Generator, alone_price: float, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """n learned matches whose titles both state one edition (prices ~0.97 alike) and n where one title
    states an edition and the other none (prices around `alone_price`)."""
    both = np.column_stack([np.ones(n), rng.normal(0.97, 0.015, n), np.full(n, 0.95), np.ones(n)])
    alone = np.column_stack([np.zeros(n), rng.normal(alone_price, 0.02, n), np.full(n, 0.9), np.full(n, np.nan)])
    return np.vstack([both, alone]).astype(np.float32), np.ones(2 * n, bool)


def test_editions_priced_apart_make_a_one_sided_edition_a_conflict() -> None:
    x, positive = pairs(np.random.default_rng(1), alone_price=0.87)
    out = tier_cut(x, FEATURES, positive)
    assert out["tier_cut"] == 0.5 and out["tiers"]["gap"] >= GATE


def test_editions_priced_alike_are_words_shops_leave_out() -> None:
    x, positive = pairs(np.random.default_rng(2), alone_price=0.97)
    out = tier_cut(x, FEATURES, positive)
    assert "tier_cut" not in out and out["tiers"]["gap"] < GATE


def test_without_prices_editions_or_enough_pairs_nothing_is_learned() -> None:
    x, positive = pairs(np.random.default_rng(3), alone_price=0.87)
    assert tier_cut(x[:, 1:], FEATURES[1:], positive) == {}
    x[:, 1] = np.nan
    assert "tier_cut" not in tier_cut(x, FEATURES, positive)
    few, pos = pairs(np.random.default_rng(4), alone_price=0.87, n=10)
    assert "tier_cut" not in tier_cut(few, FEATURES, pos)


def test_tier_alone_says_whether_one_title_or_both_state_an_edition() -> None:
    enc, cols = _encoded(["Glide 3 Wireless Mouse Lite", "Glide 3 Wireless Mouse", "Glide 3 Wireless Mouse Pro"])
    out = enc.compare({k: v[[0, 0, 1]] for k, v in cols.items()}, {k: v[[1, 2, 1]] for k, v in cols.items()})
    assert out["tier_alone"][0] == 0.0 and out["tier_alone"][1] == 1.0 and np.isnan(out["tier_alone"][2])


def test_the_learned_bar_makes_a_one_sided_edition_a_conflict() -> None:
    from consumer.encoders.base import Contribution, Feature

    class _Tiers:
        name = "tiers"
        contribution = Contribution(roles=(), columns=(), features=(Feature("tier_alone"),))

    comp = Comparator([_Tiers()])
    feats = np.array([[0.0], [1.0], [np.nan]], np.float32)
    assert comp.conflicts(feats) is None  # no bar learned: this encoder says nothing of two products
    comp.add_floor("tier_alone", 0.5)
    assert comp.conflicts(feats).tolist() == [True, False, False]
