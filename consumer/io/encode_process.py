"""`dedup batch`'s encoders in a process of their own, where they are Python loops.

Why: the person, address, name and static-text encoders are per-value Python (keyed hashes, trigram bits,
deletion variants), and so is the deciding thread; in one process they take turns holding the GIL, so two
cores ran a generated 50,000-person file at ~1.1-1.5 cores (the GIL held ~20 s of a 22 s run). A second
process encodes with its own interpreter while this one decides and searches. The encoders are
deterministic and batch-invariant, so the columns are the same bits as encoded here
(tests/test_encode_process.py).

Not for profiles with an ONNX model (the transformer, the image model: they release the GIL and run their
own threads already, and a second copy of the model would cost its memory twice), nor for the service, whose
micro-batches are small and whose latency a round trip would add to. If the process cannot start or dies,
encoding goes on here, with the same encoders: slower, never different.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from consumer.config import Settings
from consumer.encoders import needs_image_model, profile_encoders
from consumer.encoders.base import Columns
from consumer.engine.cores import usable_cores
from consumer.engine.records import Record

__all__ = ["MIN_INPUT_BYTES", "PROFILES", "EncoderProcess", "RemoteEncoder", "wants_encoder_process"]

log = logging.getLogger("dedup.batch")

#: The worker's encoders (one process, one pipeline's worth).
_ENCODERS: list[Any] = []


#: Smallest input worth a second process: starting one costs ~1 s of a core (its imports and encoders),
#: which a file of ~10,000 records or more pays back.
MIN_INPUT_BYTES = 1 << 20
#: Profiles that encode in a second process unless `encoders.batch_process` says otherwise. Measured side by
#: side (docs/benchmarks.md): a generated 50,000-person file ~1.5-2 s faster of ~21; 100,000 generated CRM
#: records no faster (x1.01: that run waits on the HNSW index's thread, not on the GIL) for a worker of
#: 118 MB beside a main process 55 MB smaller, so the CRM profile keeps encoding in a thread.
PROFILES = frozenset({"person"})


def wants_encoder_process(settings: Settings, input_bytes: int) -> bool:
    """`encoders.batch_process` (unset: the profile is in `PROFILES`), where it can pay: an input of at least
    `MIN_INPUT_BYTES`, two or more cores, no ONNX model (the transformer, photos), no listing titles (the
    title encoder's per-file variant words are the run's model's, not the worker's to know)."""
    wanted = settings.encoders.batch_process
    if wanted is None:
        wanted = settings.profile.name in PROFILES
    names = set(profile_encoders(settings))
    return (wanted and input_bytes >= MIN_INPUT_BYTES and usable_cores() >= 2 and not needs_image_model(settings)
            and "title" not in names and ("text" not in names or _static_text(settings)))


def _static_text(settings: Settings) -> bool:
    from consumer.encoders.static_text import resolve_backend

    return resolve_backend(settings.encoders.text_backend) == "static"


def _start(settings: Settings) -> None:
    """In the worker: the profile's encoders, built as the pipeline builds them."""
    from consumer.encoders import build_encoders, needs_text_model
    from consumer.io.artifacts import load_text_encoder

    text = load_text_encoder(settings) if needs_text_model(settings) else None
    _ENCODERS[:] = build_encoders(settings, {"text_encoder": text, "image_encoder": None, "variant_slots": None})


def _encode(records: Sequence[Record]) -> list[Columns]:
    """In the worker: every encoder's columns of one batch, in the pipeline's order."""
    return [enc.encode(records) for enc in _ENCODERS]


class EncoderProcess:
    """One worker process running every encoder of a profile, started at once (its imports overlap whatever
    this process does next); calls are answered in order."""

    def __init__(self, settings: Settings):
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, ...], list[Columns]] | None = None
        # spawn, never fork: this process runs threads (the index, the encoder thread, BLAS).
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
            initargs=(settings,))
        try:
            self._pool.submit(len, ())  # start the worker now
        except Exception as exc:  # noqa: BLE001 - no process to be had (a sandbox, no /dev/shm): encode here
            log.warning("encoder process not started; encoding in this process", extra={"error": type(exc).__name__})
            self._shutdown(wait=False)

    @property
    def alive(self) -> bool:
        return self._pool is not None

    def columns(self, index: int, records: Sequence[Record]) -> Columns | None:
        """Encoder `index`'s columns of `records`, or None when the process is gone (encode here). The first
        encoder's call encodes the batch with every encoder, in one round trip; the others' calls for the
        same records take their share."""
        ids = tuple(r.record_id for r in records)
        with self._lock:
            if index and self._last is not None and self._last[0] == ids:
                return self._last[1][index]
            if self._pool is None:
                return None
            try:
                out = self._pool.submit(_encode, list(records)).result()
            except BrokenProcessPool as exc:  # killed, out of memory, could not start: encode here from now on
                log.warning("encoder process gone; encoding in this process", extra={"error": type(exc).__name__})
                self._shutdown(wait=False)
                return None
            self._last = (ids, out)
            return out[index]

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        with self._lock:
            self._shutdown(wait=True)

    def _shutdown(self, wait: bool) -> None:
        pool, self._pool, self._last = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def wrap(self, encoders: Sequence[Any]) -> list[Any]:
        """The pipeline's encoders, encoding in this process's worker (their order is the worker's)."""
        return [RemoteEncoder(e, i, self) for i, e in enumerate(encoders)]


class RemoteEncoder:
    """A pipeline encoder whose `encode` runs in the `EncoderProcess` (here, if that is gone); everything
    else (name, contribution, compare) is the local encoder's."""

    def __init__(self, inner: Any, index: int, process: EncoderProcess):
        self.inner = inner
        self.index = index
        self.process = process

    def encode(self, records: Sequence[Record]) -> Columns:
        cols = self.process.columns(self.index, records)
        return self.inner.encode(records) if cols is None else cols

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
