"""The Milvus candidate index (issue 39) against a real Milvus server (the harness starts the `milvus` wheel's
standalone server once per session, or uses $MILVUS_URI): same neighbours as hnswlib, fresh inserts found at
once under Bounded consistency, other clients' inserts found after the bound, erasures gone at once, one
collection per profile/key/size, and `dedup batch` giving the clusters of the embedded index.

The window of recent rows (`consumer.engine.recent`) is pure and tested here without a server too.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from consumer.cli import main
from consumer.config import ConfigError, load_settings
from consumer.engine.index import CandidateIndex
from consumer.engine.recent import RecentVectors, merge_hits
from consumer.evaluation.evaluate import cluster_scores, load_truth
from consumer.io.batch import run_batch
from consumer.io.milvus_index import MilvusIndex, collection_name, milvus_index_factory

DIM = 64
#: Milvus's default graceful time (`common.gracefulTime`): the most a Bounded search may lag behind writes.
GRACEFUL_SECONDS = 5.0


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(7).normal(size=(3000, DIM)))


@pytest.fixture
def collection(milvus_uri: str) -> Iterator[str]:
    """A collection name of this test's own; dropped afterwards (the server is shared by the session)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    from pymilvus import connections, utility

    connections.connect(alias=name, uri=milvus_uri)
    try:
        for found in utility.list_collections(using=name):
            if found.startswith(name):
                utility.drop_collection(found, using=name)
    finally:
        connections.disconnect(name)


def index(uri: str, name: str, **kwargs: object) -> MilvusIndex:
    kwargs.setdefault("recreate", False)
    return MilvusIndex(DIM, uri=uri, collection=name, **kwargs)  # type: ignore[arg-type]


# -- the window of recent rows, no server -------------------------------------------------------------------
def test_recent_rows_are_searched_exactly_until_the_window_passes(vectors: np.ndarray) -> None:
    now = [100.0]
    recent = RecentVectors(DIM, seconds=10, clock=lambda: now[0])
    recent.add(vectors[:50], np.arange(50))
    ids, sims = recent.search(vectors[:5], 3)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(sims[:, 0], 1, atol=1e-5)
    assert recent.remove(np.array([1, 999])) == 1 and recent.hidden() == [1, 999]
    assert 1 not in recent.search(vectors[1:2], 50)[0]
    now[0] += 10.5  # older than the window: the index shows them by itself now
    assert len(recent) == 0 and recent.hidden() == [] and (recent.search(vectors[:1], 3)[0] == -1).all()


def test_merged_hits_keep_each_row_once_with_its_best_similarity() -> None:
    a_ids, a_sims = np.array([[5, 7, -1]]), np.array([[0.9, 0.5, 0.0]], np.float32)
    b_ids, b_sims = np.array([[7, 3, -1]]), np.array([[0.8, 0.6, 0.0]], np.float32)
    ids, sims = merge_hits(a_ids, a_sims, b_ids, b_sims, 4)
    assert ids.tolist() == [[5, 7, 3, -1]] and np.allclose(sims, [[0.9, 0.8, 0.6, 0.0]])


def test_missing_pymilvus_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # `import pymilvus` now raises ImportError
    settings = load_settings(env={"DEDUP_INDEX__BACKEND": "milvus"})
    with pytest.raises(ConfigError, match=r"pip install 'dedup-stream\[milvus\]'"):
        milvus_index_factory(settings, recreate=True)


def test_credentials_tls_and_ca_reach_the_pymilvus_connection(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """What the chart renders (token or user/password from a Secret, TLS, a mounted CA) arrives in
    `connections.connect` as pymilvus names it: the CA as `server_pem_path` (one-way TLS). No server: the
    connection is stopped right there."""
    pymilvus = pytest.importorskip("pymilvus")
    seen: list[dict[str, object]] = []

    class Stop(Exception):
        pass

    def connect(**kwargs: object) -> None:
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(pymilvus.connections, "connect", connect)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_HOST": "milvus", "DEDUP_INDEX__MILVUS_TLS": "true",
           "DEDUP_INDEX__MILVUS_TOKEN": "root:Milvus", "DEDUP_INDEX__MILVUS_CA_FILE": str(ca),
           "DEDUP_INDEX__MILVUS_TIMEOUT_SECONDS": "7"}
    settings = load_settings(env=env)
    assert settings.fingerprint() == load_settings(env={**env, "DEDUP_INDEX__MILVUS_CA_FILE": ""}).fingerprint()
    with pytest.raises(Stop):
        milvus_index_factory(settings, recreate=False)(DIM).query(np.ones((1, DIM), np.float32), 1)
    args = seen[-1]
    assert {k: args[k] for k in ("uri", "token", "secure", "server_pem_path", "timeout")} == {
        "uri": "https://milvus:19530", "token": "root:Milvus", "secure": True, "server_pem_path": str(ca),
        "timeout": 7.0}
    plain = load_settings(env={"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_USER": "u",
                               "DEDUP_INDEX__MILVUS_PASSWORD": "p"})
    with pytest.raises(Stop):
        milvus_index_factory(plain, recreate=False)(DIM).query(np.ones((1, DIM), np.float32), 1)
    assert "server_pem_path" not in seen[-1] and (seen[-1]["user"], seen[-1]["password"], seen[-1]["secure"]) == \
        ("u", "p", False)
    with pytest.raises(ConfigError, match="not a readable file"):  # at start, not at the first search
        milvus_index_factory(load_settings(env={**env, "DEDUP_INDEX__MILVUS_CA_FILE": str(tmp_path / "no.pem")}),
                             recreate=False)
    with pytest.raises(ConfigError, match="TLS is off"):
        load_settings(env={**env, "DEDUP_INDEX__MILVUS_TLS": "false"})


def test_the_embedded_default_never_imports_pymilvus() -> None:
    code = ("import sys; import consumer.io.batch, consumer.io.artifacts, consumer.engine.pipeline, consumer.cli;"
            " assert 'pymilvus' not in sys.modules, 'pymilvus imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_settings_from_the_environment_and_dedup_run_without_pymilvus(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    env = {"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_URI": "https://milvus.example:19530",
           "DEDUP_INDEX__MILVUS_CONSISTENCY": "Session", "DEDUP_INDEX__MILVUS_TLS": "true",
           "DEDUP_INDEX__MILVUS_TOKEN": "root:secret", "DEDUP_INDEX__MILVUS_FRESH_SECONDS": "12.5"}
    s = load_settings(env=env)
    assert (s.index.backend, s.index.milvus_consistency, s.index.milvus_tls, s.index.milvus_fresh_seconds) == \
        ("milvus", "Session", True, 12.5)
    default = load_settings(env={})
    assert load_settings(env={"DEDUP_INDEX__MILVUS_TOKEN": "x"}).fingerprint() == default.fingerprint()
    assert s.fingerprint() != default.fingerprint()  # the backend is a decision setting once chosen
    assert load_settings(env={**env, "DEDUP_INDEX__MILVUS_TOKEN": "y"}).fingerprint() == s.fingerprint()
    with pytest.raises(ConfigError, match="not one of"):
        load_settings(env={"DEDUP_INDEX__BACKEND": "faiss"})
    with pytest.raises(ConfigError, match="milvus_collection_prefix"):
        load_settings(env={"DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": "no-dashes"})
    monkeypatch.setenv("DEDUP_INDEX__BACKEND", "milvus")  # accepted by `dedup run` (a shared collection) ...
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # ... but without pymilvus it stops at once, one line
    assert main(["run", "--insecure-default-key"]) == 2
    assert "pip install 'dedup-stream[milvus]'" in capsys.readouterr().err


# -- against the server ----------------------------------------------------------------------------------------
def test_knn_agrees_with_hnswlib_on_the_same_vectors(milvus_uri: str, collection: str,
                                                     vectors: np.ndarray) -> None:
    base, queries = vectors[:2500], unit(vectors[:300] + 0.35 * vectors[2500:2800])  # near, not equal
    milvus = index(milvus_uri, collection, recreate=True)
    hnsw = CandidateIndex(DIM, m=12, ef_construction=64, ef=128)
    t0 = time.perf_counter()
    for lo in range(0, len(base), 256):  # micro-batches, as the Blocker inserts
        milvus.add(base[lo:lo + 256], np.arange(lo, min(lo + 256, len(base))))
        hnsw.add(base[lo:lo + 256], np.arange(lo, min(lo + 256, len(base))))
    m_ids, m_sims = milvus.query(queries, 10, 128)
    h_ids, _ = hnsw.query(queries, 10, 128)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    print(f"\n2500 inserts + 300 searches: {time.perf_counter() - t0:.2f}s (collection open included)")
    assert (m_ids[:, 0] == h_ids[:, 0]).mean() >= 0.99
    recall = np.mean([len(set(m) & set(e)) / 10 for m, e in zip(m_ids, exact)])
    assert recall >= 0.95, recall
    assert np.allclose(m_sims, np.take_along_axis(queries @ base.T, m_ids, axis=1), atol=1e-4)
    assert (np.diff(m_sims, axis=1) <= 1e-6).all()  # most similar first
    milvus.close()


def test_a_fresh_insert_is_found_at_once_under_bounded_consistency(milvus_uri: str, collection: str,
                                                                   vectors: np.ndarray) -> None:
    writer = index(milvus_uri, collection, recreate=True, consistency="Bounded", fresh_seconds=10)
    writer.add(vectors[:500], np.arange(500))
    bare = index(milvus_uri, collection, consistency="Bounded", fresh_seconds=0)  # Milvus alone
    missed = 0
    for row in range(500, 520):
        writer.add(vectors[row:row + 1], np.array([row]))
        assert writer.query(vectors[row:row + 1], 3)[0][0, 0] == row  # through the window, at once
        missed += bare.query(vectors[row:row + 1], 3)[0][0, 0] != row
    print(f"\nMilvus alone (Bounded) missed {missed}/20 rows searched right after their insert")
    assert len(writer.recent) == 520
    writer.close()
    bare.close()


def test_another_client_finds_the_inserts_within_the_bound(milvus_uri: str, collection: str,
                                                           vectors: np.ndarray) -> None:
    writer = index(milvus_uri, collection, recreate=True)
    writer.add(vectors[:10], np.arange(10))  # opens the collection
    other = index(milvus_uri, collection, consistency="Bounded", fresh_seconds=0)
    strong = index(milvus_uri, collection, consistency="Strong", fresh_seconds=0)
    other.query(vectors[:1], 1)
    writer.add(vectors[10:20], np.arange(10, 20))
    t0 = time.monotonic()
    assert (strong.query(vectors[10:20], 1)[0][:, 0] == np.arange(10, 20)).all()  # Strong: at once
    while (other.query(vectors[10:20], 1)[0][:, 0] != np.arange(10, 20)).any():
        assert time.monotonic() - t0 < GRACEFUL_SECONDS + 2, "Bounded search still stale past the bound"
        time.sleep(0.05)
    print(f"\nvisible to a second Bounded client after {time.monotonic() - t0:.2f}s")
    for i in (writer, other, strong):
        i.close()


def test_an_erased_vector_is_gone_from_search_and_query_at_once(milvus_uri: str, collection: str,
                                                                vectors: np.ndarray) -> None:
    writer = index(milvus_uri, collection, recreate=True, consistency="Bounded")
    writer.add(vectors[:200], np.arange(200))
    time.sleep(GRACEFUL_SECONDS + 0.5)  # old enough to be served by Milvus itself, not only the window
    other = index(milvus_uri, collection, consistency="Strong", fresh_seconds=0)
    assert other.stored(np.array([3, 4])) == {3, 4}
    assert writer.remove(np.array([3, 4])) == 2
    for idx in (writer, other):
        ids, _ = idx.query(vectors[3:5], 20)
        assert not {3, 4} & set(ids.ravel().tolist())
    assert other.stored(np.array([3, 4, 5])) == {5}
    writer.compact(wait_seconds=60)  # rewrites the segments without them (what removes them from disk)
    assert other.stored(np.array([3, 4, 5])) == {5}
    assert not {3, 4} & set(other.query(vectors[3:5], 20)[0].ravel().tolist())
    writer.close()
    other.close()


def test_one_collection_per_profile_key_and_size(milvus_uri: str, collection: str, vectors: np.ndarray) -> None:
    names = {collection_name(collection, p, k, d) for p in ("crm-signup", "listing") for k in ("a", "b")
             for d in (64, 98)}
    assert len(names) == 8 and all(n.replace("_", "").isalnum() for n in names)
    settings = load_settings(env={"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_URI": milvus_uri,
                                  "DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": collection})
    built = milvus_index_factory(settings, recreate=True)(DIM)
    built.add(vectors[:3], np.arange(3))
    assert built.name == collection_name(collection, "crm-signup", settings.encoders.hash_key, DIM)
    from pymilvus import utility

    assert utility.has_collection(built.name, using=built.alias)
    built.close()
    with pytest.raises(ValueError, match="size"):  # a collection of another size is never reused
        MilvusIndex(DIM + 1, uri=milvus_uri, collection=built.name).query(vectors[:1, :1].repeat(DIM + 1, 1), 1)


def test_dedup_batch_with_milvus_gives_the_clusters_of_hnswlib(milvus_uri: str, collection: str,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "crm.csv"
    assert main(["generate", str(src), "-n", "1500", "--seed", "1"]) == 0
    truth = load_truth(tmp_path / "crm.truth.csv")
    runs = {}
    for backend in ("hnswlib", "milvus"):
        env = {"DEDUP_INDEX__BACKEND": backend, "DEDUP_INDEX__MILVUS_URI": milvus_uri,
               "DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": collection}
        t0 = time.perf_counter()
        _, pipe = run_batch(src, tmp_path / f"{backend}.jsonl", load_settings(env=env), progress=False)
        runs[backend] = (pipe.assignments(), cluster_scores(pipe.assignments(), truth).f1,
                         time.perf_counter() - t0)
        if backend == "milvus":  # erasure through the engine: gone from Milvus at once (a Strong read)
            from pymilvus import Collection

            milvus: MilvusIndex = pipe.blocker.index  # type: ignore[assignment]
            victim = next(iter(truth))
            row = pipe.store.row_of[victim]
            got = Collection(milvus.name, using=milvus.alias).query(f"id == {row}", output_fields=["vector"],
                                                                     consistency_level="Strong")
            vec = np.array([got[0]["vector"]], np.float32)
            assert milvus.query(vec, 1)[0][0, 0] == row
            assert pipe.erase([victim])[0].found
            assert milvus.stored(np.array([row])) == set() and row not in milvus.query(vec, 10)[0]
        pipe.close()
    (h_clusters, h_f1, h_s), (m_clusters, m_f1, m_s) = runs["hnswlib"], runs["milvus"]
    print(f"\npairwise F1 hnswlib {h_f1:.4f} ({h_s:.1f}s), milvus {m_f1:.4f} ({m_s:.1f}s); identical clusters: "
          f"{h_clusters == m_clusters}, identical decisions: "
          f"{(tmp_path / 'hnswlib.jsonl').read_bytes() == (tmp_path / 'milvus.jsonl').read_bytes()}")
    assert abs(h_f1 - m_f1) <= 0.01
