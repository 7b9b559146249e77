"""The embedded runner: a file in, one decision per record out, through the same core as the service.

Rows are validated one by one (bad ones go to the rejects file with their line and reason; good rows are
never dropped), grouped into micro-batches of `settings.batch_size`, and handed to `Pipeline.process` in
file order. Same file, same order, same settings -> same clusters and ids.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.config import Settings, link_match
from consumer.engine.normalize import fold
from consumer.engine.pipeline import FLOORS, Pipeline
from consumer.engine.records import Record, Rejected, RejectError, parse_record
from consumer.engine.replay import CandidateLog, replay_from
from consumer.io.artifacts import build_pipeline
from consumer.io.columns import check_file
from consumer.io.files import InputError, JsonlWriter, check_outputs_distinct, is_stream, read_rows, write_csv_table
from consumer.io.listing import IMAGE_ROLE, attach_image

__all__ = ["BatchSummary", "run_batch", "iter_records", "micro_batches"]

log = logging.getLogger("dedup.batch")


@dataclass
class BatchSummary:
    records: int = 0
    rejected: int = 0
    reject_reasons: Counter[str] = field(default_factory=Counter)
    #: Kept records with a field that carries no comparable text (e.g. only emoji): `name_unreadable`, ...
    warnings: Counter[str] = field(default_factory=Counter)
    clusters: int = 0
    duplicates: int = 0
    largest_cluster: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: How the run's fusion came about when it was not simply the configured one (fitted to the input).
    model: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "rejected": self.rejected,
                "reject_reasons": dict(self.reject_reasons), "warnings": dict(self.warnings), "clusters": self.clusters,
                "records_in_duplicate_clusters": self.duplicates, "largest_cluster": self.largest_cluster,
                "seconds": round(self.seconds, 3),
                "records_per_second": round(self.records / self.seconds, 1) if self.seconds else None,
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
                **({"model": self.model} if self.model else {})}


def iter_records(path: str | Path, settings: Settings, fmt: str | None = None,
                 warnings: Counter[str] | None = None) -> Iterator[tuple[int, Record | Rejected]]:
    """Validated records (or reasoned rejects) from a file, in file order. A profile with an `image` role
    gets each listing's image attached (paths relative to the file's folder, `consumer.io.listing`); an image
    that cannot be used is counted in `warnings` and leaves the modality absent."""
    rows = read_rows(path, fmt, settings.limits.max_record_bytes, settings.profile.encoding)
    yield from _parse_rows(rows, path, settings, warnings)


def _parse_rows(rows: Iterable[tuple[int, Any]], path: str | Path, settings: Settings,
                warnings: Counter[str] | None = None) -> Iterator[tuple[int, Record | Rejected]]:
    """`iter_records` over rows already read (line number, row or Rejected)."""
    images = IMAGE_ROLE in settings.profile.roles
    base_dir = Path(path).resolve().parent
    for pos, row in rows:
        if isinstance(row, Rejected):
            yield pos, row
            continue
        try:
            rec = parse_record(row, settings.profile, settings.limits)
        except RejectError as exc:
            yield pos, Rejected(exc.reason, exc.detail, exc.record_id, pos)
            continue
        if images:
            rec, warning = attach_image(rec, base_dir, settings.limits.max_image_bytes)
            if warning and warnings is not None:
                warnings[warning] += 1
        yield pos, rec


@dataclass
class ParsedFile:
    """The rows of a small file as the fit read and parsed them (records and rejects, in file order), for
    the run to take instead of reading and parsing the file a second time (0.3 s of RLdata10000's 7 s;
    image bytes included for listings). Kept only for a file the fit read whole and within `limit` rows;
    `items` None: read the file again. `warnings`: what the fit's parse counted (the run's, when used)."""

    limit: int = 11_000
    items: list[tuple[int, Record | Rejected]] | None = None
    warnings: Counter[str] = field(default_factory=Counter)


def micro_batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of `size` records (the last may be shorter), in order (`Pipeline.process_stream`)."""
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unreadable_fields(rec: Record) -> list[str]:
    """Warnings for a name/city that is present yet folds to nothing (no letter or digit in any script).

    Such a value cannot match anything; the record is still decided on its other fields, but the loss is
    counted instead of silent."""
    out = []
    if rec.name and not fold(rec.name):
        out.append("name_unreadable")
    if rec.city and not fold(rec.city):
        out.append("city_unreadable")
    return out


def run_batch(input_path: str | Path, out_path: str | Path, settings: Settings, *,
              rejects_path: str | Path | None = None, fmt: str | None = None, progress: bool = True,
              pipeline: Pipeline | None = None, save_model: str | Path | None = None,
              clusters_path: str | Path | None = None) -> tuple[BatchSummary, Pipeline]:
    """Process a whole file; returns the summary and the pipeline (its state, for evaluation).

    With learned fusion, no model file, and a profile the shipped model does not fit (the `person`
    profile), match weights are first fitted to the file itself without labels (`consumer.learn.unsupervised`;
    `save_model` keeps them as a model file for `--model` or the service).
    `clusters_path`: also write the final cluster table (record_id, cluster_id, canonical_id; every merge
    applied, which the per-record decision lines, written at decision time, cannot show)."""
    summary = BatchSummary()
    if rejects_path is None:
        # Beside the output, unless that is stdout or a device (/dev/null): then in the working folder.
        rejects_path = "rejects.jsonl" if is_stream(out_path) else Path(str(out_path) + ".rejects.jsonl")
    # Before any output is opened: a mistyped input or an output that *is* the input must cost nothing.
    check_file(input_path, fmt, settings.profile)
    check_outputs_distinct(input_path, out_path, rejects_path, clusters_path)
    # Two outputs may share a device (/dev/null), never a file.
    if not is_stream(out_path) and Path(out_path).resolve() == Path(rejects_path).resolve():
        raise InputError("--rejects is the same file as --out; choose another path")
    if clusters_path is not None and str(clusters_path) == "-":
        raise InputError("--clusters needs a file path")
    if clusters_path is not None and not is_stream(clusters_path) and any(
            str(p) != "-" and Path(p).resolve() == Path(clusters_path).resolve() for p in (out_path, rejects_path)):
        raise InputError("--clusters is the same file as --out or --rejects; choose another path")
    parsed = ParsedFile() if pipeline is None else None
    pipe = pipeline or pipeline_for(input_path, settings, fmt, summary, save_model, parsed)
    start = time.perf_counter()
    rows: Iterable[tuple[int, Record | Rejected]]
    if parsed is not None and parsed.items is not None:  # the fit read the whole file: the same rows
        rows = parsed.items
        summary.warnings.update(parsed.warnings)
    else:
        rows = iter_records(input_path, settings, fmt, summary.warnings)
    bar = _progress(progress)
    with JsonlWriter(out_path) as out, JsonlWriter(rejects_path) as rejects:

        def batches() -> Iterator[list[Record]]:
            batch: list[Record] = []
            for pos, item in rows:
                if isinstance(item, Rejected):
                    summary.rejected += 1
                    summary.reject_reasons[item.reason] += 1
                    rejects.write({"line": pos, "record_id": item.record_id, "reason": item.reason,
                                   "detail": item.detail})
                    continue
                for warning in unreadable_fields(item):
                    summary.warnings[warning] += 1
                batch.append(item)
                if len(batch) >= settings.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

        # Encoding of the next batch overlaps the deciding of this one (same decisions, see process_stream).
        for batch, decisions in pipe.process_stream(batches()):
            for d in decisions:
                out.write(d.to_dict())
            summary.records += len(batch)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    if clusters_path is not None:
        write_csv_table(clusters_path, ("record_id", "cluster_id", "canonical_id"), pipe.final_clusters())
    summary.seconds = time.perf_counter() - start
    summary.clusters = len(pipe.clusters.members)
    summary.duplicates = sum(len(m) for m in pipe.clusters.members.values() if len(m) > 1)
    summary.largest_cluster = pipe.clusters.largest()
    summary.stage_seconds = pipe.timer.totals()  # the pipeline's stage names (consumer.engine.stages)
    if not summary.model:  # a model given, not fitted here: say so when the file looks unlike its own
        from consumer.learn.unsupervised import drift_notes

        notes = drift_notes(pipe)
        if notes:
            summary.model = {"fusion": "given Fellegi-Sunter model", "notes": notes}
            log.warning("the input looks unlike the file the model was fitted on", extra={"notes": notes})
    if pipe.fuser.mode == "learned" and link_match(settings) is not None:  # a linked file: where a link is a match
        summary.model["linked_match_at"] = round(pipe.fuser.match_threshold, 4)  # `fusion.link_match`, or as set
    if summary.warnings:
        log.warning("records kept with fields that fold to no comparable text",
                    extra={"warnings": dict(summary.warnings)})
    if summary.rejected:
        log.warning("rejected rows", extra={"rejected": summary.rejected,
                                            "reasons": dict(summary.reject_reasons)})
    return summary, pipe


def fit_records(input_path: str | Path, settings: Settings, fmt: str | None = None,
                parsed: ParsedFile | None = None) -> tuple[list[Record], int]:
    """The records a fit without labels reads (`consumer.learn.unsupervised.fit_sample`) and the number of
    rows in the file. The sample is drawn on the raw rows and only the rows kept are parsed: parsing all
    100,000 rows of a listing file for their block keys took 5.7 s, a third of the fit, and parsing every
    row of a 50,000-record person file to keep 10,000 was 2 s of its 40. The blocks of the reciprocal-best fit
    of listings, a uniform sample for EM (a rejected row then counts among the rows sampled from). `parsed`:
    filled with every row parsed when the whole file was (`ParsedFile`)."""
    from consumer.learn.sampling import block_key, sample_file_blocks, sample_file_uniform
    from consumer.learn.unsupervised import fit_method

    warnings = parsed.warnings if parsed is not None else None
    brand, title = settings.profile.roles.get("brand"), settings.profile.roles.get("title")

    def key(item: tuple[int, Mapping[str, Any]]) -> str:
        found = block_key(item[1].get(brand) if brand else "", item[1].get(title) if title else "")
        return found or f"\0{item[0]}"  # no brand or title: a block of its own, by line

    refused: list[tuple[int, Any]] = []  # rows read_rows refused: the run's rejects, if it takes these rows

    def mappings() -> Iterator[tuple[int, Mapping[str, Any]]]:
        for pos, row in read_rows(input_path, fmt, settings.limits.max_record_bytes, settings.profile.encoding):
            if isinstance(row, Mapping):
                yield pos, row
            else:
                refused.append((pos, row))

    if fit_method(settings) == "reciprocal":
        kept, total = sample_file_blocks(mappings(), key)
    else:  # the uniform sample EM fits on, drawn before parsing
        kept, total = sample_file_uniform(mappings())
    if parsed is None or len(kept) < total:  # a sample: the run reads the file itself
        return [r for _, r in _parse_rows(kept, input_path, settings) if isinstance(r, Record)], total
    items = sorted(_parse_rows([*kept, *refused], input_path, settings, warnings), key=lambda t: t[0])
    parsed.items = items if len(items) <= parsed.limit else None  # in file order, as the run reads it
    return [r for _, r in items if isinstance(r, Record)], total


def pipeline_for(input_path: str | Path, settings: Settings, fmt: str | None, summary: BatchSummary,
                  save_model: str | Path | None, parsed: ParsedFile | None = None) -> Pipeline:
    """The run's pipeline; fits match weights to the input first where `needs_fit` says so, or where a
    shipped model should be checked against the input (`adapts`: it alone decides only if the two agree).
    The fit reads a sample sized by `fit_sample_size`, so it stays a small share of the run. `parsed`: the
    rows the fit parsed, when it parsed the whole file (`ParsedFile`; left empty without a fit). Where
    `wants_encoder_process`, the fit pass and the run encode in a second process, started first."""
    from consumer.io.encode_process import EncoderProcess, wants_encoder_process

    size = 0 if is_stream(input_path) else Path(input_path).stat().st_size
    process = EncoderProcess(settings) if wants_encoder_process(settings, size) else None
    try:
        return _pipeline_for(input_path, settings, fmt, summary, save_model, parsed, process)
    except BaseException:
        if process is not None:
            process.close()
        raise


def _pipeline_for(input_path: str | Path, settings: Settings, fmt: str | None, summary: BatchSummary,
                  save_model: str | Path | None, parsed: ParsedFile | None, process: Any) -> Pipeline:
    from consumer.encoders import needs_image_model, needs_text_model
    from consumer.engine.fusion import LearnedModel, either_of
    from consumer.io.artifacts import load_image_encoder, load_text_encoder
    from consumer.learn.unsupervised import (
        ADAPT_AGREEMENT,
        adapts,
        bind_population,
        fit_method,
        fit_sample_size,
        fit_unsupervised,
        needs_fit,
        variant_slots_of,
    )
    from consumer.learn.variants import slots_meta

    text = load_text_encoder(settings, encode_in_background=True) if needs_text_model(settings) else None
    adapt = adapts(settings)
    if not adapt and not needs_fit(settings, text):
        image = load_image_encoder(settings, encode_in_background=True) if needs_image_model(settings) else None
        pipe = build_pipeline(settings, text_encoder=text, image_encoder=image, encode_in_background=True,
                              hold_index_only=False)
        bind_population(pipe)  # a given Fellegi-Sunter model reads this run's record count
        return _replaying(pipe, None, process)
    shipped = LearnedModel.load(None, profile=settings.profile.name) if adapt else None
    fit_start = time.perf_counter()
    records, total = fit_records(input_path, settings, fmt, parsed)
    slots = variant_slots_of(records, settings)  # the file's variant words: kept even when the fit fails
    if shipped is not None and slots:  # whichever model decides reads them
        shipped = dataclasses.replace(shipped, meta={**shipped.meta, **slots_meta(slots)})
    sample = fit_sample_size(total, blocks=fit_method(settings) == "reciprocal")
    # The fit pass reads the whole file: the run replays its columns and candidate lists (consumer.engine.replay);
    # a sample of it: the run takes the columns of the records the fit encoded.
    whole = len(records) == total <= sample and settings.index.backend == "hnswlib"
    cands = CandidateLog() if whole else None
    encoded = cands if cands is not None else CandidateLog(columns_only=True)
    encoded.encoders = None if process is None else process.wrap
    # The fit pass's deciding thread has little to do: its image model gets every core instead of all but one
    # (the same vectors bit for bit; 68 -> 109 images/s on 2 cores). A run that replays the whole fit encodes no
    # photo; a run beside a sampled fit encodes the rest beside its deciding thread, on a model of its own.
    fit_image = load_image_encoder(settings) if needs_image_model(settings) else None
    image = fit_image if cands is not None or fit_image is None else load_image_encoder(settings,
                                                                                       encode_in_background=True)
    try:
        model = fit_unsupervised(records, settings, text, population=total, sample=sample,
                                 source=Path(input_path).name, image_encoder=fit_image, reference=shipped,
                                 variant_slots=slots, candidate_log=encoded)
    except ValueError as exc:  # too small a file: judge it by the rule (or the shipped model) instead
        if shipped is not None:
            summary.model = {"fusion": "shipped model", "adapted": False, "reason": str(exc),
                             "variant_words": len(slots)}
            return _replaying(build_pipeline(settings, text_encoder=text, model=shipped, image_encoder=image,
                                             encode_in_background=True, hold_index_only=False), None, process)
        log.warning("no match weights fitted; using rule fusion", extra={"reason": str(exc)})
        summary.model = {"fusion": "rule", "reason": str(exc), "variant_words": len(slots)}
        rule = dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule"))
        return _replaying(build_pipeline(rule, text_encoder=text, image_encoder=image, encode_in_background=True,
                                         variant_slots=slots, hold_index_only=False), None, process)
    if fit_image is not image:  # the fit pass's image session (and its buffers) goes before the run's fill up
        fit_image = None
        gc.collect()
    fitted = {k: model.meta[k] for k in ("method", "fit", "reasons", "notes", "records", "population", "lambda",
                                         "candidate_pairs", "iterations", "converged", "matches_per_record",
                                         "size_prior", "joint", "photos", "colours", "tiers", *FLOORS.values())
              if k in model.meta}
    fitted["fit_stage_seconds"] = {k: round(v, 3) for k, v in model.meta.get("fit_stage_seconds", {}).items()}
    if shipped is not None:
        agreement = model.meta.get("reference_agreement", 0.0)
        if settings.fusion.adapt != "always" and agreement >= ADAPT_AGREEMENT:
            cuts = {k: model.meta[k] for k in (*FLOORS.values(), "variant_slots", "variant_keying")
                    if model.meta.get(k) is not None}  # what the photos say holds, and the file's words
            shipped = dataclasses.replace(shipped, meta={**shipped.meta, **cuts})
            summary.model = {"fusion": "shipped model", "adapted": False, "agreement": agreement,
                             "fit_records": len(records), "fit_seconds": round(time.perf_counter() - fit_start, 3),
                             "variant_words": model.meta.get("variant_words", 0),
                             **{k: model.meta.get(k) for k in FLOORS.values()},  # the learned bars
                             "fit_stage_seconds": fitted["fit_stage_seconds"]}
            return _replaying(build_pipeline(settings, text_encoder=text, model=shipped, image_encoder=image,
                                             encode_in_background=True, hold_index_only=cands is not None),
                              encoded, process)
        summary.model = {"fusion": "fitted without labels, with the shipped model", "adapted": True,
                         "agreement": agreement,
                         "note": "this file looks unlike the shipped model's training data: a pair is a match "
                                 "when the match weights fitted to the file or the shipped model say so", **fitted}
        model = either_of([model, shipped], {**model.meta, "kind": "either", "shipped": shipped.meta.get("sha256")})
    else:
        summary.model = {"fusion": "fellegi-sunter fitted without labels", **fitted}
    if save_model is not None:
        model.save(save_model)
    if isinstance(summary.model, dict):
        summary.model["fit_seconds"] = round(time.perf_counter() - fit_start, 3)
        summary.model["variant_words"] = model.meta.get("variant_words", 0)
    # A replay assembles index vectors from stored rows when it ends early (`consumer.engine.replay`).
    pipe = build_pipeline(settings, text_encoder=text, model=model, image_encoder=image, encode_in_background=True,
                          hold_index_only=cands is not None)
    bind_population(pipe)
    return _replaying(pipe, encoded, process)


def _replaying(pipe: Pipeline, cands: CandidateLog | None, process: Any = None) -> Pipeline:
    """`pipe`, encoding in `process` (an `EncoderProcess`, closed with the pipeline) and taking columns and
    candidate lists from the fit pass while its records are that pass's (`consumer.engine.replay`: the same
    decisions without encoding again or building a second index)."""
    if process is not None:
        pipe.encoders = process.wrap(pipe.encoders)
        pipe.closers.append(process.close)
    if cands is not None:
        replay_from(pipe, cands)
    return pipe


def _progress(enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit=" rec", file=sys.stderr, mininterval=0.5)
