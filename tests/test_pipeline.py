"""The core path end to end: determinism, batch-size independence, replays, state restore, the seed CRM."""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

from consumer.config import Settings, load_settings
from consumer.engine.records import Record
from consumer.engine.state import record_states, restore
from consumer.generate import write_crm
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records

SEED_CRM = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed-crm" / "Simulated_CRM_Dataset.csv"


@pytest.fixture(scope="module")
def crm_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("crm")
    write_crm(d / "crm.csv", d / "truth.csv", 1500, 5)
    return d / "crm.csv", d / "truth.csv"


def records(path: Path, settings: Settings) -> list[Record]:
    return [r for _, r in iter_records(path, settings) if isinstance(r, Record)]


def run(recs: list[Record], settings: Settings, batch: int) -> list[dict[str, object]]:
    pipe = build_pipeline(settings)
    out: list[dict[str, object]] = []
    for i in range(0, len(recs), batch):
        out += [d.to_dict() for d in pipe.process(recs[i: i + batch])]
    return out


def test_same_file_same_order_same_clusters_and_ids(crm_file: tuple[Path, Path]) -> None:
    s = load_settings(env={})
    recs = records(crm_file[0], s)
    assert run(recs, s, 256) == run(recs, s, 256)


def test_background_encoding_and_index_inserts_decide_identically(crm_file: tuple[Path, Path]) -> None:
    """`process_stream` (encoder, HNSW inserts and the next batch's HNSW search on their own threads, as
    `dedup batch` and `dedup run` use it) gives exactly the decisions of plain batch-by-batch `process`."""
    s = load_settings(env={})
    recs = records(crm_file[0], s)
    pipe = build_pipeline(s, encode_in_background=True)
    streamed = [d.to_dict() for _, ds in pipe.process_stream(recs[i: i + 128] for i in range(0, len(recs), 128))
                for d in ds]
    assert streamed == run(recs, s, 128)
    assert len(pipe.blocker.index) == len(recs)
    # The index searches ran ahead on the insert thread (every batch but the first).
    batches = -(-len(recs) // 128)
    assert pipe.blocker.ahead_used == batches - 1 and pipe.blocker.ahead_stale == 0


def test_search_run_ahead_uses_the_grown_width_of_the_index_it_searched(crm_file: tuple[Path, Path]) -> None:
    """With k and ef growing with the index (issue 11's `search_width`, here from a few hundred records so a
    small file exercises it), the search run ahead on the insert thread asks exactly what the deciding
    thread would: same decisions as plain `process`."""
    s = load_settings(env={"DEDUP_INDEX__K_FROM": "200", "DEDUP_INDEX__EF_FROM": "100",
                           "DEDUP_INDEX__K_GROWTH": "0.5", "DEDUP_INDEX__EF_GROWTH": "0.5"})
    recs = records(crm_file[0], s)
    pipe = build_pipeline(s, encode_in_background=True)
    streamed = [d.to_dict() for _, ds in pipe.process_stream(recs[i: i + 128] for i in range(0, len(recs), 128))
                for d in ds]
    assert streamed == run(recs, s, 128)
    assert pipe.blocker.ahead_used == -(-len(recs) // 128) - 1
    assert pipe.blocker.k_for(len(recs)) > s.index.k  # the width did grow


def test_records_joining_a_waiting_batch_decide_as_one_batch(crm_file: tuple[Path, Path]) -> None:
    """The service's join (records polled while a batch waits are added to it, `encode_in_worker(..., joining=)`):
    the joined encoding extends the waiting one, the search run ahead for the waiting batch serves its rows
    and the joined rows are searched on the deciding thread; decisions are exactly plain `process` on the
    joined batches. A joined record repeating an id of the waiting batch is not encoded twice."""
    s = load_settings(env={})
    recs = records(crm_file[0], s)
    pipe = build_pipeline(s, encode_in_background=True)
    waiting = [recs[i: i + 40] for i in range(0, len(recs), 60)]
    joining = [recs[i + 40: i + 60] for i in range(0, len(recs), 60)]
    joining[3] = joining[3] + [waiting[3][0]]  # a replayed id arriving while its first copy waits
    futures = [pipe.encode_in_worker(waiting[0])]
    got: list[dict[str, object]] = []
    for i in range(len(waiting)):
        joined = pipe.encode_in_worker(joining[i], joining=futures[i])  # the service joins, then decides at once
        encoded = joined.result()
        assert encoded.head is futures[i].result() or not joining[i]
        assert len(set(encoded.record_ids)) == len(encoded.record_ids)
        if i + 1 < len(waiting):
            futures.append(pipe.encode_in_worker(waiting[i + 1]))  # polled while this one is decided
        got += [d.to_dict() for d in pipe.process(waiting[i] + joining[i], encoded)]
    plain = build_pipeline(s)
    expected = [d.to_dict() for i in range(len(waiting)) for d in plain.process(waiting[i] + joining[i])]
    assert got == expected
    assert pipe.blocker.ahead_used >= len(waiting) - 2 and pipe.blocker.ahead_stale == 0


def test_batch_boundaries_do_not_change_clusters(crm_file: tuple[Path, Path]) -> None:
    s = load_settings(env={})
    recs = records(crm_file[0], s)
    a = {d["record_id"]: d["cluster_id"] for d in run(recs, s, 256)}
    b = {d["record_id"]: d["cluster_id"] for d in run(recs, s, 97)}
    same = sum(a[k] == b[k] for k in a) / len(a)
    assert same >= 0.995, same


def test_replayed_ids_change_nothing(crm_file: tuple[Path, Path]) -> None:
    s = load_settings(env={})
    recs = records(crm_file[0], s)[:400]
    pipe = build_pipeline(s)
    first = [d.to_dict() for d in pipe.process(recs)]
    again = pipe.process(recs[:50] + recs[:50])
    assert all(d.outcome == "replay" for d in again)
    assert [d.cluster_id for d in again[:50]] == [d["cluster_id"] for d in first[:50]]
    assert len(pipe.store) == 400


def test_restore_from_persisted_state_decides_identically(crm_file: tuple[Path, Path]) -> None:
    s = load_settings(env={})
    recs = records(crm_file[0], s)
    a = build_pipeline(s)
    for i in range(0, 1000, 200):
        a.process(recs[i: i + 200])
    b = build_pipeline(s, text_encoder=a.text)
    restore(b, record_states(a, range(len(a.store))))
    assert [d.to_dict() for d in a.process(recs[1000:])] == [d.to_dict() for d in b.process(recs[1000:])]


def test_decisions_explain_with_per_modality_scores(crm_file: tuple[Path, Path]) -> None:
    s = load_settings(env={})
    out = run(records(crm_file[0], s), s, 256)
    dup = next(d for d in out if d["decision"] == "duplicate")
    m = dup["matches"][0]
    assert set(m["scores"]) == {"text", "name", "city", "behaviour", "device"}
    assert 0.0 <= m["fused"] <= 1.0 and m["decision"] == "match"


@pytest.mark.parametrize("fusion", ["rule", "learned"])
def test_seed_crm_all_23_pairs_and_no_false_pair(fusion: str) -> None:
    if not SEED_CRM.exists():
        pytest.skip("shared seed CRM file not present")
    s = load_settings(env={})
    s = dataclasses.replace(s, fusion=dataclasses.replace(s.fusion, mode=fusion))
    out = run(records(SEED_CRM, s), s, 256)
    # Ground truth per the data README: duplicates share a byte-identical login_times string.
    with SEED_CRM.open(newline="") as fh:
        groups: dict[str, list[str]] = defaultdict(list)
        for row in csv.DictReader(fh):
            groups[row["login_times"]].append(row["customer_id"])
    truth = {rid: key for key, ids in groups.items() for rid in ids}
    cluster = {d["record_id"]: d["cluster_id"] for d in out}
    ids = sorted(cluster)
    pred = {(a, b) for i, a in enumerate(ids) for b in ids[i + 1:] if cluster[a] == cluster[b]}
    gold = {(a, b) for i, a in enumerate(ids) for b in ids[i + 1:] if truth[a] == truth[b]}
    assert len(gold) == 23
    assert pred == gold


def test_pipeline_is_pure_and_its_thread_limit_is_scoped(crm_file: tuple[Path, Path]) -> None:
    """`Pipeline(...)` loads nothing (artifacts are handed in by `consumer.io.artifacts`), and the learned
    model's one-OpenMP-thread limit holds only while the pipeline fuses, not for the whole process."""
    from threadpoolctl import threadpool_info

    from consumer.engine.pipeline import Pipeline
    from consumer.io.artifacts import load_artifacts

    s = load_settings(env={})
    assert s.fusion.mode == "learned"
    with pytest.raises(ValueError, match="text encoder"):
        Pipeline(s)
    art = load_artifacts(s)
    with pytest.raises(ValueError, match="loaded model"):
        Pipeline(s, art.text_encoder)

    def omp() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]

    # The packaged model predicts with numpy trees and never imports scikit-learn; load the OpenMP runtime
    # here, as a process that also holds scikit-learn has it, so the test does not depend on test order.
    import sklearn.ensemble  # noqa: F401

    before = omp()
    with Pipeline(s, art.text_encoder, art.model) as pipe:
        pipe.process(records(crm_file[0], s)[:64])
        assert before and omp() == before  # nothing left behind by construction or by deciding
        with pipe.fuser.thread_limits():
            assert all(n == 1 for n in omp())
        assert omp() == before
