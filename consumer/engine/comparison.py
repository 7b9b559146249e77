"""Comparison: record pairs -> a named feature per modality signal.

This is the entity-resolution "comparison" step (Splink's vocabulary), run on pair-aligned columns (row i
of `a` against row i of `b`) for a whole micro-batch at once. It owns the list of features the
fusion step sees, in a fixed order, so rule and learned fusion read the same numbers and every decision
can be explained by them. NaN means "this pair cannot be compared on that signal" (a side lacks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from consumer.encoders.base import Columns, Encoder

__all__ = ["FLOORS", "WAIVERS", "Comparator", "conflict_mask", "gate_rarity"]


#: The comparisons that can learn a bar from a file, and the model meta key each is kept under: the network's
#: photo cosine and the colour signature's shared share (`consumer.learn.photo_cut`), and an edition stated
#: by one title only where the file's prices say editions are products (`consumer.learn.tier_cut`).
FLOORS = {"image_cos": "photo_cut", "image_colour": "colour_cut", "tier_alone": "tier_cut"}
#: The comparison that waives each learned floor (at 1: the titles say one product however unlike the
#: photos). The network's cosine: two titles stating the same variant (colour, capacity, size ...:
#: `variant_agree`). Why: a learned photo bar tells a colourless listing's colour siblings apart, but also
#: cut re-shot photos of one product apart (photo-offers-1: four "Orimo Drift 5X Daypack 32L Red" listings,
#: every pair scored 0.86-0.99, were split into three clusters over one pair's photo similarity of 0.47).
#: The colours: only two titles naming the same colour (`colour_agree`): "Lite" and "Lite Blue" agree on
#: every variant both state, and their photos' colours are all that tells black from blue (photo-offers-1
#: 0.6579 with `variant_agree` waiving it, 0.6993 with `colour_agree`).
WAIVERS = {"image_cos": "variant_agree", "image_colour": "colour_agree"}


def conflict_mask(x: np.ndarray, columns: Sequence[tuple[int, float]]) -> np.ndarray:
    """Per pair (row of `x`): does any (column, level) say the two differ (value <= level)? NaN, a side that
    does not state it, is no conflict. `Comparator.conflicts` on its own columns; a labelled model
    (`consumer.learn.labelling`) on its own."""
    out = np.zeros(len(x), bool)
    for col, level in columns:
        with np.errstate(invalid="ignore"):
            out |= x[:, col] <= level
    return out


class Comparator:
    """Runs every encoder's `compare`; returns a [P, len(features)] matrix.

    The feature order is derived from the encoders: every encoder's declared comparison features in
    encoder order, then their term-frequency (rarity) features. Learned models store the list they were
    trained on and map columns by name, so a new encoder never shifts an old model's inputs."""

    def __init__(self, encoders: Sequence[Encoder], floors: Mapping[str, float | None] | None = None):
        """`floors`: feature -> a bar under which a pair is also a conflict (`add_floor`; a fitted model's
        `photo_cut`: this file's photos tell siblings apart)."""
        self._encoders = list(encoders)
        contribs = [enc.contribution for enc in self._encoders]
        self._declared = [frozenset(f.name for f in c.features) for c in contribs]
        self.features: tuple[str, ...] = tuple(
            [f.name for c in contribs for f in c.features] + [r.feature for c in contribs for r in c.rarity])
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"two encoders declare the same feature: {self.features}")
        #: +1: more similar -> more likely a duplicate; 0: no direction (evidence, rarity). For training.
        self.monotone: dict[str, int] = {f.name: f.monotone for c in contribs for f in c.features}
        self.monotone.update({r.feature: 0 for c in contribs for r in c.rarity})
        #: Columns no encoder compares (vectors that exist for the index only): not worth gathering for
        #: millions of pairs.
        self.unused_columns: frozenset[str] = frozenset(c for con in contribs for c in con.index_only)
        #: (rarity column, agreement column, threshold) for rarity features that count only where values agree.
        self.gated = [(self.features.index(r.feature), self.features.index(r.when_agree[0]), r.when_agree[1])
                       for c in contribs for r in c.rarity if r.when_agree is not None]
        self._pos = {name: j for j, name in enumerate(self.features)}
        #: (column, level) of the features that can say "two different things" (`Feature.conflict`).
        self.conflict_columns: tuple[tuple[int, float], ...] = tuple(
            (self._pos[f.name], f.conflict) for c in contribs for f in c.features if f.conflict is not None)
        #: ... of those, the ones that also keep a record out of a cluster it scored a match with (`decisive`).
        self.decisive_columns: tuple[tuple[int, float], ...] = tuple(
            (self._pos[f.name], f.conflict) for c in contribs for f in c.features
            if f.conflict is not None and f.decisive)
        self.floors: tuple[tuple[int, float], ...] = ()
        self._waivers: tuple[int | None, ...] = ()  # per floor: the column that waives it (`WAIVERS`)
        for feature, below in (floors or {}).items():
            self.add_floor(feature, below)

    def add_floor(self, feature: str, below: float | None) -> None:
        """Also a conflict: `feature` less than `below` (a bar learned from the file, `FLOORS`: the photo or
        colour similarity under which two listings are two products, or an edition one title states
        alone), unless the titles say one product (`WAIVERS`). A missing feature or no bar (None): nothing."""
        if below is not None and feature in self._pos:
            level = float(np.nextafter(np.float32(below), np.float32(-np.inf)))  # `<= level` is `< below`
            self.floors = (*self.floors, (self._pos[feature], level))
            self._waivers = (*self._waivers, self._pos.get(WAIVERS.get(feature, "")))

    def conflicts(self, feats: np.ndarray) -> np.ndarray | None:
        """Per pair of a feature matrix: does any conflict feature say the two differ? None when no encoder
        declares one (the profile has no such evidence: callers keep their score-only rule)."""
        return self._conflicts(feats, self.conflict_columns)

    def join_conflicts(self, feats: np.ndarray) -> np.ndarray | None:
        """Per pair: does a *decisive* conflict (`Feature.decisive`) or a learned floor say the two differ? What
        keeps a record out of a cluster it scored a match with (`consumer.engine.clustering.Guards.join_veto`);
        None when the profile has neither."""
        return self._conflicts(feats, self.decisive_columns)

    @property
    def vetoes_joins(self) -> bool:
        """Whether `join_conflicts` can say anything (a decisive conflict declared, or a floor learned)."""
        return bool(self.decisive_columns or self.floors)

    def _conflicts(self, feats: np.ndarray, columns: tuple[tuple[int, float], ...]) -> np.ndarray | None:
        if not columns and not self.floors:
            return None
        out = conflict_mask(feats, columns)
        for floor, waive in zip(self.floors, self._waivers):
            below = conflict_mask(feats, (floor,))
            if waive is not None:
                with np.errstate(invalid="ignore"):
                    below &= ~(feats[:, waive] >= 1.0)
            out |= below
        return out

    def logged(self, rows: np.ndarray, cands: Sequence[np.ndarray]) -> np.ndarray | None:
        """The feature matrix of a batch's pairs (rows[i] against each of cands[i], in order) when it is
        already known, else None: a run replaying a pass that compared them (`consumer.engine.replay`)."""
        return None

    def compare(self, a: Columns, b: Columns, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Feature matrix for pairs (a[i], b[i]); `extra` adds precomputed per-pair features (rarity).
        A declared feature an encoder does not return stays NaN (e.g. no key fields in the profile); one it
        returns without declaring it is an error, never silently dropped."""
        p = next(iter(a.values())).shape[0]
        out = np.full((p, len(self.features)), np.nan, np.float32)
        for name, values in (extra or {}).items():
            out[:, self._pos[name]] = values
        for enc, declared in zip(self._encoders, self._declared):
            for name, values in enc.compare(a, b).items():
                if name not in declared:
                    raise ValueError(f"encoder {enc.name!r} returned feature {name!r} it does not declare "
                                     "in its contribution")
                out[:, self._pos[name]] = values
        return gate_rarity(out, self.gated)


def gate_rarity(x: np.ndarray, gated: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Set each gated rarity column to -1 where its agreement column is below the threshold (or absent),
    in place; `export/train_fusion.py` applies the same to cached pairs."""
    for col, agree, thr in gated:
        with np.errstate(invalid="ignore"):
            off = ~(x[:, agree] >= thr)
        x[off & ~np.isnan(x[:, col]), col] = -1.0
    return x
