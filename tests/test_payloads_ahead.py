"""Payloads compressed on the encode thread (`Pipeline.payloads_ahead`, the service) are the bytes `snapshot`
would have written on the deciding thread: same columns, same order, same keeper inputs."""

from __future__ import annotations

import pytest

from consumer.config import load_settings
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.generate import write_crm
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    d = tmp_path_factory.mktemp("crm")
    write_crm(d / "crm.csv", d / "truth.csv", 600, 7)
    s = load_settings(env={})
    return [r for _, r in iter_records(d / "crm.csv", s) if isinstance(r, Record)]


def _computed(pipe: Pipeline, rows: list[int]) -> list[bytes]:
    """The payloads encoded from the store, as without anything encoded ahead."""
    stashed, pipe._stashed = pipe._stashed, None
    try:
        return [st.payload for st in pipe.snapshot(rows)]
    finally:
        pipe._stashed = stashed


def test_payloads_encoded_ahead_are_the_snapshot_bytes(recs: list[Record]) -> None:
    s = load_settings(env={})
    pipe = build_pipeline(s, encode_in_background=True)
    pipe.payloads_ahead = True
    used = 0
    batches = [recs[i: i + 50] for i in range(0, len(recs), 50)]
    batches[4] = batches[4] + batches[3][:3]  # replays in a batch: its encoding is taken in part
    futures = [pipe.encode_in_worker(batches[0])]
    for i, batch in enumerate(batches):
        # Records joining a waiting batch, as the service does: the joined encoding carries both parts.
        extra = recs[i * 50 + 45: i * 50 + 50] if i % 3 == 1 else []
        encoded = pipe.encode_in_worker(extra, joining=futures[i]).result() if extra else futures[i].result()
        if i + 1 < len(batches):
            futures.append(pipe.encode_in_worker(batches[i + 1]))
        decisions = pipe.process(batch + extra, encoded)
        rows = [d.row for d in decisions if d.outcome != "replay"]
        if rows:
            used += sum(row in (pipe._stashed or {}) for row in rows)
            assert [st.payload for st in pipe.snapshot(rows)] == _computed(pipe, rows)
    assert used >= len(recs) - 100  # the bytes encoded ahead were what the snapshots used


def test_snapshots_after_an_erasure_keep_the_store_bytes(recs: list[Record]) -> None:
    """An erasure between the decision and its snapshot (a snapshot of the erased row itself is never taken:
    it has no cluster) leaves the other rows' payloads as the store gives them."""
    s = load_settings(env={})
    pipe = build_pipeline(s, encode_in_background=True)
    pipe.payloads_ahead = True
    batch = recs[:40]
    decisions = pipe.process(batch, pipe.encode_in_worker(batch).result())
    rows = [d.row for d in decisions]
    assert rows[5] in (pipe._stashed or {})
    pipe.erase([batch[5].record_id])
    rest = rows[:5] + rows[6:]
    assert [st.payload for st in pipe.snapshot(rest)] == _computed(pipe, rest)


def test_without_payloads_ahead_nothing_is_encoded_on_the_encode_thread(recs: list[Record]) -> None:
    """`dedup batch` persists nothing: the encode thread must not spend time compressing."""
    pipe = build_pipeline(load_settings(env={}), encode_in_background=True)
    encoded = pipe.encode_in_worker(recs[:20]).result()
    assert encoded.payloads is None
    pipe.process(recs[:20], encoded)
    assert pipe._stashed is None
