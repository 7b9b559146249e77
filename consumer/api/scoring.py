"""Score one pair of records on demand: the core behind `POST /v1/score` and `dedup score A.json B.json`.

Why a module of its own, and why so short: the pair goes through exactly the pipeline's own pieces, in the
pipeline's order (the profile's encoders via `Pipeline.encode`, `Comparator.compare`, `Fuser.score`,
`Fuser.label`), so an on-demand score can never drift from what the stream computes. Nothing here knows a
modality or a profile: a listing profile's encoders (image, title) score the same way once they exist.

Term-frequency (rarity) features need a population. Given the live `FrequencyTable` of a running service,
the pair is judged against everything that service has seen, as the stream would judge it now
(`dedup serve --rarity-from-redis` builds one from the stored records at start-up: `population`). Without
one (`dedup score`, a plain `dedup serve`), the population is the pair itself, i.e. the score is the one
`dedup batch` gives the second record on a two-line file holding the two. The response says which
(`rarity`), because they can differ for the learned model.

No network and no logging of values; a listing's image given as a file path is read (bounded, as the
stream reads it: `consumer.io.listing.attach_image`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns
from consumer.engine.answers import NO_SCORE, YES_SCORE
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record, RejectError, parse_record
from consumer.io.listing import IMAGE_ROLE, attach_image
from consumer.store.record_state import RecordState, decode_payload

__all__ = ["PairScore", "LABELS", "score_pair", "parse_pair", "population"]

#: `Fuser.label` codes -> the words decisions use.
LABELS = {2: "match", 1: "possible", 0: "no_match"}


@dataclass(frozen=True)
class PairScore:
    """The fused score, its label under the configured thresholds, and the per-modality explanation."""

    fused: float
    decision: str  # "match" | "possible" | "no_match"
    scores: dict[str, float | None]  # None = the modality is absent on a side
    features: dict[str, float | None]
    fusion: str  # the fuser's version stamp, e.g. "learned:ab12cd34ef56"
    thresholds: dict[str, float]
    rarity: str  # "stream" (a running service's counts) | "state" (Redis, at start-up) | "pair" (the two)
    #: "yes" / "no": the model's answers hold this pair (`consumer.engine.answers`), and `fused` is the answer's.
    answered: str | None = None

    def to_dict(self, *, with_features: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"fused": self.fused, "decision": self.decision, "scores": self.scores,
                               "fusion": self.fusion, "thresholds": self.thresholds, "rarity": self.rarity}
        if self.answered is not None:
            out["answered"] = self.answered
        if with_features:
            out["features"] = self.features
        return out


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN -> None (absent)


def parse_pair(a: Any, b: Any, settings: Settings, *, image_paths: bool = True) -> tuple[Record, Record]:
    """Validate both sides with the profile (the same `parse_record` every input goes through) and attach a
    listing's image exactly as the stream does, so the API and the stream score a pair the same.
    `image_paths=False` (the HTTP API): an image given as a file path is not read, only base64 bytes.

    Raises RejectError naming the side ("a: missing_id ..."): the caller turns it into a 4xx/exit 2."""
    out: list[Record] = []
    images = IMAGE_ROLE in settings.profile.roles
    for side, row in (("a", a), ("b", b)):
        try:
            rec = parse_record(row, settings.profile, settings.limits)
        except RejectError as exc:
            err = RejectError(exc.reason, f"record {side}: {exc.detail}", exc.record_id)
            err.side = side  # type: ignore[attr-defined]
            raise err from None
        if images:  # as the stream does (consumer.service.batch): same function, base directory and limits
            rec, _warning = attach_image(rec, None, settings.limits.max_image_bytes, paths=image_paths)
        out.append(rec)
    return out[0], out[1]


def population(pipe: Pipeline, states: Iterable[RecordState], chunk: int = 4096) -> tuple[FrequencyTable, set[str]]:
    """Term-frequency counts over stored records (Redis `load_states`) and their ids, for a server with no
    stream of its own: its pairs are then judged against what the service had seen when this was built.
    Reads the same keyed-hash columns the pipeline counts, so the states must come from the same profile
    and hash key."""
    table = FrequencyTable(_rarities(pipe))
    ids: set[str] = set()
    batch: list[RecordState] = []

    def flush() -> None:
        decoded = [decode_payload(s.payload)[0] for s in batch]
        table.observe({k: np.stack([d[k] for d in decoded]) for k in decoded[0]})
        batch.clear()

    for state in states:
        ids.add(state.record_id)
        batch.append(state)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return table, ids


class _Sum:
    """Counts of a population plus a few more records, read through `.get` like a Counter (what
    `FrequencyTable` reads), without copying or changing the population's own counters."""

    def __init__(self, base: Mapping[int, int], extra: Mapping[int, int]) -> None:
        self.base, self.extra = base, extra

    def get(self, key: int, default: int = 0) -> int:
        return self.base.get(key, default) + self.extra.get(key, 0)


def _with(base: FrequencyTable, cols: Columns, take: list[int]) -> FrequencyTable:
    """`base` plus the records at rows `take` of `cols`, as a new read-only table."""
    extra = FrequencyTable(base.rarities)
    if take:
        extra.observe({k: v[take] for k, v in cols.items()})
    view = FrequencyTable(base.rarities)
    view.records = base.records + extra.records
    view.counts = {f: _Sum(base.counts[f], extra.counts[f]) for f in base.counts}  # type: ignore[misc]
    return view


def score_pair(pipe: Pipeline, a: Record, b: Record, frequencies: FrequencyTable | None = None,
               source: str = "stream", known: Container[str] = ()) -> PairScore:
    """Score `b` against `a` as the pipeline scores a candidate pair (query = b, candidate = a).

    `pipe` only lends its encoders, comparator and fuser: its index, store and clusters are not touched,
    so this may run beside a service's decide thread (`Pipeline.encode` holds the encoder lock).

    Rarity: the population is `frequencies` (read only; `source` names it in the answer) plus those of
    `a` and `b` whose ids are not in `known` (the ids it already counts), i.e. what the stream would
    have counted had `b` arrived now, after `a`. With no `frequencies` the population is the pair."""
    cols = pipe.encode([a, b], timed=False)
    first = {k: v[0:1] for k, v in cols.items()}
    second = {k: v[1:2] for k, v in cols.items()}
    if frequencies is None:
        frequencies, known, rarity_source = FrequencyTable(_rarities(pipe)), (), "pair"
    else:
        rarity_source = source
    take = [i for i, r in enumerate((a, b)) if r.record_id not in known and (i == 0 or r.record_id != a.record_id)]
    frequencies = _with(frequencies, cols, take)
    rarity = frequencies.pair_rarity(second, first)
    skip = pipe.comparator.unused_columns
    feats = pipe.comparator.compare({k: v for k, v in second.items() if k not in skip},
                                    {k: v for k, v in first.items() if k not in skip}, rarity)
    # One OpenMP thread for one pair, as the pipeline's fuse step (the limit is per calling thread in
    # OpenMP, so a server thread never changes the stream's): with a pool per request, a loaded host
    # stalled single requests for seconds (benchmarks/bench_api.py).
    with pipe.fuser.thread_limits():
        fused, mods = pipe.fuser.score(feats)
    # A pair the user answered scores as answered, as it does in the stream (`consumer.engine.answers`).
    said = pipe.answers.about(a.record_id, b.record_id) if pipe.answers is not None else None
    if said is not None:
        fused = np.array([YES_SCORE if said else NO_SCORE], np.float32)
    label = int(pipe.fuser.label(fused)[0])
    fuser = pipe.fuser
    return PairScore(
        fused=round(float(fused[0]), 4), decision=LABELS[label],
        scores={m: _num(mods[m][0]) for m in fuser.modalities},
        features={name: _num(feats[0, j]) for j, name in enumerate(pipe.comparator.features)},
        fusion=fuser.version,
        thresholds={"match": float(fuser.match_threshold), "possible": float(fuser.possible_threshold)},
        rarity=rarity_source, answered=None if said is None else ("yes" if said else "no"))


def _rarities(pipe: Pipeline) -> list[Any]:
    return [r for e in pipe.encoders for r in e.contribution.rarity]

