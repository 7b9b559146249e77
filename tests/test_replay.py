"""The run replays the fit pass's columns, candidate lists and comparisons (`consumer.engine.replay`): same
decisions, one encoding, one index, one comparison per pair.

Why a test: the replay is only a speed change, so it must change no decision, and it must give way to a
real search the moment the records stop being the ones it logged (never answer for another record)."""

from __future__ import annotations

import csv
import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from consumer.config import Settings, load_settings
from consumer.engine.records import Record
from consumer.engine.replay import CandidateLog, ReplayBlocker, ReplayComparator, record_into, replay_from
from consumer.generate import write_crm
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records, run_batch


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Record]]:
    d = tmp_path_factory.mktemp("crm")
    write_crm(d / "crm.csv", d / "truth.csv", 1200, 7)
    settings = load_settings(env={})
    return settings, [r for _, r in iter_records(d / "crm.csv", settings) if isinstance(r, Record)]


def _decide(settings: Settings, records: Sequence[Record], *, record: CandidateLog | None = None,
            replay: CandidateLog | None = None) -> tuple[list[dict[str, object]], object]:
    """Decisions of `records` through `process_stream` (as `dedup batch` runs), recording or replaying."""
    pipe = build_pipeline(settings, encode_in_background=True)
    if record is not None:
        record_into(pipe, record)
    if replay is not None:
        replay_from(pipe, replay)
    batches = [records[i: i + 128] for i in range(0, len(records), 128)]
    out = [d.to_dict() for _, ds in pipe.process_stream(batches) for d in ds]
    if record is not None:
        record.finish(pipe)
    blocker = pipe.blocker
    pipe.close()
    return out, (blocker, pipe.comparator)


def test_replayed_candidates_decide_exactly_as_a_search(crm: tuple[Settings, list[Record]]) -> None:
    settings, records = crm
    log = CandidateLog()
    searched, _ = _decide(settings, records, record=log)
    replayed, (blocker, comparator) = _decide(settings, records, replay=log)
    assert replayed == searched
    assert isinstance(blocker, ReplayBlocker) and not blocker.live and blocker.replayed == len(records)
    assert len(blocker.index) == 0  # no second graph was built
    assert not log.stale and log.columns  # and nothing encoded again: every encoder answered from the log
    assert isinstance(comparator, ReplayComparator) and comparator.replayed == len(records)  # nor compared


def test_a_batch_with_other_candidates_is_compared_afresh(crm: tuple[Settings, list[Record]]) -> None:
    """Logged feature rows answer only for the very candidate lists they were compared with: a list the run
    extends (a labelled partner, say) makes that batch compare afresh, and decide as without the log."""
    settings, records = crm
    log = CandidateLog()
    _decide(settings, records, record=log)
    row = 300
    cands, feats = log.pairs[row]
    log.pairs[row] = (cands[:-1], feats[:-1])  # as if the fit pass had one candidate fewer for this row
    plain, _ = _decide(settings, records)
    replayed, (_, comparator) = _decide(settings, records, replay=log)
    assert replayed == plain
    assert comparator.replayed == len(records) - 128  # every batch but the one holding row 300


def test_a_different_record_ends_the_replay_and_the_run_searches(crm: tuple[Settings, list[Record]]) -> None:
    """The log holds another order of the same file: at the first row whose record differs, the stored rows
    go into the index and the rest is searched, deciding as a plain run of that order would, up to HNSW's
    approximation (the rows stored before the switch are found through the graph, not exactly)."""
    settings, records = crm
    log = CandidateLog()
    _decide(settings, records, record=log)
    shuffled = list(records[:300]) + random.Random(1).sample(list(records[300:]), len(records) - 300)
    plain, _ = _decide(settings, shuffled)
    replayed, (blocker, comparator) = _decide(settings, shuffled, replay=log)
    assert blocker.live and blocker.replayed < len(records) and len(blocker.index) == len(records)
    assert comparator.replayed <= blocker.replayed
    same = sum(a["cluster_id"] == b["cluster_id"] for a, b in zip(plain, replayed))
    assert same >= 0.99 * len(records)
    assert [d["record_id"] for d in replayed] == [r.record_id for r in shuffled]  # every record decided once


def test_a_record_changed_under_its_id_is_encoded_and_searched_afresh(crm: tuple[Settings, list[Record]]) -> None:
    """Same ids, one record's content changed between the passes: from its batch on nothing is replayed,
    and it is decided on its new content (a plain run of the changed file decides it the same)."""
    settings, records = crm
    log = CandidateLog()
    _decide(settings, records, record=log)
    changed = list(records)
    changed[700] = dataclasses.replace(records[700], name=records[10].name, city=records[10].city)
    plain, _ = _decide(settings, changed)
    replayed, (blocker, comparator) = _decide(settings, changed, replay=log)
    assert log.stale and blocker.live and 512 <= blocker.replayed <= 700 and comparator.replayed == blocker.replayed
    assert replayed[700]["cluster_id"] == plain[700]["cluster_id"]
    assert replayed[:512] == plain[:512]  # before the change: replayed, and as searched


def test_batch_on_a_person_file_replays_its_fit_pass(tmp_path: Path) -> None:
    """`dedup batch --profile person` on a file it fits whole: the run searches nothing itself."""
    rng = random.Random(5)
    names = ["anna", "bernd", "carla", "dieter", "eva", "frank", "greta", "hans", "ida", "jonas", "karin", "lars"]
    surnames = ["meier", "schulz", "becker", "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "krause"]
    rows = []
    for p in range(400):
        g, s, dob = rng.choice(names), rng.choice(surnames), f"19{rng.randint(30, 99)}-0{rng.randint(1, 9)}-1{p % 10}"
        for k in range(rng.choice((1, 1, 2))):
            rows.append({"id": f"r{p}-{k}", "given_name": g if not k else g[:-1] + "x", "surname": s,
                         "date_of_birth": dob})
    src = tmp_path / "people.csv"
    with src.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    settings = load_settings(profile="person", env={})
    summary, pipe = run_batch(src, tmp_path / "out.jsonl", settings, progress=False)
    assert summary.model["fusion"].startswith("fellegi-sunter") and summary.records == len(rows)
    assert isinstance(pipe.blocker, ReplayBlocker) and pipe.blocker.replayed == len(rows) and not pipe.blocker.live
    assert isinstance(pipe.comparator, ReplayComparator) and pipe.comparator.replayed == len(rows)
    pipe.close()


def test_a_sampled_fit_lends_the_run_its_columns_record_by_record(crm: tuple[Settings, list[Record]]) -> None:
    """A fit on a sample of the file (`columns_only`): the run takes the sampled records' columns, encodes the
    rest, and searches and compares everything itself; the decisions are a plain run's."""
    settings, records = crm
    sample = records[::3]
    log = CandidateLog(columns_only=True)
    _decide(settings, sample, record=log)
    plain, _ = _decide(settings, records)
    pipe = build_pipeline(settings, encode_in_background=True)
    replay_from(pipe, log)
    assert not isinstance(pipe.blocker, ReplayBlocker) and not isinstance(pipe.comparator, ReplayComparator)
    batches = [records[i: i + 128] for i in range(0, len(records), 128)]
    lent = [d.to_dict() for _, ds in pipe.process_stream(batches) for d in ds]
    replayed = [e.replayed for e in pipe.encoders]  # type: ignore[attr-defined]
    pipe.close()
    assert lent == plain
    assert replayed and all(n == len(sample) for n in replayed)
    assert not log.cands and not log.pairs  # nothing but columns was logged
