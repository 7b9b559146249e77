"""One stage timer and one stage vocabulary for the pipeline, `dedup batch`, the benchmarks and the service.

Why one place: stage times used to be written by the pipeline under one set of names, diffed in the
service under another ("compare" became "score", the encoders' timers were summed into "encode"), and
summed again by hand in the benchmark. Now the pipeline's `StageTimer` owns the seconds, the names below
are the only names, and the service's `dedup_stage_seconds{stage}` uses them unchanged.

    encode_<encoder>  one per encoder of the profile (or the encoder's declared `stage`)
    candidates        HNSW knn (unless run ahead) + held-batch and same-batch candidates
    compare           pair features (vectorised)
    fuse              rule or learned fusion
    cluster           incremental clustering and keeper, record by record
    index_add         index inserts (cumulative; on a background thread when the blocker runs one)
    index_wait        time the deciding thread waited for a background insert or search (cumulative)
    index_search      index searches run ahead on the insert thread (cumulative; the deciding thread's own
                      searches, when one was not run ahead, count in `candidates`)
    decode, redis, produce   the service's own stages around the pipeline
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

__all__ = ["DECIDE_STAGES", "INDEX_STAGES", "SERVICE_STAGES", "StageTimer", "encode_stage"]

#: Stages timed on the deciding thread, per micro-batch, in order.
DECIDE_STAGES: tuple[str, ...] = ("candidates", "compare", "fuse", "cluster")
#: Cumulative index-insert counters (set, not added: the blocker keeps the running totals).
INDEX_STAGES: tuple[str, ...] = ("index_add", "index_wait", "index_search")
#: Stages only the streaming service has (timed around the pipeline, straight into its histogram).
SERVICE_STAGES: tuple[str, ...] = ("decode", "redis", "produce")


def encode_stage(encoder_name: str, declared: str = "") -> str:
    """The timer name of an encoder: its declared `Contribution.stage`, else `encode_<name>`."""
    return declared or f"encode_{encoder_name}"


class StageTimer:
    """Cumulative seconds per stage. Not locked: each stage is written by one thread (the encoders' by the
    encode worker under the pipeline's encode lock, the others by the deciding thread)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def set(self, stage: str, seconds: float) -> None:
        """For totals kept elsewhere (the blocker's index-insert counters)."""
        self.seconds[stage] = seconds

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0

    def totals(self) -> dict[str, float]:
        """A copy of the running totals (what `dedup batch` reports and what `since` diffs against)."""
        return dict(self.seconds)

    def since(self, before: Mapping[str, float], stages: Iterable[str]) -> dict[str, float]:
        """Seconds each of `stages` took since `before` (a `totals()`), 0.0 for stages that did not run."""
        return {s: self.seconds.get(s, 0.0) - before.get(s, 0.0) for s in stages}
