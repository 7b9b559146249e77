"""Fitting the engine to a user's file without labels: the adapter around `consumer.fellegi_sunter`.

It runs the real engine (rule fusion, so no model is needed) over a sample of the user's records to get
the candidate pairs the blocking produces, draws random record pairs for the u estimates, compares both
with the profile's own encoders, and fits Fellegi-Sunter weights by EM on the comparisons the encoders
declare levels for (`Feature.levels`). The result is an ordinary `LearnedModel` (saved with its sha256
manifest like any `dedup train` output), so batch, service and evaluation load and use it unchanged.

`dedup batch FILE --profile person` with no model file fits on FILE first (`needs_fit`); a service fits
once with `dedup fit FILE --out model.pkl` (a warm-up sample of its stream) and loads that file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from consumer.comparison import Comparator
from consumer.config import Settings
from consumer.encoders import build_encoders
from consumer.encoders.base import Encoder
from consumer.fellegi_sunter import Comparison, FellegiSunterModel, fit_fellegi_sunter, fit_reciprocal
from consumer.fusion import PACKAGED_MODELS, EitherOf, LearnedModel, ModelError, learned_thresholds
from consumer.pipeline import Pipeline
from consumer.records import Record

__all__ = ["ADAPT_AGREEMENT", "FIT_SAMPLE", "RANDOM_PAIRS", "MIN_RECORDS", "adapts", "comparisons_of",
           "explain_model", "fit_method", "fit_unsupervised", "needs_fit", "reference_agreement", "sample_records"]

log = logging.getLogger("dedup.unsupervised")

#: Records the fit runs the engine over (a seeded sample beyond this): EM converges on tens of thousands
#: of candidate pairs; more records only cost time.
FIT_SAMPLE = 50_000
RANDOM_PAIRS = 200_000
#: Below this the sample says too little about error rates; the caller falls back to rule fusion.
MIN_RECORDS = 50


def sample_records(records: Iterable[Record], size: int = FIT_SAMPLE, seed: int = 0) -> list[Record]:
    """A seeded uniform sample (reservoir) of at most `size` records, in arrival order: a file of any
    length is read once and never held whole."""
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, Record]] = []
    for i, rec in enumerate(records):
        if len(kept) < size:
            kept.append((i, rec))
        else:
            j = int(rng.integers(0, i + 1))
            if j < size:
                kept[j] = (i, rec)
    return [r for _, r in sorted(kept, key=lambda t: t[0])]


def comparisons_of(encoders: Sequence[Encoder]) -> list[Comparison]:
    """The comparisons the encoders declare (features with levels), in encoder order."""
    return [Comparison(f.name, tuple(f.levels), f.tf) for e in encoders for f in e.contribution.features
            if f.levels] + [Comparison(r.feature, tuple(r.levels)) for e in encoders for r in e.contribution.rarity
                            if r.levels]


def fit_method(settings: Settings) -> str:
    """"em" or "reciprocal" (`fusion.fit_method`; "auto": reciprocal best-pair self-training for product
    listings, whose candidate pairs are mostly siblings of one product family, EM for the rest)."""
    method = settings.fusion.fit_method
    if method == "auto":
        return "reciprocal" if settings.profile.name == "listing" else "em"
    return method


#: Below this agreement with the weights fitted to the file, a shipped model is not trusted on it.
ADAPT_AGREEMENT = 0.5


def adapts(settings: Settings) -> bool:
    """Whether a run checks a shipped model against weights fitted to its input (`fusion.adapt`): learned
    fusion with no model file named, a profile whose package ships a model and whose encoders declare
    comparison levels. "auto" and "always" fit; "always" also uses the fit whatever the agreement."""
    return (settings.fusion.adapt != "never" and settings.fusion.mode == "learned"
            and settings.fusion.learned_model is None and settings.profile.name in PACKAGED_MODELS)


def needs_fit(settings: Settings, text_encoder: Any) -> bool:
    """Whether a run should fit weights to its input: learned fusion with no model file named, a profile
    whose encoders declare comparison levels, and a shipped model that does not fit its features."""
    if settings.fusion.mode != "learned" or settings.fusion.learned_model is not None:
        return False
    if settings.profile.name in PACKAGED_MODELS:  # the package ships a model trained for this profile
        return False
    encoders = build_encoders(settings, {"text_encoder": text_encoder})
    if not comparisons_of(encoders):
        return False
    try:
        LearnedModel.load(None).columns_for(Comparator(encoders).features)
    except ModelError:
        return True
    return False


def fit_unsupervised(records: Sequence[Record], settings: Settings, text_encoder: Any, *,
                     sample: int = FIT_SAMPLE, random_pairs: int = RANDOM_PAIRS, seed: int = 0,
                     fix_u: bool = False, source: str = "", image_encoder: Any = None,
                     reference: LearnedModel | None = None) -> LearnedModel:
    """Fellegi-Sunter weights for `settings`' profile fitted on `records`; ValueError when too few.

    `reference`: a shipped model trained on other data; its agreement with the fitted weights on this
    file's candidate pairs goes into the meta (`reference_agreement`, see `reference_agreement`)."""
    rng = np.random.default_rng(seed)
    if len(records) > sample:  # a seeded sample, kept in arrival order
        keep = np.sort(rng.choice(len(records), sample, replace=False))
        records = [records[i] for i in keep]
    if len(records) < MIN_RECORDS:
        raise ValueError(f"too few records to fit match weights without labels ({len(records)} < {MIN_RECORDS})")
    rule = dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule"))
    pipe = Pipeline(rule, text_encoder, image_encoder=image_encoder)
    try:
        comps = comparisons_of(pipe.encoders)
        if not comps:
            raise ValueError("no encoder of this profile declares comparison levels (Feature.levels); "
                             "fitting without labels needs them (docs/extending.md)")
        pipe.pair_log = []
        for start in range(0, len(records), rule.batch_size):
            pipe.process(records[start: start + rule.batch_size])
        features = pipe.comparator.features
        model_inputs = [c.feature for c in comps] + [c.tf for c in comps if c.tf]
        cols = [features.index(f) for f in model_inputs]
        k = len(comps)
        cand = [feats[:, cols[:k]] for _, cands, feats in pipe.pair_log if len(cands)]
        cand_x = np.concatenate(cand) if cand else np.zeros((0, k), np.float32)
        all_x = [feats for _, cands, feats in pipe.pair_log if len(cands)]
        left = np.concatenate([np.full(len(c), r, np.int64) for r, c, _ in pipe.pair_log if len(c)] or [[]])
        right = np.concatenate([np.asarray(c, np.int64) for _, c, _ in pipe.pair_log if len(c)] or [[]])
        # A comparison the file never fills (no date of birth column) carries no information: left out.
        present = [j for j in range(k) if not np.isnan(cand_x[:, j]).all()]
        if not present:
            raise ValueError("no comparison has a value on any candidate pair")
        comps = [comps[j] for j in present]
        model_inputs = [c.feature for c in comps] + [c.tf for c in comps if c.tf]
        cols = [features.index(f) for f in model_inputs]
        k = len(comps)
        cand_x = cand_x[:, present]
        n = len(pipe.store)
        a = rng.integers(0, n, random_pairs)
        b = rng.integers(0, n, random_pairs)
        a, b = a[a != b], b[a != b]
        skip = pipe.comparator.unused_columns
        ca, cb = pipe.store.gather(a, skip), pipe.store.gather(b, skip)
        random_x = pipe.comparator.compare(ca, cb, pipe.frequencies.pair_rarity(ca, cb))[:, cols[:k]]
    finally:
        pipe.close()
    method = fit_method(settings)
    if method == "reciprocal":
        fs = fit_reciprocal(cand_x, left, right, comps)
    else:
        fs = fit_fellegi_sunter(cand_x, random_x, comps, fix_u=fix_u)
    meta = {"kind": "fellegi-sunter", "used_features": list(fs.inputs), "trained_on": source,
            "records": len(records), "labels": False, "name_gate": False, **fs.info}
    if reference is not None and all_x:
        fitted = LearnedModel(fs, tuple(features), dict(meta))
        meta["reference_agreement"] = reference_agreement(np.concatenate(all_x), tuple(features), fitted,
                                                          reference, settings)
    log.info("fitted match weights without labels", extra={k2: v for k2, v in fs.info.items()})
    return LearnedModel(fs, tuple(features), meta)


def reference_agreement(x: np.ndarray, features: tuple[str, ...], fitted: LearnedModel, reference: LearnedModel,
                        settings: Settings) -> float:
    """How far a shipped model and the weights fitted to this file agree on which candidate pairs match:
    |both| / |either| (1.0 when neither finds a match; 0.0 when the shipped model cannot read this
    pipeline's features). Why: a model trained on generated data is right on files like its training data
    and can be far off on others (Abt-Buy: it finds 18% of the duplicates); the fitted weights know this
    file but less about the hard cases the shipped model was trained on. Agreement says which case this is."""
    try:
        ref_cols = reference.columns_for(features)
    except ModelError:
        return 0.0
    ref = reference.predict(x, ref_cols) >= learned_thresholds(settings.fusion, reference)[0]
    own = fitted.predict(x, fitted.columns_for(features)) >= learned_thresholds(settings.fusion, fitted)[0]
    either = int((ref | own).sum())
    return 1.0 if either == 0 else round(float((ref & own).sum()) / either, 4)


def explain_model(model: LearnedModel) -> str:
    """A text table of what a model learned: Fellegi-Sunter weights per comparison level (like Splink's
    match-weight chart, bars in bits), or the feature list of a trained classifier."""
    est = model.estimator
    if isinstance(est, EitherOf):
        parts = [explain_model(m) for m in est.models]
        return "a match when either model says so (the larger probability):\n\n" + "\n\n".join(parts)
    if not isinstance(est, FellegiSunterModel):
        used = ", ".join(model.used_features)
        return (f"trained classifier ({type(est).__name__}, {model.meta.get('pairs', '?')} labelled pairs); "
                f"features: {used}\n(match weights per level exist only for Fellegi-Sunter models: `dedup fit`)")
    lines = [f"Fellegi-Sunter match weights fitted without labels on {model.meta.get('records', '?')} records "
             f"({est.info.get('candidate_pairs')} candidate pairs, {est.info.get('iterations')} "
             f"{'self-training rounds' if str(est.info.get('method', '')).startswith('recip') else 'EM iterations'}, "
             f"lambda {est.lam:.5f})",
             f"{'comparison':<22}{'level':<10}{'m':>9}{'u':>10}{'weight':>8}  {'share':>6}  bits"]
    for row in est.explain():
        w = row["weight"]
        bar = ("+" * min(int(round(w)), 20)) if w > 0 else ("-" * min(int(round(-w)), 20))
        m = "" if row["m"] is None else f"{row['m']:.4f}"
        u = "" if row["u"] is None else f"{row['u']:.5f}"
        share = "" if row["share"] is None else f"{row['share']:.3f}"
        lines.append(f"{row['comparison']:<22}{row['level']:<10}{m:>9}{u:>10}{w:>8.2f}  {share:>6}  {bar}")
    lines.append("weight = log2(m/u): bits of evidence for a match; a null level (value missing) adds 0. "
                 "(tf): exact agreement is adjusted by how common the value is.")
    return "\n".join(lines)
