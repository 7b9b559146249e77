"""Fitting the engine to a user's file without labels: the adapter around `consumer.learn.fellegi_sunter`.

It runs the real engine (rule fusion, so no model is needed) over a sample of the user's records to get the candidate
pairs the blocking produces, draws random record pairs for the u estimates, compares both with the profile's own
encoders, and fits Fellegi-Sunter weights by EM on the comparisons the encoders declare levels for (`Feature.levels`).
The result is an ordinary `LearnedModel` (saved with its sha256 manifest like any `dedup train` output), so batch,
service and evaluation load and use it unchanged.

Why this module is long: the fit's steps meet here in the order they depend on (sample, compare, fit, the
photos' evidence, the agreement with the shipped model, then the refinement that must not sway it).

`dedup batch FILE --profile person` with no model file fits on FILE first (`needs_fit`); a service fits once with
`dedup fit FILE --out model.pkl` (a warm-up sample of its stream) and loads that file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders import build_encoders
from consumer.encoders.base import Encoder
from consumer.engine.comparison import Comparator
from consumer.engine.fusion import PACKAGED_MODELS, EitherOf, LearnedModel
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.engine.replay import CandidateLog, record_into
from consumer.learn import size_prior
from consumer.learn.agreement import reference_agreement
from consumer.learn.fellegi_sunter import Comparison, FellegiSunterModel, inputs_of, levels_of
from consumer.learn.fit_pass import FitPass
from consumer.learn.fs_fit import FIT_FALLBACK, FIT_OK, fit_fellegi_sunter, fit_near_count
from consumer.learn.joint import joint_groups
from consumer.learn.reciprocal import fit_reciprocal, one_of_each, refine_fit
from consumer.learn.sampling import (
    FIT_FLOOR,
    FIT_FRACTION,
    FIT_SAMPLE,
    fit_sample_size,
    sample_blocks,
    sample_file,
    sample_file_blocks,
    sample_records,
    uniform_draw,
)
from consumer.learn.slot_photos import photo_evidence
from consumer.learn.variants import slots_meta, variant_slots_of

__all__ = ["ADAPT_AGREEMENT", "EM_OPERATING_POINT", "RECIPROCAL_OPERATING_POINT", "FIT_SAMPLE", "FIT_FRACTION",
           "FIT_FLOOR", "RANDOM_PAIRS", "MIN_RECORDS", "adapts", "comparisons_of", "needs_fit", "fit_method",
           "fit_unsupervised", "fit_sample_size", "sample_records", "sample_file", "fit_sample", "bind_population",
           "variant_slots_of", "drift_notes", "explain_model", "reference_agreement"]

log = logging.getLogger("dedup.unsupervised")

RANDOM_PAIRS = 200_000
#: Where a pair of fitted weights becomes a match (`fusion.learned_match` overrides), by leaving one file out
#: (loo_sweep 0.5/0.4/0.3/0.6, docs/benchmarks.md): EM on person files 0.3 or 0.4 (0.4 lowers none), listings 0.3.
EM_OPERATING_POINT, RECIPROCAL_OPERATING_POINT = {"match": 0.4, "possible": 0.25}, {"match": 0.3, "possible": 0.25}
#: Below this the sample says too little about error rates; the caller falls back to rule fusion.
MIN_RECORDS = 50


def fit_sample(records: Iterable[Record], settings: Settings, size: int | None = None,
               seed: int = 0) -> tuple[list[Record], int]:
    """The records a fit of `settings`' profile reads, and the number read: whole blocks for the
    reciprocal-best fit (`sample_blocks`); a uniform sample for EM, whose lambda needs one (the matching
    share of all pairs is the same in a uniform sample). `size` None: `fit_sample_size` of the file."""
    if fit_method(settings) != "reciprocal":
        return sample_file(records, FIT_SAMPLE if size is None else size, seed)
    return sample_file_blocks(records, seed=seed) if size is None else sample_blocks(records, size, seed=seed)


def comparisons_of(encoders: Sequence[Encoder]) -> list[Comparison]:
    """The comparisons the encoders declare (features with levels), in encoder order."""
    return [Comparison(f.name, tuple(f.levels), f.tf, f.tf_near) for e in encoders for f in e.contribution.features
            if f.levels] + [Comparison(r.feature, tuple(r.levels)) for e in encoders for r in e.contribution.rarity
                            if r.levels]


def fit_method(settings: Settings) -> str:
    """"em" or "reciprocal" (`fusion.fit_method`; "auto": reciprocal best-pair self-training for product
    listings, whose candidate pairs are mostly siblings of one product family, EM for the rest)."""
    method = settings.fusion.fit_method
    return method if method != "auto" else "reciprocal" if settings.profile.name == "listing" else "em"


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
    return bool(comparisons_of(encoders)) and not LearnedModel.packaged_fits(Comparator(encoders).features)


def fit_unsupervised(records: Sequence[Record], settings: Settings, text_encoder: Any, *,
                     sample: int = FIT_SAMPLE, random_pairs: int = RANDOM_PAIRS, seed: int = 0,
                     population: int | None = None, source: str = "", image_encoder: Any = None,
                     reference: LearnedModel | None = None, variant_slots: list[list[int]] | None = None,
                     candidate_log: CandidateLog | None = None) -> LearnedModel:
    """Fellegi-Sunter weights for `settings`' profile fitted on `records` (a seeded sample of `sample`
    beyond that); `population`: records in the whole file, when `records` is a sample of it (the scale of
    its value counts). ValueError when too few records or candidate pairs to fit on.

    `reference`: a shipped model trained on other data; its agreement with the fitted weights on this
    file's candidate pairs goes into the meta (`reference_agreement`). `variant_slots`: the file's variant
    words (`variant_slots_of`), when the caller learned them already; None: learned from `records`.
    `candidate_log`: filled with the fit pass's candidate lists, for the run to replay (`consumer.engine.replay`)."""
    rng = np.random.default_rng(seed)
    population = max(population or 0, len(records))
    if len(records) > sample:  # a seeded sample, kept in arrival order
        keep = uniform_draw(rng, len(records), sample)
        records = [records[i] for i in keep]
    if len(records) < MIN_RECORDS:
        raise ValueError(f"too few records to fit match weights without labels ({len(records)} < {MIN_RECORDS})")
    reciprocal = fit_method(settings) == "reciprocal"
    slots = variant_slots_of(records, settings) if variant_slots is None else variant_slots
    # The reciprocal-best fit reads candidate pairs only: no random pairs to draw and compare (3.6 s of 14).
    vec = _comparison_vectors(records, settings, text_encoder, 0 if reciprocal else random_pairs, rng, image_encoder,
                              slots, candidate_log)
    comps, features = vec.comps, vec.features
    if reciprocal:
        fs = fit_reciprocal(vec.cand_x, vec.left, vec.right, comps, vetoes=vec.vetoes)
        fs.info.update({"fit": FIT_OK, "reasons": [], "notes": [], "operating_point": dict(RECIPROCAL_OPERATING_POINT)})
        fs.records = population
        slots = photo_evidence(fs, slots, records, vec, settings, candidate_log)  # bars, colour words
    else:
        x = vec.all_x[:, [features.index(f) for f in inputs_of(comps)]]  # the candidate pairs as the model reads them
        fs = fit_fellegi_sunter(vec.cand_x, vec.random_x, comps, records=len(records), joint=vec.joint, scored_x=x)
        fs.near_count = fit_near_count(fs, x)
        fs.info["null_share"] = {c.feature: round(float(np.isnan(vec.random_x[:, j]).mean()), 4)
                                 for j, c in enumerate(comps)}
        fs.records = population
        # lambda does not change with uniform sampling (a sample keeps the same share of pairs and of
        # matching pairs): the file's own expected matches follow from it.
        fs.info["expected_matches"] = round(fs.lam * population * (population - 1) / 2, 1)
        fs.info["matches_per_record"] = round(fs.lam * (population - 1) / 2, 4)
        fs.info["notes"] = _notes(fs, comps, len(records), population)
        # How much rarer a third record of one entity is than a second in this file: the clustering's size prior.
        fs.info["size_prior"] = size_prior.estimate(fs.predict_proba(x)[:, 1], vec.left, vec.right, len(records))
        fs.info["operating_point"] = dict(EM_OPERATING_POINT)
    meta = {"kind": "fellegi-sunter", "used_features": list(fs.inputs), "trained_on": source,
            "records": len(records), "population": population, "labels": False, "name_gate": False, **fs.info,
            "fit_stage_seconds": vec.stage_seconds}
    meta.update(slots_meta(slots))
    if reference is not None and len(vec.all_x):
        fitted = LearnedModel(fs, tuple(features), dict(meta))
        meta["reference_agreement"] = reference_agreement(vec.all_x, tuple(features), fitted, reference, settings)
    if reciprocal:  # after the comparison with the shipped model, which the reciprocal fit answers
        meta.update(refine_fit(fs, vec.cand_x, comps, vec.vetoes))
    # Numbers and comparison names only: a log line never carries a field value.
    log.info("fitted match weights without labels", extra={k: v for k, v in fs.info.items() if k != "reasons"})
    if fs.info["fit"] != FIT_OK:
        log.warning("match-weight fit failed its checks", extra={"fit": fs.info["fit"], "reasons": fs.info["reasons"]})
    return LearnedModel(fs, tuple(features), meta)


@dataclasses.dataclass
class _Vectors:
    """What a fit reads from one run of the engine over the sample."""

    comps: list[Comparison]  # the comparisons the file fills
    features: list[str]  # the comparator's feature names
    cand_x: np.ndarray  # comparison vectors of the candidate pairs
    random_x: np.ndarray  # ... of random record pairs
    left: np.ndarray  # the records of each candidate pair (query, candidate)
    right: np.ndarray
    all_x: np.ndarray  # every feature of the candidate pairs (to compare a shipped model with the fit)
    conflict: np.ndarray | None  # the comparator's conflicts on those pairs (None: the profile has none)
    vetoes: frozenset[str]  # the comparisons with a declared conflict value (`Feature.conflict`)
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # the pass's stage timer
    joint: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # `Feature.joint` groups


def _comparison_vectors(records: Sequence[Record], settings: Settings, text_encoder: Any, random_pairs: int,
                        rng: np.random.Generator, image_encoder: Any = None,
                        variant_slots: Sequence[Sequence[int]] = (), candidate_log: CandidateLog | None = None
                        ) -> _Vectors:
    """Run the engine (rule fusion) over `records`; the comparisons the file fills, the comparator's
    feature names, and the comparison vectors of its candidate pairs and of random record pairs."""
    # The embedded index whatever `index.backend` says: this pass is transient and in memory, and must not
    # write its rows into the collection of the run it fits weights for.
    rule = dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule"),
                               index=dataclasses.replace(settings.index, backend="hnswlib"))
    # Encoding the next batch in the background while this one is decided, as `dedup batch` runs: the fit
    # is paid before every batch run, so it runs as fast as the run itself (measured: ~30% faster).
    pipe = FitPass(rule, text_encoder, encode_in_background=True, image_encoder=image_encoder,
                   variant_slots=list(variant_slots))
    if candidate_log is not None:  # the run replays this pass (consumer.engine.replay)
        record_into(pipe, candidate_log)
    try:
        comps = comparisons_of(pipe.encoders)
        if not comps:
            raise ValueError("no encoder of this profile declares comparison levels (Feature.levels); "
                             "fitting without labels needs them (docs/extending.md)")
        pipe.pair_log = []
        batches = (records[start: start + rule.batch_size] for start in range(0, len(records), rule.batch_size))
        for _ in pipe.process_stream(batches):
            pass
        if candidate_log is not None:
            candidate_log.finish(pipe)
        features = list(pipe.comparator.features)
        cols = [features.index(c.feature) for c in comps]
        logged = [(r, c, f) for r, c, f in pipe.pair_log if len(c)]
        pipe.pair_log = None
        cand = [feats[:, cols] for _, _, feats in logged]
        left = np.concatenate([np.full(len(c), r, np.int64) for r, c, _ in logged] or [np.zeros(0, np.int64)])
        right = np.concatenate([np.asarray(c, np.int64) for _, c, _ in logged] or [np.zeros(0, np.int64)])
        all_x = np.concatenate([f for _, _, f in logged]) if logged else np.zeros((0, len(features)), np.float32)
        cand_x = np.concatenate(cand) if cand else np.zeros((0, len(comps)), np.float32)
        # A comparison the file never fills (no date of birth column) carries no information: left out.
        present = [j for j in range(len(comps)) if not np.isnan(cand_x[:, j]).all()]
        if not present:
            raise ValueError("no comparison has a value on any candidate pair")
        present = one_of_each(comps, cand_x, present, pipe.frequencies.rarities)
        comps = [comps[j] for j in present]
        cols = [cols[j] for j in present]
        cand_x = cand_x[:, present]
        n = len(pipe.store)
        a = rng.integers(0, n, random_pairs)
        b = rng.integers(0, n, random_pairs)
        a, b = a[a != b], b[a != b]
        random_x = _compare_only(pipe, comps, a, b) if len(a) else np.zeros((0, len(comps)), np.float32)
    finally:
        pipe.close()
    vetoes = frozenset(features[j] for j, _ in pipe.comparator.conflict_columns)
    return _Vectors(comps, features, cand_x, random_x, left, right, all_x, pipe.comparator.conflicts(all_x),
                    vetoes, pipe.timer.totals(), joint_groups(pipe.encoders))


def _compare_only(pipe: Pipeline, comps: Sequence[Comparison], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Comparison vectors of record pairs (a[i], b[i]) from the encoders that declare the comparisons
    alone, gathering only their columns: the random pairs need nothing else (the name and text scores,
    rarity), and skipping it halves the fit's random-pair step (measured, 200,000 pairs)."""
    wanted = {c.feature for c in comps}
    if wanted & {r.feature for r in pipe.frequencies.rarities}:  # a pairwise rarity: needs the population
        skip = pipe.comparator.unused_columns
        ca, cb = pipe.store.gather(a, skip), pipe.store.gather(b, skip)
        x = pipe.comparator.compare(ca, cb, pipe.frequencies.pair_rarity(ca, cb, (a, b)))
        return x[:, [pipe.comparator.features.index(c.feature) for c in comps]]
    encoders = [e for e in pipe.encoders if wanted & {f.name for f in e.contribution.features}]
    need = {col for e in encoders for col in e.contribution.columns}
    skip = set(pipe.store.column_names()) - need | pipe.comparator.unused_columns
    ca, cb = pipe.store.gather(a, skip), pipe.store.gather(b, skip)
    got: dict[str, np.ndarray] = {}
    for e in encoders:
        got.update(e.compare(ca, cb))
    return np.stack([np.asarray(got[c.feature], np.float32) for c in comps], axis=1)


def _notes(fs: FellegiSunterModel, comps: Sequence[Comparison], fitted: int, population: int) -> list[str]:
    """What makes this file unlike the files the fit was developed on (FEBRL, RLdata10000): said in the
    summary so a user reads the clusters with it in mind. Counts and comparison names only."""
    notes = []
    if len(comps) <= 3:
        notes.append(f"only {len(comps)} comparisons have values ({', '.join(c.feature for c in comps)}): "
                     "each pair is judged on few fields")
    per_record = fs.info.get("matches_per_record", 0.0)
    if per_record > 1.5:
        notes.append(f"{per_record:.2f} matching pairs per record: more duplicates than any file it was measured on "
                     "(FEBRL3, the most: 1.3)")
    elif fs.info.get("expected_matches", 0.0) < 1:
        notes.append("almost no duplicates found")
    weak = [c.feature for j, c in enumerate(fs.comparisons)
            if fs.u[j][0] < 0.5 and np.log2(fs.m[j][-1] / fs.u[j][-1]) > -1.0]
    if weak and fs.info.get("fit") != FIT_FALLBACK:
        notes.append(f"the fitted matches often differ on {', '.join(weak)} (disagreeing weighs under 1 bit): "
                     "people who moved, or relatives sharing a household, may be among them")
    if not fs.info.get("converged", True):
        notes.append(f"EM did not converge in {fs.info.get('iterations')} iterations")
    if fitted < population:
        notes.append(f"fitted on a sample of {fitted} of {population} records")
    return notes


def drift_notes(pipe: Pipeline, pairs: int = 20_000, seed: int = 0) -> list[str]:
    """How the file a run processed differs from the one its Fellegi-Sunter model was fitted on, from
    random record pairs of the run: a comparison the model counts on that has no values here, or whose
    values agree between strangers far more or less often than in the fitted file (another population:
    its u, and so its weights, do not hold). Empty for any other model, or a file like the fitted one."""
    fs = pipe.fuser.model.estimator_unless_forest if pipe.fuser.model is not None else None
    if not isinstance(fs, FellegiSunterModel) or len(pipe.store) < MIN_RECORDS:
        return []
    rng = np.random.default_rng(seed)
    n = len(pipe.store)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    a, b = a[a != b], b[a != b]
    x = _compare_only(pipe, fs.comparisons, a, b)
    fitted_null = fs.info.get("null_share", {})
    notes = []
    for j, c in enumerate(fs.comparisons):
        null = float(np.isnan(x[:, j]).mean())
        if null > 0.99 and fitted_null.get(c.feature, 0.0) < 0.5:
            notes.append(f"{c.feature} has no values in this file; the model was fitted on a file that had them")
            continue
        top = float((levels_of(x[:, j], c) == 0).sum() + 0.5) / float((~np.isnan(x[:, j])).sum() + 1.0)
        ratio = top / float((fs.u_random or fs.u)[j][0])  # random pairs against random pairs
        if ratio > 4 or ratio < 0.25:
            notes.append(f"{c.feature}: strangers agree exactly {ratio:.1f} times as often as in the fitted file")
    if notes:
        notes.append("this file looks unlike the one the model was fitted on: refit it (`dedup fit`, or "
                     "`dedup batch` without --model)")
    return notes


def bind_population(pipe: Pipeline) -> None:
    """Let a Fellegi-Sunter model in `pipe` read how many records its rarity counts cover from the
    pipeline's own frequency table (term-frequency adjustments are shares of the records seen so far;
    without this, the fitted file's size stands in). A model corrected by labels forwards it to the model
    it corrects (`LabelledModel.bind`). Any other fusion: nothing to do."""
    model = pipe.fuser.model
    if model is not None and hasattr(est := model.estimator_unless_forest, "bind"):
        est.bind(pipe.frequencies)


def _conflict_note(conflicts: dict[str, Any] | None) -> str:
    """What the answers said about pairs the comparisons call two different things (`conflicts_confirmed`)."""
    if not conflicts or not conflicts.get("answered"):
        return ""
    said = f"{conflicts['yes']} of {conflicts['answered']} answered pairs whose attributes or codes conflict were a yes"
    return f"; {said}: " + ("confirmed, labels never raise such a pair and the other answers correct the model"
                            if conflicts.get("confirmed") else "not confirmed, every answer corrects the model")


def explain_model(model: LearnedModel) -> str:
    """A text table of what a model learned: Fellegi-Sunter weights per comparison level (like Splink's
    match-weight chart, bars in bits), or the feature list of a trained classifier."""
    est = model.estimator
    corrected = getattr(est, "correction", None)
    if corrected is not None:  # a LabelledModel: the answers' correction, then the model it corrects
        rep = model.meta.get("labels", {})
        coef = ", ".join(f"{f} {c:+.2f}" for f, c in zip(est.correction_features, corrected.coef) if abs(c) >= 0.01)
        return (f"corrected by {rep.get('labels', '?')} answers ({rep.get('yes', '?')} yes, {rep.get('no', '?')} no; "
                f"applied: {rep.get('applied', '?')}): log-odds = {corrected.intercept:+.2f} + "
                f"{corrected.slope:.2f} x base (above even odds) / {corrected.slope_low:.2f} x base (below)"
                f"{' + per standard deviation: ' + coef if coef else ''}; threshold {rep.get('threshold', '?')}"
                f"{_conflict_note(rep.get('conflicts'))}; the {rep.get('honoured', 0)} answered pairs "
                "score as answered\n\n"
                "the model it corrects:\n" + explain_model(est.base))
    if isinstance(est, EitherOf):
        parts = [explain_model(m) for m in est.models]
        return "a match when either model says so (the larger probability):\n\n" + "\n\n".join(parts)
    if not isinstance(est, FellegiSunterModel):
        used = ", ".join(model.used_features)
        return (f"trained classifier ({type(est).__name__}, {model.meta.get('pairs', '?')} labelled pairs); "
                f"features: {used}\n(match weights per level exist only for Fellegi-Sunter models: `dedup fit`)")
    info = est.info
    lines = [f"Fellegi-Sunter match weights fitted without labels on {model.meta.get('records', '?')} records "
             f"({info.get('candidate_pairs')} candidate pairs, {info.get('iterations')} "
             f"{'self-training rounds' if str(info.get('method', '')).startswith('recip') else 'EM iterations'}, "
             f"lambda {est.lam:.3g} = {info.get('matches_per_record', '?')} matching pairs per record)",
             f"fit: {info.get('fit', 'ok (no checks: an older model file)')}"]
    lines += [f"  because {r}" for r in info.get("reasons", [])] + [f"  note: {n}" for n in info.get("notes", [])]
    if sizes := info.get("size_prior"):
        lines.append(f"group sizes: {sizes['share_first']:.1%} of records have a likely duplicate, "
                     f"{sizes['share_second']:.1%} of those two or more: a group of three needs "
                     f"{sizes['penalty']:.2f} more log-odds (clustering.size_prior)")
    if model.meta.get("variant_words"):
        lines.append(f"variant words learned from the file: {model.meta['variant_words']} in "
                     f"{len({row[1] for row in model.meta.get('variant_slots', [])})} slots (keyed hashes: another "
                     "colour, finish or edition in one slot is a conflicting attribute)")
    for key, what, measure in (("photo_cut", "photos", "cosine"), ("colour_cut", "colours", "colours shared"),
                               ("tier_cut", "tiers", "prices: one title's edition alone")):
        if (cut := model.meta.get(key)) is not None:  # consumer/learn/photo_cut.py
            lines.append(f"{what} tell siblings apart: under {cut:.3f} ({measure}, gap {info[what]['gap']}): two items")
    if est.near_count:
        lines.append("one edit apart: a pair weighs log2(typical / n) bits more, n the records holding its rarer "
                     "value, typical that of the likely matches ("
                     + ", ".join(f"{f} {n:.1f}" for f, n in est.near_count.items())
                     + "): two common names one edit apart are two names")
    for name, (parts, cap) in est.joint.items():
        lines.append(f"{name}: where every stated part of {', '.join(parts)} agrees, their weights sum to at most "
                     f"{cap:.2f} bits (what the file says a whole agreement is worth among non-matches)")
    lines.append(f"{'comparison':<22}{'level':<10}{'m':>9}{'u':>10}{'weight':>8}  {'share':>6}  bits")
    for row in est.explain():
        w = row["weight"]
        bar = ("+" * min(int(round(w)), 20)) if w > 0 else ("-" * min(int(round(-w)), 20))
        m = "" if row["m"] is None else f"{row['m']:.4f}"
        u = "" if row["u"] is None else f"{row['u']:.5f}"
        share = "" if row["share"] is None else f"{row['share']:.3f}"
        lines.append(f"{row['comparison']:<22}{row['level']:<10}{m:>9}{u:>10}{w:>8.2f}  {share:>6}  {bar}")
    lines.append("weight = log2(m/u): bits of evidence for a match; a null level (value missing) adds 0; the "
                 "prior is log2 of the odds that two random records match. (tf): exact agreement is adjusted by "
                 "how common the value is.")
    return "\n".join(lines)
