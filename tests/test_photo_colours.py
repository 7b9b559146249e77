"""The photos' colours as evidence learned without labels (`consumer.encoders.image.colours`, the colour bar of
`consumer.learn.photo_cut`, issue 37): an ImageNet network sees a mug as a mug whatever its colour, so two
colours of one model drawn alike score near 1 by the network; the share of colours they have in common tells
them apart, where the file shows it does (titles that name two colours), and only two titles naming the same
colour overrule it."""

from __future__ import annotations

import numpy as np

from consumer.encoders.base import Contribution, Feature
from consumer.encoders.image import COLOUR_BINS, colours
from consumer.engine.comparison import Comparator
from consumer.learn.photo_cut import GATE, MATCH_LOSS, photo_cut

SIZE = 64


def packshot(rgb: tuple[int, int, int], background: tuple[int, int, int] = (245, 245, 245),
             shift: int = 0) -> np.ndarray:
    """A product drawn as a block in the middle of a plain background; `shift` moves it (a re-shoot)."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = background
    lo = 16 + shift
    img[lo:lo + 32, lo:lo + 32] = rgb
    return img


def shared(a: np.ndarray, b: np.ndarray) -> float:
    sig = colours(np.stack([a, b]))
    return float(np.minimum(sig[0], sig[1]).sum())


def test_a_signature_is_a_share_per_colour_and_absent_photos_have_none() -> None:
    sig = colours(np.stack([packshot((200, 30, 40)), packshot((30, 60, 200))]))
    assert sig.shape == (2, COLOUR_BINS) and sig.dtype == np.float32
    assert np.allclose(sig.sum(axis=1), 1.0)
    assert colours(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, COLOUR_BINS)


def test_two_colours_of_one_model_share_little_and_a_re_shoot_of_one_colour_much() -> None:
    red, blue, black = packshot((200, 30, 40)), packshot((30, 60, 200)), packshot((20, 20, 22))
    assert shared(red, blue) < 0.6 and shared(red, black) < 0.6
    assert shared(red, packshot((205, 36, 42), background=(250, 248, 240), shift=3)) > 0.9


class _Listing:
    """An encoder declaring the comparisons the colour bar reads."""

    name = "listing"
    contribution = Contribution(roles=(), columns=(), features=(
        Feature("title_tok"), Feature("variant_agree", conflict=0.0), Feature("colour_agree"),
        Feature("image_cos"), Feature("image_colour")))


def test_only_titles_naming_the_same_colour_waive_the_colour_bar() -> None:
    """"Lite" and "Lite Blue" agree on every variant both state (`variant_agree` 1) yet name no colour in
    common: the photos' colours decide. Two titles naming one colour overrule them (a re-coloured photo)."""
    comp = Comparator([_Listing()])
    comp.add_floor("image_colour", 0.75)
    feats = np.array([[1.0, 1.0, np.nan, 0.99, 0.4],   # "Lite" / "Lite Blue": a conflict
                      [1.0, 1.0, 1.0, 0.99, 0.4],      # both "Blue": waived
                      [1.0, 1.0, np.nan, 0.99, 0.9],   # colours alike: no conflict
                      [1.0, 1.0, np.nan, 0.99, np.nan]], np.float32)
    assert comp.conflicts(feats).tolist() == [True, False, False, False]
    comp.add_floor("image_cos", 0.745)  # the network's bar keeps its own waiver (`variant_agree`)
    assert comp.conflicts(np.array([[1.0, 1.0, np.nan, 0.5, 0.9]], np.float32)).tolist() == [False]


FEATURES = ("title_tok", "colour_agree", "image_colour")


def colour_pairs(rng: np.random.Generator, drift: float, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n learned matches whose titles name one colour (their photos' shared colours ~0.95, `drift` of them
    re-coloured down to ~0.5), n whose titles name no colour (half of them a sibling's photo), and n siblings
    whose titles name two colours (~0.45)."""
    same = rng.normal(0.95, 0.02, n)
    same[: int(drift * n)] = rng.normal(0.5, 0.1, int(drift * n))
    bare = np.r_[rng.normal(0.95, 0.02, n // 2), rng.normal(0.45, 0.1, n - n // 2)]
    x = np.column_stack([np.full(3 * n, 0.9), np.r_[np.ones(n), np.full(n, np.nan), np.zeros(n)],
                         np.r_[same, bare, rng.normal(0.45, 0.1, n)]]).astype(np.float32)
    positive = np.r_[np.ones(2 * n, bool), np.zeros(n, bool)]
    return x, positive, np.zeros(3 * n, bool)


def test_the_colour_bar_is_judged_on_titles_naming_colours_and_spares_one_products_drift() -> None:
    """Siblings are the pairs whose titles name two colours, matches those naming one (a title naming none
    may be a sibling's); the bar sits where at most MATCH_LOSS of one product's own photo pairs fall."""
    x, positive, conflict = colour_pairs(np.random.default_rng(5), drift=0.0)
    cut, info = photo_cut(x, FEATURES, positive, conflict, "image_colour")
    assert cut is not None and 0.5 < cut < 0.95 and info["gap"] >= GATE
    assert info["matches"] == 300  # the titles naming no colour are not taken for matches
    x, positive, conflict = colour_pairs(np.random.default_rng(6), drift=0.1)  # sellers re-colour photos
    cut, _ = photo_cut(x, FEATURES, positive, conflict, "image_colour")
    same = x[:300, 2]
    assert cut is None or (same < cut).mean() <= MATCH_LOSS + 0.01


def test_without_colour_words_in_the_titles_no_colour_bar_is_learned() -> None:
    x, positive, conflict = colour_pairs(np.random.default_rng(7), drift=0.0)
    assert photo_cut(x[:, [0, 2]], ("title_tok", "image_colour"), positive, conflict, "image_colour") == (None, {})
