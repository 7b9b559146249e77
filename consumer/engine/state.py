"""Pipeline state as plain bytes: what a durable store (Redis) persists and what a restart rebuilds from.

The format and `RecordState` live in the leaf module `consumer.store.record_state` (stores import no
engine); the pipeline owns taking and loading its state (`Pipeline.snapshot`, `Pipeline.restore`). These
two functions are the names the service and tests call.
"""

from __future__ import annotations

from collections.abc import Iterable

from consumer.engine.pipeline import Pipeline
from consumer.store.record_state import RecordState

__all__ = ["RecordState", "record_states", "restore"]


def record_states(pipe: Pipeline, rows: Iterable[int]) -> list[RecordState]:
    """Current state of the given rows (after `process`), ready to persist."""
    return pipe.snapshot(rows)


def restore(pipe: Pipeline, states: Iterable[RecordState]) -> int:
    """Load persisted records into a fresh pipeline, in arrival order; returns how many were loaded."""
    return pipe.restore(states)
