"""Milvus memory per vector with the index `index.backend = "milvus"` builds, measured on a real server.

    python benchmarks/milvus_sizing.py                       # 20k and 100k vectors of 248 floats (CRM)
    python benchmarks/milvus_sizing.py --dim 576 --sizes 20000   # listings' composite vector

Why measure instead of quoting Milvus's sizing tool: the figure the docs' sizing table (docs/scale-out.md,
*Sizing*) multiplies by 10M-1B records should come from the collection layout and HNSW parameters this
code uses (`consumer.io.milvus_index.MilvusIndex`: INT64 id + FLOAT_VECTOR, metric IP, HNSW with
`index.m` / `index.ef_construction`), on the server the tests use.

How: starts the `milvus` wheel's standalone server the way tests/test_milvus_index.py does (the harness's
`OwnedMilvus`), creates one collection per size through `MilvusIndex` itself, inserts N random unit vectors,
flushes and waits for the HNSW index. Then it *restarts* the server on the same data dir, so the memory
before a load is a clean process (insert buffers and index builds leave allocator pages behind that a
release would not return), and loads the collections one by one, reading after each:

- the RSS of the server's processes (/proc/<pid>/status VmRSS, the pid and its children), and
- Milvus's own estimate of the loaded segments (`utility.get_query_segment_info`: `mem_size`; the 2.3.5
  server of the wheel reports 0 for sealed segments, so the RSS is the figure to use).

Bytes per vector = growth / N. The standalone server is every Milvus role in one process, so the RSS growth
of a load is the query node's share (what a cluster's query nodes need), measured at one replica. Before the
restart it also reads what the collections left on disk, per vector over all sizes: the segment files
(`insert_log`, `index_files`, `stats_log`: object storage, MinIO/S3, in a cluster) and the message queue
(`rocksmq` here; Pulsar or Kafka in a cluster), which keeps inserts for its retention (3 days by default).
Bounded: ~1-2 minutes on 2 cores for the defaults. Vectors are random (only their count, size and the
graph's degree matter for memory); no record value is involved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness.milvus import OwnedMilvus  # noqa: E402

from consumer.config import IndexSettings  # noqa: E402
from consumer.io.milvus_index import MilvusIndex  # noqa: E402


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants (the wheel may wrap the binary), from /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return total


def server_pid(server: OwnedMilvus) -> int:
    """The pid of the standalone process the harness started."""
    return int(server._server.server_proc.pid)  # noqa: SLF001 - the harness exposes no pid of its own


def settle(pid: int, seconds: float = 3.0) -> int:
    """RSS once it stopped moving much: the lowest of a few reads over `seconds` (background flushes and
    time ticks make single reads jitter)."""
    reads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reads.append(rss_bytes(pid))
        time.sleep(0.5)
    return min(reads)


def disk_bytes(path: Path) -> int:
    """Bytes of the files under `path` (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def build(uri: str, name: str, n: int, dim: int, settings: IndexSettings, seed: int) -> float:
    """Create the collection through the code's own adapter, insert `n` unit vectors, flush, wait for the
    index; returns the seconds it took."""
    t0 = time.perf_counter()
    idx = MilvusIndex(dim, uri=uri, collection=name, fresh_seconds=0, m=settings.m,
                      ef_construction=settings.ef_construction, ef=settings.ef, recreate=True, timeout=300)
    rng = np.random.default_rng(seed)
    step = 10_000
    for lo in range(0, n, step):
        rows = rng.normal(size=(min(step, n - lo), dim)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        idx.add(rows, np.arange(lo, lo + len(rows)))
    from pymilvus import Collection, utility

    coll = Collection(name, using=idx.alias)
    coll.flush(timeout=300)
    utility.wait_for_index_building_complete(name, using=idx.alias, timeout=600)
    coll.release(timeout=300)
    idx.close()
    return time.perf_counter() - t0


def measure(sizes: list[int], dim: int, seed: int) -> list[dict[str, Any]]:
    """Build one collection per size, restart the server, load them one by one; one result row per size."""
    settings = IndexSettings()
    data_dir = Path(tempfile.mkdtemp(prefix="milvus-sizing-"))
    prefix = f"sizing_{uuid.uuid4().hex[:8]}"
    names = {n: f"{prefix}_{n}_d{dim}" for n in sizes}
    server = OwnedMilvus(data_dir=data_dir).start()
    try:
        built = {n: build(server.uri, names[n], n, dim, settings, seed) for n in sizes}
        time.sleep(3)  # let the last binlogs and index files land
        data = data_dir / "data"
        total = sum(sizes)
        disk = {f"{part}_bytes_per_vector": round(disk_bytes(data / part) / total)
                for part in ("insert_log", "index_files", "stats_log", "delta_log", "rocksmq")}
        print(json.dumps({"disk_over_vectors": total, "dim": dim, **disk}))
        server.stop()
        server.start()  # a clean process: nothing loaded, no insert buffers
        from pymilvus import Collection, connections, utility

        connections.connect(alias="sizing", uri=server.uri, timeout=60)
        pid = server_pid(server)
        rows = []
        before = settle(pid)
        for n in sizes:
            t0 = time.perf_counter()
            Collection(names[n], using="sizing").load(timeout=600)
            load_s = time.perf_counter() - t0
            after = settle(pid)
            segs = utility.get_query_segment_info(names[n], using="sizing")
            mem = sum(s.mem_size for s in segs)
            rows.append({"vectors": n, "dim": dim, "m": settings.m, "ef_construction": settings.ef_construction,
                         "build_seconds": round(built[n], 1), "load_seconds": round(load_s, 1),
                         "segments": len(segs), "indexed_segments": sum(1 for s in segs if s.index_name),
                         "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
                         "rss_bytes_per_vector": round((after - before) / n),
                         "segment_mem_bytes_per_vector": round(mem / n),
                         "raw_vector_bytes": dim * 4})
            before = after
        connections.disconnect("sizing")
        return rows
    finally:
        server.close()
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--dim", type=int, default=248, help="composite vector size (crm-signup 248, listing 576, "
                                                         "person 800: Blocker.spec of each profile)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    for row in measure(sorted(args.sizes), args.dim, args.seed):
        print(json.dumps(row))
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
