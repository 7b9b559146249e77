"""Each stage class on its own, with small fake encoders (no model files): Comparator, FrequencyTable,
Fuser (rule and learned), LearnedModel's feature contract, Blocker, CandidateIndex and RWLock.

Why: the end-to-end tests show the engine works on CRM data; these pin down each class's contract (what
it derives from the encoders' contributions, NaN handling, determinism) so a change to one is caught at
its own door.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from consumer.config import FusionSettings, IndexSettings, Settings
from consumer.encoders.base import Columns, Contribution, Feature, IndexVector, Rarity, Score
from consumer.engine.blocking import Blocker
from consumer.engine.comparison import Comparator
from consumer.engine.frequencies import MIN_RECORDS, FrequencyTable
from consumer.engine.fusion import Fuser, LearnedModel, ModelError
from consumer.engine.index import CandidateIndex, RWLock

NAN = np.nan


class Fake:
    """A minimal encoder: one key column, one feature (equality), one score, one rarity, one index vector."""

    def __init__(self, name: str, extra_feature: str | None = None, part_of: str | None = None):
        self.name = name
        self._extra = extra_feature
        self._part_of = part_of

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=(self.name,), columns=(f"{self.name}_key", f"{self.name}_vec"),
            features=(Feature(f"{self.name}_eq"), Feature(f"{self.name}_n", monotone=0)),
            scores=(Score(self.name, part_of=self._part_of),),
            index=(IndexVector(f"{self.name}_vec", 2, 1.0),), index_only=(f"{self.name}_vec",),
            rarity=(Rarity(f"{self.name}_rarity", lambda c: c[f"{self.name}_key"]),),
            coefficients={f"{self.name}.weight": 1.0})

    def encode(self, records: Sequence[Any]) -> Columns:
        return {}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        ka, kb = a[f"{self.name}_key"], b[f"{self.name}_key"]
        eq = (ka == kb).astype(np.float32)
        eq[(ka == 0) | (kb == 0)] = np.nan
        out = {f"{self.name}_eq": eq}
        if self._extra:
            out[self._extra] = eq
        return out

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {self.name: feats[f"{self.name}_eq"].astype(np.float32)}


def cols(**keys: list[int]) -> Columns:
    return {f"{k}_key": np.array(v, np.uint32) for k, v in keys.items()}


# -- Comparator ---------------------------------------------------------------------------------------------
def test_comparator_derives_features_monotone_and_unused_columns() -> None:
    comp = Comparator([Fake("a"), Fake("b")])
    assert comp.features == ("a_eq", "a_n", "b_eq", "b_n", "a_rarity", "b_rarity")
    assert comp.monotone == {"a_eq": 1, "a_n": 0, "b_eq": 1, "b_n": 0, "a_rarity": 0, "b_rarity": 0}
    assert comp.unused_columns == {"a_vec", "b_vec"}
    x = comp.compare(cols(a=[1, 1, 0], b=[5, 6, 7]), cols(a=[1, 2, 3], b=[5, 5, 7]), {"a_rarity": np.ones(3)})
    assert x.shape == (3, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], [1, 0, NAN])  # NaN: one side lacks the value
    np.testing.assert_array_equal(x[:, 2], [1, 0, 1])
    assert np.isnan(x[:, 1]).all() and np.isnan(x[:, 5]).all()  # declared, not returned: NaN
    np.testing.assert_array_equal(x[:, 4], [1, 1, 1])


def test_comparator_refuses_undeclared_and_duplicate_features() -> None:
    with pytest.raises(ValueError, match="does not declare"):
        Comparator([Fake("a", extra_feature="sneaky")]).compare(cols(a=[1]), cols(a=[1]))
    with pytest.raises(ValueError, match="same feature"):
        Comparator([Fake("a"), Fake("a")])


# -- FrequencyTable -----------------------------------------------------------------------------------------
def test_frequency_table_counts_other_records_sharing_a_value_and_absent_is_nan() -> None:
    table = FrequencyTable([Rarity("r1", lambda c: c["k"]), Rarity("r2", lambda c: c["toks"])])
    batch = {"k": np.array([1, 1, 1, 2, 0], np.uint32),
             "toks": np.array([[1, 9], [1, 0], [1, 0], [2, 0], [0, 0]], np.uint32)}
    table.observe(batch)
    assert table.records == 5 and table.counts["r1"] == {1: 3, 2: 1}
    f = table.features(batch, batch)
    assert f["r1"][3] < f["r1"][0] and np.isnan(f["r1"][4])
    scale = MIN_RECORDS / 5  # a 5-record index: counts extrapolated to MIN_RECORDS records
    assert f["r1"][0] == pytest.approx(np.log1p(3 * scale - 1))
    assert f["r2"][0] == pytest.approx((np.log1p(3 * scale - 1) + np.log1p(scale - 1)) / 2)  # mean over keys
    assert np.isnan(f["r2"][4])


def test_frequency_feature_does_not_drift_with_index_size() -> None:
    """Past MIN_RECORDS a value two others share reads the same whatever the index size (issue 11)."""
    small, big = (FrequencyTable([Rarity("r", lambda c: c["k"])]) for _ in range(2))
    small.observe({"k": np.array([7, 7, 7, *range(100, 100 + MIN_RECORDS)], np.uint32)})
    big.observe({"k": np.array([7, 7, 7, *range(100, 100 + 5 * MIN_RECORDS)], np.uint32)})
    q = {"k": np.array([7], np.uint32)}
    assert small.features(q, q)["r"][0] == big.features(q, q)["r"][0] == pytest.approx(np.log1p(2))


# -- Fuser: rule --------------------------------------------------------------------------------------------
def fusion(**kw: Any) -> FusionSettings:
    return FusionSettings(mode="rule", match_threshold=0.75, possible_threshold=0.5, **kw)


def test_rule_fusion_renormalises_over_present_modalities_and_reports_composites() -> None:
    encs = [Fake("a", part_of="text"), Fake("b", part_of="text"), Fake("c")]
    comp = Comparator(encs)
    f = fusion(parts={"a": 3.0, "b": 1.0}, weights={"text": 1.0, "c": 1.0})
    fuser = Fuser(f, None, encs, comp.features)
    assert fuser.modalities == ("text", "a", "b", "c")
    feats = np.full((3, len(comp.features)), np.nan, np.float32)
    j = {n: i for i, n in enumerate(comp.features)}
    feats[0, [j["a_eq"], j["b_eq"], j["c_eq"]]] = [1.0, 0.0, 1.0]
    feats[1, j["c_eq"]] = 1.0  # only c present
    fused, mods = fuser.score(feats)
    assert mods["text"][0] == pytest.approx(0.75) and fused[0] == pytest.approx((0.75 + 1.0) / 2)
    assert np.isnan(mods["text"][1]) and fused[1] == pytest.approx(1.0)
    assert fused[2] == 0.0  # nothing comparable
    assert fuser.label(np.array([0.8, 0.6, 0.1])).tolist() == [2, 1, 0]


def test_rule_version_follows_its_coefficients() -> None:
    encs = [Fake("a")]
    feats = Comparator(encs).features
    v1 = Fuser(fusion(), None, encs, feats).version
    v2 = Fuser(fusion(weights={"a": 0.5}), None, encs, feats).version
    assert v1.startswith("rule:") and v1 != v2
    assert Settings(fusion=fusion()).fingerprint() != Settings(fusion=fusion(weights={"a": 0.5})).fingerprint()


def test_rule_needs_a_weight_for_every_modality() -> None:
    class NoWeight(Fake):
        @property
        def contribution(self) -> Contribution:
            c = super().contribution
            return Contribution(roles=c.roles, columns=c.columns, features=c.features, scores=c.scores)

    encs = [NoWeight("z")]
    with pytest.raises(ModelError, match="no fusion weight"):
        Fuser(fusion(), None, encs, Comparator(encs).features)


# -- Fuser: learned, and the model's feature contract -------------------------------------------------------
class Stub:
    """An 'estimator' returning the mean of its input row (NaN -> 0), and recording what it was given."""

    def __init__(self) -> None:
        self.seen: np.ndarray | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen = x
        p = np.nan_to_num(x, nan=0.0).mean(axis=1)
        return np.stack([1 - p, p], axis=1)


def test_learned_model_maps_features_by_name_and_refuses_others() -> None:
    model = LearnedModel(Stub(), ("a_eq", "b_eq", "keys"), {"used_features": ["b_eq", "a_eq"]})
    cols_ = model.columns_for(["a_eq", "keys", "b_eq"])
    assert cols_.tolist() == [2, 0]  # the model's order, looked up by name
    x = np.array([[1.0, 7.0, 0.0]], np.float32)
    model.predict(x, cols_)
    assert model.estimator.seen.tolist() == [[0.0, 1.0]]
    with pytest.raises(ModelError, match=r"needs \['b_eq'\]"):
        model.columns_for(["a_eq"])
    with pytest.raises(ModelError, match=r"add \['postcode'\]"):
        model.columns_for(["a_eq", "b_eq", "postcode"])
    # A modality the profile does not have is absent (NaN), as for a record without it.
    absent = model.columns_for(["a_eq"], absent={"b_eq"})
    assert absent.tolist() == [-1, 0]
    model.predict(np.array([[1.0]], np.float32), absent)
    assert np.isnan(model.estimator.seen[0, 0]) and model.estimator.seen[0, 1] == 1.0


def test_shipped_model_fits_the_default_encoders() -> None:
    from consumer.encoders import build_encoders

    class Dim:
        dim = 64

    encs = build_encoders(Settings(), {"text_encoder": Dim()})
    comp = Comparator(encs)
    model = LearnedModel.load()
    assert set(model.used_features) <= set(comp.features) and set(comp.features) <= set(model.features)
    fuser = Fuser(FusionSettings(), model, encs, comp.features)
    assert fuser.version.startswith("learned:") and fuser.modalities == ("text", "name", "city", "behaviour",
                                                                         "device")


# -- Blocker, CandidateIndex, RWLock ------------------------------------------------------------------------
def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.array(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("background", [False, True])
def test_blocker_sees_the_index_and_earlier_records_of_its_batch(background: bool) -> None:
    spec = [IndexVector("v", 2, 1.0)]
    blocker = Blocker(spec, IndexSettings(k=2, ef=8, initial_capacity=16), query_threads=1,
                      background_add=background)
    first = blocker.vectors({"v": np.array([[1, 0], [0, 1]], np.float32)})
    assert blocker.candidates(first, np.array([0, 1]))[0].tolist() == []
    blocker.add(first, np.array([0, 1]))
    batch = unit([[1, 0.1], [1, 0.2], [0.1, 1]])
    cands = blocker.candidates(batch, np.array([2, 3, 4]))
    assert cands[0].tolist() == [0, 1]  # the index holds only two
    assert all(len(c) <= 2 and list(c) == sorted(set(c)) for c in cands)
    assert 2 in cands[1]  # an earlier record of the same batch, not indexed yet
    blocker.add(batch, np.array([2, 3, 4]))
    assert len(blocker.index) == 5
    blocker.close()


def test_blocker_needs_an_index_vector() -> None:
    with pytest.raises(ValueError, match="index vector"):
        Blocker([], IndexSettings())


def test_candidate_index_grows_and_pads() -> None:
    idx = CandidateIndex(2, m=4, ef_construction=16, ef=8, capacity=2, query_threads=1)
    ids, sims = idx.query(unit([[1, 0]]), 3)
    assert ids.tolist() == [[-1, -1, -1]]
    idx.add(unit([[1, 0], [0, 1], [1, 1]]), np.array([10, 11, 12]))
    assert len(idx) == 3 and idx.capacity >= 3
    ids, sims = idx.query(unit([[1, 0]]), 5)
    assert ids[0, 0] == 10 and sims[0, 0] == pytest.approx(1.0, abs=1e-5) and ids[0, 3:].tolist() == [-1, -1]


def test_rwlock_readers_share_writers_exclude() -> None:
    lock = RWLock()
    inside: list[str] = []
    with lock.read(), lock.read():  # readers do not block each other
        inside.append("two readers")

    def writer() -> None:
        with lock.write():
            inside.append("writer")

    with lock.read():
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.05)
        assert "writer" not in inside  # waits for the reader
    t.join(2)
    assert inside == ["two readers", "writer"]


def test_stage_timer_owns_one_vocabulary() -> None:
    """Pipeline, batch summary and the service's metric share the timer's names; `since` diffs a batch."""
    from consumer.engine.stages import DECIDE_STAGES, StageTimer

    timer = StageTimer()
    timer.add("compare", 0.5)
    before = timer.totals()
    with timer.time("compare"):
        pass
    timer.set("index_add", 2.0)
    delta = timer.since(before, ("compare", "fuse"))
    assert set(delta) == {"compare", "fuse"} and delta["fuse"] == 0.0 and 0.0 <= delta["compare"] < 0.5
    assert timer.totals()["index_add"] == 2.0 and "score" not in DECIDE_STAGES


def test_gated_rarity_counts_only_where_values_agree() -> None:
    """A gated rarity says how often *the pair's shared* value occurs: -1 where the values differ."""
    from consumer.engine.comparison import gate_rarity

    x = np.array([[1.0, 2.0], [0.6, 2.0], [np.nan, 2.0], [1.0, np.nan]], np.float32)
    out = gate_rarity(x.copy(), [(1, 0, 1.0)])
    assert out[:, 1].tolist()[:3] == [2.0, -1.0, -1.0] and np.isnan(out[3, 1])
    assert np.array_equal(gate_rarity(out.copy(), [(1, 0, 1.0)]), out, equal_nan=True)  # idempotent
