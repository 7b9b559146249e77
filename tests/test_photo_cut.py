"""A file's photos as evidence learned without labels (`consumer.learn.photo_cut`, issue 37): where each colour
of a model has its own photo, a listing whose title names no colour is told from its siblings by the photo;
where a line's variants share one packshot, the photo says nothing and nothing changes."""

from __future__ import annotations

import numpy as np

from consumer.encoders.base import Contribution, Feature
from consumer.engine.comparison import Comparator
from consumer.learn.photo_cut import GATE, photo_cut

FEATURES = ("title_tok", "variant_agree", "image_cos")


def pairs(rng: np.random.Generator, siblings_photo: tuple[float, float], n: int = 200) -> tuple[np.ndarray, ...]:
    """n pseudo-matches (title alike, no conflict, photos ~0.85) and n siblings by text (title alike, another
    colour: a conflict) whose photo similarity is drawn around `siblings_photo` (mean, spread)."""
    match = np.column_stack([np.full(n, 0.95), np.full(n, 1.0), rng.normal(0.85, 0.05, n)])
    sib = np.column_stack([np.full(n, 0.9), np.zeros(n), rng.normal(*siblings_photo, n)])
    x = np.vstack([match, sib]).astype(np.float32)
    positive = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    conflict = x[:, 1] <= 0.0
    return x, positive, conflict


def test_photos_that_tell_colours_apart_give_a_cut_between_siblings_and_matches() -> None:
    x, positive, conflict = pairs(np.random.default_rng(1), (0.6, 0.05))
    cut, info = photo_cut(x, FEATURES, positive, conflict)
    assert cut is not None and 0.6 < cut < 0.85 and info["gap"] >= GATE


def test_a_shared_packshot_says_nothing_and_sets_no_cut() -> None:
    """Siblings with the same photo as each other score as high as duplicates: no gap, no cut."""
    x, positive, conflict = pairs(np.random.default_rng(2), (0.9, 0.05))
    cut, info = photo_cut(x, FEATURES, positive, conflict)
    assert cut is None and info["gap"] < GATE


def test_without_photos_or_conflict_evidence_nothing_is_learned() -> None:
    x, positive, conflict = pairs(np.random.default_rng(3), (0.6, 0.05))
    x[:, 2] = np.nan  # a file without photos
    assert photo_cut(x, FEATURES, positive, conflict)[0] is None
    assert photo_cut(x, FEATURES, positive, None) == (None, {})
    assert photo_cut(x[:, :2], FEATURES[:2], positive, conflict) == (None, {})
    few = pairs(np.random.default_rng(4), (0.6, 0.05), n=10)
    assert photo_cut(*few[:1], FEATURES, *few[1:])[0] is None


class _Photos:
    """An encoder declaring a conflict feature and a photo similarity."""

    name = "photos"
    contribution = Contribution(roles=(), columns=(), features=(Feature("variant_agree", conflict=0.0),
                                                                 Feature("image_cos")))


def test_a_learned_floor_makes_less_similar_photos_a_conflict_and_a_missing_photo_none() -> None:
    comp = Comparator([_Photos()])
    feats = np.array([[np.nan, 0.70], [np.nan, 0.7449], [np.nan, 0.745], [np.nan, np.nan], [0.0, 0.99],
                      [0.5, 0.70]], np.float32)
    assert comp.conflicts(feats).tolist() == [False, False, False, False, True, False]
    comp.add_floor("image_cos", 0.745)
    assert comp.conflicts(feats).tolist() == [True, True, False, False, True, True]
    comp.add_floor("no_such_feature", 0.5)  # a profile without photos: nothing
    assert comp.conflicts(feats).tolist() == [True, True, False, False, True, True]


def test_titles_stating_the_same_variant_waive_the_photo_floor() -> None:
    """Two listings whose titles state the same colour and size are one product however unlike their photos
    (a re-shot photo): the floor is no conflict there; the titles' own conflicts still are."""
    comp = Comparator([_Photos()])
    comp.add_floor("image_cos", 0.745)
    feats = np.array([[1.0, 0.47], [1.0, 0.9], [0.0, 0.47], [np.nan, 0.47]], np.float32)
    assert comp.conflicts(feats).tolist() == [False, False, True, True]


def test_the_cut_a_fit_carries_reaches_the_partner_re_check_of_the_run() -> None:
    """The bar travels in the model's meta (a fitted model, or the shipped one a file kept): the run's
    comparator, which the partner re-check asks for conflicts, applies it."""
    import dataclasses

    from consumer.config import load_settings
    from consumer.engine.fusion import LearnedModel
    from consumer.io.artifacts import build_pipeline

    settings = load_settings(profile="listing", env={})
    shipped = LearnedModel.load(None, profile="listing")
    plain = build_pipeline(settings, model=shipped)
    cut = build_pipeline(settings, model=dataclasses.replace(shipped, meta={**shipped.meta, "photo_cut": 0.7}),
                         text_encoder=plain.text)
    j = cut.comparator.features.index("image_cos")
    assert j not in {c for c, _ in plain.comparator.conflict_columns}
    assert (j, float(np.nextafter(np.float32(0.7), np.float32(-np.inf)))) in cut.comparator.floors
    plain.close()
    cut.close()
