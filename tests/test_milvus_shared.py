"""The shared Milvus index of a `dedup run` group (issue 39), without a server: global ids, the local row map,
hits on records not absorbed yet, collisions, erasure by global id, snapshots. The same adapter against real
servers (Milvus, Kafka, Redis, two members): tests/test_service_milvus.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consumer.engine.index import IndexUnavailable
from consumer.engine.recent import RecentVectors, merge_hits
from consumer.io.milvus_shared import SharedMilvusIndex, global_id, global_ids
from consumer.service.guard import decide_guarded

DIM = 8
KEY = b"k" * 32


class FakeMilvus:
    """What `SharedMilvusIndex` uses of `MilvusIndex`, in memory: an exact search over upserted rows, plus the
    fresh window (as the real one, `RecentVectors`)."""

    def __init__(self) -> None:
        self.dim = DIM
        self.name = "fake"
        self.recent = RecentVectors(DIM, 10.0)
        self.rows: dict[int, np.ndarray] = {}
        self.upserts = 0
        self.deleted: list[int] = []
        self.down = False

    def upsert(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.upserts += len(ids)
        self.rows.update(zip(np.asarray(ids).tolist(), np.asarray(vectors, np.float32)))

    def remove(self, ids: np.ndarray) -> int:
        if self.down:
            raise ConnectionError("milvus away")
        for g in np.asarray(ids).tolist():
            self.rows.pop(g, None)
            self.deleted.append(g)
        self.recent.remove(ids)
        return len(ids)

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.down:
            raise ConnectionError("milvus away")
        gids = np.array(sorted(self.rows), np.int64)
        ids = np.full((len(vectors), k), -1, np.int64)
        sims = np.zeros((len(vectors), k), np.float32)
        if len(gids):
            score = vectors @ np.stack([self.rows[g] for g in gids.tolist()]).T
            top = np.argsort(-score, axis=1)[:, :k]
            ids[:, :top.shape[1]] = gids[top]
            sims[:, :top.shape[1]] = np.take_along_axis(score, top, axis=1)
        r_ids, r_sims = self.recent.search(vectors, k)
        return merge_hits(ids, sims, r_ids, r_sims, k)

    def memory_bytes(self) -> int:
        return 0

    def close(self) -> None:
        pass


def unit(n: int, seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def member(record_ids: list[str]) -> tuple[SharedMilvusIndex, FakeMilvus]:
    inner = FakeMilvus()
    idx = SharedMilvusIndex(inner, KEY)  # type: ignore[arg-type]
    idx.bind(record_ids)
    return idx, inner


def test_global_ids_are_keyed_stable_63_bit_and_tombstones_have_none() -> None:
    a = global_id("cust-1", KEY)
    assert a == global_id("cust-1", KEY) and 0 <= a < 2**63
    assert a != global_id("cust-1", b"x" * 32) and a != global_id("cust-2", KEY)
    assert global_ids(["cust-1", "", "cust-2"], KEY).tolist() == [a, -1, global_id("cust-2", KEY)]


def test_members_agree_on_ids_insert_once_and_map_hits_to_their_own_rows() -> None:
    """Member A decides r0..r4 (publishes them), member B absorbs them in another row order: both find them,
    each under its own rows, and nothing was written twice."""
    vecs = unit(6)
    ids_a, ids_b = [f"r{i}" for i in range(5)], ["other", "r4", "r3", "r2", "r1", "r0"]
    a, milvus = member(ids_a)
    a.publish(vecs[:5], ids_a)
    a.add(vecs[:5], np.arange(5))
    b = SharedMilvusIndex(milvus, KEY)  # type: ignore[arg-type]  # the same collection
    b.bind(ids_b)
    b.add(vecs[[5, 4, 3, 2, 1, 0]], np.arange(6))  # absorbed: no write
    assert milvus.upserts == 5 and len(milvus.rows) == 5
    assert a.query(vecs[2:3], 1)[0][0, 0] == 2 and b.query(vecs[2:3], 1)[0][0, 0] == 3
    assert len(a) == 5 and len(b) == 6


def test_a_hit_on_a_record_not_absorbed_yet_is_left_out_not_a_crash() -> None:
    vecs = unit(3)
    a, milvus = member(["x", "y"])
    a.publish(vecs[:2], ["x", "y"])
    a.add(vecs[:2], np.arange(2))
    b = SharedMilvusIndex(milvus, KEY)  # type: ignore[arg-type]
    b.bind(["x"])
    b.add(vecs[:1], np.arange(1))  # y was decided by A a moment ago: B has not absorbed it
    ids, sims = b.query(vecs[1:2], 3)
    assert ids[0].tolist() == [0, -1, -1] and sims[0, 1:].tolist() == [0.0, 0.0]


def test_a_collision_is_detected_and_counted() -> None:
    idx, _ = member(["a", "b-colliding"])
    gid = global_id("a", KEY)
    idx.add(unit(1), np.arange(1))
    # Row 1 stands for another record id with the same global id (odds of 2^-63 are not testable directly).
    idx._map(np.array([1]), np.array([gid]))  # noqa: SLF001 - the collision path itself
    assert idx.collisions == 1 and idx.row_of_gid(gid) == 1


def test_an_id_sent_again_after_its_erasure_is_not_a_collision() -> None:
    ids = ["a"]
    idx, milvus = member(ids)
    idx.add(unit(1), np.arange(1))
    assert idx.remove(np.array([0])) == 1 and milvus.deleted == [global_id("a", KEY)]
    ids[0] = ""
    ids.append("a")
    idx.add(unit(1), np.array([1]))
    assert idx.collisions == 0 and idx.row_of_gid(global_id("a", KEY)) == 1


def test_erasure_deletes_by_global_id_and_hides_the_row() -> None:
    vecs = unit(3)
    ids = ["p", "q", "r"]
    idx, milvus = member(ids)
    idx.publish(vecs, ids)
    idx.add(vecs, np.arange(3))
    assert idx.remove(np.array([1])) == 1
    assert global_id("q", KEY) not in milvus.rows and 1 not in idx.query(vecs[1:2], 3)[0]
    assert idx.remove(np.array([1])) == 0  # twice: nothing left to delete


def test_a_snapshot_holds_no_vectors_and_loading_it_rebuilds_the_map(tmp_path: Path) -> None:
    vecs = unit(4)
    ids = ["a", "b", "", "d"]  # row 2: an erased row's tombstone
    idx, milvus = member(ids)
    idx.publish(vecs[[0, 1, 3]], ["a", "b", "d"])
    idx.save(str(tmp_path / "index.bin"))
    assert "milvus-shared" in (tmp_path / "index.bin").read_text()
    again = SharedMilvusIndex(milvus, KEY)  # type: ignore[arg-type]
    again.bind(ids)
    again.load(str(tmp_path / "index.bin"), capacity=16)
    assert len(again) == 4 and again.query(vecs[3:4], 1)[0][0, 0] == 3
    assert again.held_ids().tolist() == sorted(global_id(r, KEY) for r in ("a", "b", "d"))


def test_the_fresh_window_keeps_only_the_newest_rows_past_its_cap() -> None:
    recent = RecentVectors(DIM, 10.0, max_rows=5)
    recent.add(unit(4), np.arange(4))
    recent.add(unit(4, seed=4), np.arange(4, 8))
    assert len(recent) == 5 and sorted(recent.search(unit(1), 8)[0][0][:5].tolist()) == [3, 4, 5, 6, 7]
    recent.add(unit(20, seed=5), np.arange(100, 120))  # a start-up load: only the newest are copied
    assert len(recent) == 5 and set(recent.search(unit(1), 8)[0][0][:5].tolist()) == set(range(115, 120))


def test_milvus_away_is_not_the_records_fault() -> None:
    """A search while Milvus is away raises `IndexUnavailable` (the service retries the batch, as while Redis is
    away: never dead letters); an erasure's delete is deferred to the member's next write, the row hidden
    here at once."""
    vecs = unit(2)
    ids = ["a", "b"]
    idx, milvus = member(ids)
    idx.publish(vecs, ids)
    idx.add(vecs, np.arange(2))
    milvus.down = True
    with pytest.raises(IndexUnavailable):
        idx.query(vecs, 2)
    assert idx.remove(np.array([0])) == 1 and global_id("a", KEY) in milvus.rows  # not deleted yet
    milvus.down = False
    assert 0 not in idx.query(vecs[:1], 2)[0]
    idx.publish(vecs[1:], ["b"])  # the next write retries the delete
    assert global_id("a", KEY) not in milvus.rows


def test_the_guard_undoes_and_reraises_an_unavailable_index_instead_of_dead_lettering() -> None:
    class Pipe:
        def __init__(self) -> None:
            self.store: list[int] = []

        def process(self, records: Any, encoded: Any = None) -> list[Any]:
            self.store.append(1)  # the store grew before the search failed
            raise IndexUnavailable("ConnectionError")

    pipe = Pipe()
    undone: list[list[Any]] = []

    def rollback(accepted: list[list[Any]]) -> None:
        undone.append(accepted)
        pipe.store.clear()

    with pytest.raises(IndexUnavailable):
        decide_guarded(lambda: pipe, ["r1", "r2"], None, rollback)  # type: ignore[arg-type, list-item]
    assert undone == [[]] and pipe.store == []
