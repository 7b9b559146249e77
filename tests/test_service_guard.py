"""The poison-pill guard (consumer/service/guard.py) with injected failures on a real pipeline.

Why a unit test beside the service test: the service test uses a value that crashes the core today; once
validation rejects that value, only an injected failure still exercises the guard. Both failure points
matter: before the state append (nothing to undo) and after it (the attempt must be rolled back, and the
accepted records must end up decided exactly as if the poison had never been there).
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.service import crm_rows, shared_text_encoder

from consumer.config import load_settings
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.engine.state import record_states, restore
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records
from consumer.service.guard import decide_guarded, encoded_or_none


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    path, _truth, _rows = crm_rows(300, 7, tmp_path_factory.mktemp("guard"))
    s = load_settings(env={})
    return [r for _, r in iter_records(path, s) if isinstance(r, Record)]


class Boom(RuntimeError):
    pass


def _poisoned(pipe: Pipeline, bad: set[str], where: str) -> None:
    """Make `pipe` raise for the records in `bad`: while encoding (before any state change) or while
    deciding (after the store, index and frequencies took the batch)."""
    if where == "encode":
        enc = pipe.encoders[1]
        orig = enc.encode

        def encode(records: Any) -> Any:
            if any(r.record_id in bad for r in records):
                raise Boom("injected")
            return orig(records)

        enc.encode = encode  # type: ignore[method-assign]
    else:
        orig_decide = pipe._decide

        def decide(rec: Record, *args: Any) -> Any:
            if rec.record_id in bad:
                raise Boom("injected")
            return orig_decide(rec, *args)

        pipe._decide = decide  # type: ignore[method-assign]


@pytest.mark.parametrize("where", ["encode", "decide"])
def test_guard_sets_aside_only_the_poison_and_leaves_no_trace(recs: list[Record], where: str) -> None:
    s = load_settings(env={})
    text = shared_text_encoder()
    history, batch = recs[:150], recs[150:]
    bad = {batch[37].record_id, batch[101].record_id}

    # "Redis": the persisted state before the batch, as the service would reload it.
    seed = build_pipeline(s, text_encoder=text)
    seed.process(history)
    persisted = record_states(seed, range(len(seed.store)))
    holder: dict[str, Pipeline] = {}

    def fresh() -> Pipeline:
        pipe = build_pipeline(s, text_encoder=text)
        restore(pipe, persisted)
        _poisoned(pipe, bad, where)
        return pipe

    def rollback(accepted: list[list[Record]]) -> None:
        holder["pipe"] = fresh()
        for chunk in accepted:
            holder["pipe"].process(chunk)

    holder["pipe"] = fresh()
    result = decide_guarded(lambda: holder["pipe"], batch, None, rollback)

    assert sorted(batch[i].record_id for i, _ in result.failed) == sorted(bad)
    assert {err for _, err in result.failed} == {"Boom"}
    # Reference: the same history, then the same sub-batches, on a pipeline that never saw the poison:
    # identical decisions and state prove the failed attempts left no trace.
    assert [r for c in result.chunks for r in c] == [r for r in batch if r.record_id not in bad]
    ref = build_pipeline(s, text_encoder=text)
    ref.process(history)
    expected = [d.to_dict() for c in result.chunks for d in ref.process(c)]
    assert [d.to_dict() for d in result.decisions] == expected
    assert (result.rollbacks > 0) == (where == "decide")  # encoding fails before any state change
    final = holder["pipe"]
    assert len(final.store) == len(history) + len(batch) - len(bad)
    assert final.assignments() == ref.assignments()


def test_guard_reraises_when_every_record_fails(recs: list[Record]) -> None:
    """Not poison but a broken service: dead-lettering the whole stream would be worse than stopping."""
    s = load_settings(env={})
    pipe = build_pipeline(s, text_encoder=shared_text_encoder())
    _poisoned(pipe, {r.record_id for r in recs[:8]}, "encode")
    with pytest.raises(Boom):
        decide_guarded(lambda: pipe, recs[:8], None, lambda accepted: None)


def test_single_poison_record_batch_is_set_aside(recs: list[Record]) -> None:
    s = load_settings(env={})
    pipe = build_pipeline(s, text_encoder=shared_text_encoder())
    _poisoned(pipe, {recs[0].record_id}, "encode")
    result = decide_guarded(lambda: pipe, recs[:1], None, lambda accepted: None)
    assert result.failed == [(0, "Boom")] and result.decisions == []


def test_failed_ahead_of_time_encoding_falls_back_to_encoding_again() -> None:
    from concurrent.futures import Future

    fut: Future[Any] = Future()
    fut.set_exception(Boom("worker"))
    assert encoded_or_none(fut) is None and encoded_or_none(None) is None


def test_state_of_another_encoder_layout_stops_the_service_instead_of_dead_lettering(recs: list[Record]) -> None:
    """State written by a version whose encoders made other columns (here: one column narrower) cannot take
    this version's records: the first new record raises `LayoutMismatch`, a message saying what to do, and
    the guard re-raises it even for a batch of one rather than setting the record aside as poison."""
    import numpy as np

    from consumer.store.memory import LayoutMismatch

    s = load_settings(env={})
    pipe = build_pipeline(s, text_encoder=shared_text_encoder())
    pipe.process(recs[:4])
    name, arr = next((k, v) for k, v in pipe.store._cols.items() if v.ndim == 2 and v.shape[1] > 1)
    pipe.store._cols[name] = np.ascontiguousarray(arr[:, :-1])  # as an older version wrote it
    with pytest.raises(LayoutMismatch, match="another version of the encoders"):
        decide_guarded(lambda: pipe, recs[4:5], None, lambda accepted: None)
