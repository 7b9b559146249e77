"""Exact-key candidates beside the HNSW search (`consumer.engine.keys`, issue 20: FEBRL4's pairs with both
names rewritten that the index never proposed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consumer.config import load_settings
from consumer.engine.keys import KeyBlocker, merge
from consumer.engine.records import Record, parse_record


def _cols(*dob: int, street: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    n = len(dob)
    return {"dob_h": np.array(dob, np.uint32),
            "pc_h": np.array(street or (0,) * n, np.uint32), "no_h": np.array(street or (0,) * n, np.uint32)}


def test_records_sharing_a_key_meet_in_arrival_order_within_one_batch() -> None:
    kb = KeyBlocker([("dob_h",)], cap=8)
    got = kb.candidates(_cols(11, 22, 11, 0, 11), [0, 1, 2, 3, 4])
    assert [g.tolist() for g in got] == [[], [], [0], [], [0, 2]]
    # ...and across batches; a missing part (0) is never a key
    assert [g.tolist() for g in kb.candidates(_cols(22, 0), [5, 6])] == [[1], []]


def test_a_key_needs_every_part_present() -> None:
    kb = KeyBlocker([("pc_h", "no_h")], cap=8)
    cols = {"pc_h": np.array([5, 5, 5], np.uint32), "no_h": np.array([7, 7, 0], np.uint32)}
    assert [g.tolist() for g in kb.candidates(cols, [0, 1, 2])] == [[], [0], []]


def test_a_too_common_key_is_dropped_so_candidates_stay_bounded() -> None:
    """A default date (1900-01-01) shared by thousands must not make thousands of candidates."""
    kb = KeyBlocker([("dob_h",)], cap=3)
    got = kb.candidates(_cols(*([99] * 50)), list(range(50)))
    assert max(len(g) for g in got) <= 3
    assert [len(g) for g in got[:5]] == [0, 1, 2, 3, 0]
    assert kb.saturated == 1 and kb.memory_bytes() < 200


def test_merge_is_the_sorted_union() -> None:
    out = merge([np.array([1, 5]), np.array([2])], [np.array([3, 5]), np.zeros(0, np.int64)])
    assert [o.tolist() for o in out] == [[1, 3, 5], [2]]


def test_cap_zero_is_refused_by_the_class_and_off_in_settings() -> None:
    with pytest.raises(ValueError):
        KeyBlocker([("dob_h",)], cap=0)
    assert load_settings(profile="person", env={"DEDUP_INDEX__KEY_CAP": "0"}).index.key_cap == 0


def _people() -> list[Record]:
    s = load_settings(profile="person", env={})
    rows = [{"id": "a", "given_name": "matthew", "surname": "sincovich", "street_number": "95",
             "address_1": "grylls crescent", "suburb": "barrack heights", "postcode": "4221",
             "date_of_birth": "19600731"},
            {"id": "b", "given_name": "kynan", "surname": "oloughlin", "street_number": "95",
             "address_1": "grylls crescent", "suburb": "barrack heights", "postcode": "4221",
             "date_of_birth": "19470922"}]
    return [parse_record(r, s.profile, s.limits) for r in rows]


def test_person_profile_declares_keys_and_crm_pays_nothing() -> None:
    from consumer.io.artifacts import build_pipeline

    person = build_pipeline(load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"}))
    assert person.keys is not None and ("dob_h",) in person.keys.keys
    off = build_pipeline(load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule",
                                                              "DEDUP_INDEX__KEY_CAP": "0"}), text_encoder=person.text)
    assert off.keys is None
    person.close()
    off.close()


def test_both_names_rewritten_same_address_is_scored_and_restored_tables_agree() -> None:
    """The pair FEBRL4 lost: other names, same postcode + number + street. It is a candidate through the
    keys, and a pipeline restored from the snapshot proposes the same candidates to the next record."""
    from consumer.io.artifacts import build_pipeline

    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    pipe = build_pipeline(settings)
    pipe.pair_log = []
    recs = _people()
    pipe.process(recs)
    row_b, cands_b, _ = pipe.pair_log[-1]
    assert row_b == 1 and 0 in cands_b.tolist()
    again = build_pipeline(settings, text_encoder=pipe.text)
    again.restore(pipe.snapshot(range(len(pipe.store))))
    assert again.keys is not None and pipe.keys is not None and len(again.keys) == len(pipe.keys)
    probe = {k: v[1:] for k, v in pipe.encode(recs).items()}
    assert [c.tolist() for c in again.keys.candidates(probe, [2])] == \
        [c.tolist() for c in pipe.keys.candidates(probe, [2])] == [[0, 1]]
    pipe.close()
    again.close()


def test_a_replica_snapshot_rebuilds_the_key_table(tmp_path: Path) -> None:
    """The service's snapshot (`consumer.service.snapshot`) loads rows without `absorb`: the keys must
    come back too, or a restarted replica would stop proposing the pairs only the keys find."""
    from consumer.io.artifacts import build_pipeline
    from consumer.service.snapshot import load_snapshot, save_snapshot

    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    pipe = build_pipeline(settings)
    pipe.process(_people())
    save_snapshot(pipe, 7, tmp_path, {"config_version": pipe.config_version})
    again = build_pipeline(settings, text_encoder=pipe.text)
    assert load_snapshot(again, tmp_path, {"config_version": pipe.config_version}) is not None
    assert again.keys is not None and pipe.keys is not None and len(again.keys) == len(pipe.keys) > 0
    probe = {k: v[1:] for k, v in pipe.encode(_people()).items()}
    assert [c.tolist() for c in again.keys.candidates(probe, [2])] == [[0, 1]]
    pipe.close()
    again.close()


def test_an_erased_record_leaves_the_key_table_and_the_snapshot(tmp_path: Path) -> None:
    """Erasure (GDPR): a forgotten record must not come back as a key candidate, neither in the running
    pipeline nor in one loaded from a snapshot written after the erasure."""
    from consumer.io.artifacts import build_pipeline
    from consumer.service.snapshot import load_snapshot, save_snapshot

    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    pipe = build_pipeline(settings)
    pipe.process(_people())  # a (row 0) and b (row 1) share postcode, number and street
    [erased] = pipe.erase(["a"])
    assert erased.found
    # c shares a's date of birth and b's address: only b may be proposed by the keys
    c = parse_record({"id": "c", "given_name": "kynan", "surname": "oloughlin", "street_number": "95",
                      "address_1": "grylls crescent", "suburb": "barrack heights", "postcode": "4221",
                      "date_of_birth": "19600731"}, settings.profile, settings.limits)
    probe = pipe.encode([c])
    pipe.pair_log = []
    pipe.process([c])
    row_c, cands_c, _ = pipe.pair_log[-1]
    assert row_c == 2 and 1 in cands_c.tolist() and 0 not in cands_c.tolist()
    save_snapshot(pipe, 9, tmp_path, {"config_version": pipe.config_version})
    again = build_pipeline(settings, text_encoder=pipe.text)
    assert load_snapshot(again, tmp_path, {"config_version": pipe.config_version}) is not None
    assert again.keys is not None and [k.tolist() for k in again.keys.candidates(probe, [3])] == [[1, 2]]
    pipe.close()
    again.close()


def test_the_person_index_holds_no_date_or_empty_city_vector_and_the_crm_index_keeps_its_city() -> None:
    """The date of birth meets its twins through its key; a profile without place columns has an all-zero
    city vector, which would only cost every insert and search."""
    from consumer.io.artifacts import build_pipeline

    person = build_pipeline(load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"}))
    assert [v.column for v in person.blocker.spec] == ["text", "name_vec", "addr_vec"]
    crm = build_pipeline(load_settings(env={}), text_encoder=person.text)
    assert "city_vec" in [v.column for v in crm.blocker.spec]
    person.close()
    crm.close()


def test_a_snapshot_of_another_index_layout_is_not_loaded_and_retired_columns_are_dropped(tmp_path: Path) -> None:
    """A snapshot written by a version whose index had other vectors (the person profile's date vector)
    holds a graph of other dimensions: the replica rebuilds from Redis instead of loading it. A payload of
    such a version, absorbed, keeps only the columns this version's encoders declare."""
    import json

    from consumer.engine.state import record_states, restore
    from consumer.io.artifacts import build_pipeline
    from consumer.service.snapshot import load_snapshot, save_snapshot
    from consumer.store.record_state import RecordState, encode_rows

    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    pipe = build_pipeline(settings)
    pipe.process(_people())
    expect = {"config_version": pipe.config_version}
    info = save_snapshot(pipe, 7, tmp_path, expect)
    meta = json.loads((info.path / "meta.json").read_text())
    assert meta["index_spec"] == [["text", 64, 0.5], ["name_vec", 128, 1.0], ["addr_vec", 64, 1.0]]
    meta["index_spec"] = [*meta["index_spec"], ["dob_vec", 512, 1.0]]
    (info.path / "meta.json").write_text(json.dumps(meta))
    fresh = build_pipeline(settings, text_encoder=pipe.text)
    assert load_snapshot(fresh, tmp_path, expect) is None and len(fresh.store) == 0
    # an older snapshot: no layout recorded, and a column nothing declares any more
    del meta["index_spec"]
    (info.path / "meta.json").write_text(json.dumps(meta))
    with np.load(info.path / "state.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["col__dob_vec"] = np.zeros((2, 512), np.float16)
    np.savez(info.path / "state.npz", **arrays)
    assert load_snapshot(fresh, tmp_path, expect) is None and len(fresh.store) == 0
    # the same from Redis payloads: the retired column is not kept
    states = record_states(pipe, [0, 1])
    rows = {k: pipe.store.column(k)[:2] for k in pipe.store.column_names()}
    rows["dob_vec"] = np.ones((2, 512), np.float16)
    payloads = encode_rows(rows, pipe.store.completeness[:2], pipe.store.recency[:2])
    old = [RecordState(**{**s.__dict__, "payload": p}) for s, p in zip(states, payloads)]
    assert restore(fresh, old) == 2
    assert "dob_vec" not in fresh.store.column_names()
    assert sorted(fresh.store.column_names()) == sorted(pipe.store.column_names())
    pipe.close()
    fresh.close()
