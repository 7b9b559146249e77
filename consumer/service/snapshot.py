"""Replica snapshots on a volume: restart from a recent snapshot plus the changelog tail, not from Redis.

Why: rebuilding the replica from Redis re-reads every record's payload and re-inserts every vector into
the HNSW graph (the slow part, single-threaded for reproducibility). A snapshot holds the replica exactly as
it was (rows, signature columns, clusters, keepers, the HNSW graph file) and the changelog position it was
taken at; a starting member loads it and tails the log from there (consumer/service/changelog.py), then becomes
ready. Only signatures, ids and the graph are written: no raw field values (same rule as Redis).

Layout under `service.snapshot_dir`: one folder per snapshot (`snap-<ms>-<rand>/`: `meta.json`,
`state.npz`, `index.bin`) and `CURRENT`, the name of the newest complete one, replaced atomically after the
folder is complete. Any member's snapshot serves every member (each replica holds the whole state), so
members may share a ReadWriteMany volume; the two newest folders are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consumer.engine.pipeline import Pipeline

__all__ = ["SnapshotInfo", "save_snapshot", "load_snapshot", "rss_bytes", "FORMAT"]

FORMAT = 1
_KEEP = 2


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    position: int
    records: int
    meta: dict[str, Any]


def save_snapshot(pipe: Pipeline, position: int, directory: str | Path, meta: dict[str, Any]) -> SnapshotInfo:
    """Write the replica (every row decided or absorbed so far, all of it in Redis) and `position`."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    name = f"snap-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
    tmp = root / (".tmp-" + name)
    tmp.mkdir()
    store, n = pipe.store, len(pipe.store)
    ids = [rid.encode("utf-8", "surrogatepass") for rid in store.record_ids]
    lengths = np.fromiter((len(b) for b in ids), np.int64, count=n)
    # -1: an erased row's tombstone (no id, zeroed columns, deleted in the graph: nothing of it is written)
    cluster_of = pipe.clusters.cluster_of.take(np.arange(n))
    canonical = np.full(n, -1, np.int64)
    for c, k in pipe.canonical.items():
        canonical[c] = k
    arrays = {f"col__{name_}": store.column(name_) for name_ in store.column_names()}
    with open(tmp / "state.npz", "wb") as fh:
        np.savez(fh, ids=np.frombuffer(b"".join(ids), np.uint8), id_len=lengths, cluster_of=cluster_of,
                 canonical=canonical, completeness=store.completeness[:n], recency=store.recency[:n], **arrays)
    pipe.blocker.index.save(str(tmp / "index.bin"))
    full = {**meta, "format": FORMAT, "position": position, "records": n, "created": time.time(),
            "index_spec": index_spec(pipe)}
    (tmp / "meta.json").write_text(json.dumps(full))
    os.replace(tmp, root / name)
    cur = root / f".CURRENT-{uuid.uuid4().hex[:8]}"
    cur.write_text(name)
    os.replace(cur, root / "CURRENT")
    _prune(root, name)
    return SnapshotInfo(root / name, position, n, full)


def _prune(root: Path, keep: str) -> None:
    snaps = sorted((p for p in root.glob("snap-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for old in snaps[_KEEP:]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-snap-*"):  # a writer that died mid-way, more than an hour ago
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 elsewhere): reported with start-up times."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def index_spec(pipe: Pipeline) -> list[list[Any]]:
    """The candidate index's layout (column, dimensions, weight per vector): a saved graph is only usable by
    a pipeline whose vectors have the same layout. Why not the settings' fingerprint alone: the layout is
    the encoders' (code, not settings), and a version that drops a vector from it (the person profile's
    date of birth) must rebuild the graph from Redis, not load one of other dimensions."""
    return [[v.column, int(v.size), float(v.weight)] for v in pipe.blocker.spec]


def load_snapshot(pipe: Pipeline, directory: str | Path, expect: dict[str, Any]) -> SnapshotInfo | None:
    """Fill an empty pipeline from the newest snapshot; None (pipeline untouched) when there is none or it
    was written with other settings (`expect`: config_version, key_id must match)."""
    root = Path(directory)
    try:
        name = (root / "CURRENT").read_text().strip()
        meta = json.loads((root / name / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or any(meta.get(k) != v for k, v in expect.items()):
        return None
    if meta.get("index_spec", index_spec(pipe)) != index_spec(pipe):
        return None
    if len(pipe.store):
        raise ValueError("load_snapshot needs an empty pipeline")
    path = root / name
    with np.load(path / "state.npz") as z:
        if "index_spec" not in meta and {k[5:] for k in z.files if k.startswith("col__")} - pipe.declared_columns:
            return None  # written before the layout was recorded, with columns this version no longer has
        raw = z["ids"].tobytes()
        bounds = np.concatenate([[0], np.cumsum(z["id_len"])])
        ids = [raw[bounds[i]:bounds[i + 1]].decode("utf-8", "surrogatepass") for i in range(len(bounds) - 1)]
        cols = {k[5:]: z[k] for k in z.files if k.startswith("col__")}
        cluster_of, canonical = z["cluster_of"], z["canonical"]
        completeness, recency = z["completeness"], z["recency"]
    n = len(ids)
    if n:
        pipe.store.append(ids, cols, completeness, recency)
        cl = pipe.clusters
        live = np.flatnonzero(cluster_of >= 0)
        cl.cluster_of.assign(live, cluster_of[live])
        order = live[np.argsort(cluster_of[live], kind="stable")]
        keys, starts = np.unique(cluster_of[order], return_index=True)
        for key, part in zip(keys.tolist(), np.split(order, starts[1:])):
            cl.members[key] = part.tolist()
        has = np.flatnonzero(canonical >= 0)
        pipe.canonical.assign(has, canonical[has])
        live_cols = {k: v[live] for k, v in cols.items()}
        pipe.frequencies.observe(live_cols)
        if pipe.keys is not None:  # exact-key candidates: the table rebuilds from the live rows' key columns
            pipe.keys.add(live_cols, live.tolist())
        pipe.blocker.index.load(str(path / "index.bin"), capacity=max(2 * n, 16384))
    return SnapshotInfo(path, int(meta["position"]), n, meta)
