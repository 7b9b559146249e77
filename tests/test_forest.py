"""`FastForest` (leaf tables, or the numpy walk of the trees for forests too wide for them) is bit-equal to
scikit-learn's `predict_proba`, also when read back from its trees' file (.forest.npz) without scikit-learn."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from consumer.engine.forest import CHUNK, FastForest, expit, forest_path
from consumer.engine.fusion import PACKAGED_MODELS, LearnedModel

PROFILES = [None, "listing"]


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():  # type: ignore[no-untyped-def]
    """scikit-learn's OpenMP pool on a busy machine makes its fits and predictions ~10x slower."""
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime, so that there is one to limit
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(n, width)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    return x


def _packaged(profile: str | None) -> tuple[bytes, Path]:
    """The packaged model file's bytes and its trees' file."""
    here = resources.files("consumer") / "data"
    stem = PACKAGED_MODELS.get(profile or "", "fusion-default")
    return (here / f"{stem}.pkl").read_bytes(), Path(str(here / f"{stem}.forest.npz"))


@pytest.fixture(scope="module", params=PROFILES, ids=["default", "listing"])
def packaged(request: pytest.FixtureRequest) -> tuple[LearnedModel, FastForest, object]:
    blob, trees = _packaged(request.param)
    estimator = pickle.load(io.BytesIO(blob))["estimator"]  # noqa: S301 - the package's own file
    return LearnedModel.load(None, request.param), FastForest.load(trees)[0], estimator


@pytest.mark.parametrize("n", [1, 5, 31, 32, 33, 500, 5000])
def test_packaged_trees_file_bit_equal(packaged: tuple[LearnedModel, FastForest, object], n: int) -> None:
    model, forest, estimator = packaged
    x = _rows(n, len(model.used_features), n)
    expected = estimator.predict_proba(x)[:, 1]  # type: ignore[attr-defined]
    assert np.array_equal(forest.proba(x), expected)
    assert model.forest is not None  # the packaged model predicts from its trees' file
    cols = np.arange(len(model.used_features))
    assert np.array_equal(model.predict(x, cols), expected.astype(np.float32))


@pytest.mark.parametrize("n", [1, 7, 384, 5000])
def test_compiled_tables_give_the_numpy_tables_bits(packaged: tuple[LearnedModel, FastForest, object], n: int) -> None:
    """`proba` runs the compiled `_table_raw` where numba is installed (a dependency), else the numpy tables:
    the same bits either way, so a run with numba decides exactly as one without."""
    from consumer.engine import forest as forest_module

    _, forest, _ = packaged
    assert forest_module._KERNEL.get() is not None
    x = _rows(n, forest.n_features, 100 + n).astype(np.float64)
    x[: min(n, 3), 0] = [np.inf, -np.inf, -0.0][: min(n, 3)]
    with forest_module._KERNEL.disabled():
        reference = forest.proba(x)
    assert forest.proba(x).tobytes() == reference.tobytes()


def test_packaged_model_from_its_trees_file_is_the_pickled_model(
        packaged: tuple[LearnedModel, FastForest, object]) -> None:
    """Everything the model file gave: features, meta, the sha256 of the same bytes (events' model_version),
    and the estimator itself, unpickled when read."""
    model, _, estimator = packaged
    blob = model.pickled
    assert blob is not None
    data = pickle.load(io.BytesIO(blob))  # noqa: S301 - the package's own file
    assert model.features == tuple(data["features"])
    assert {k: v for k, v in model.meta.items() if k not in ("sha256", "operating_point")} == data["meta"]
    import hashlib

    assert model.meta["sha256"] == hashlib.sha256(blob).hexdigest()
    assert type(model.estimator) is type(estimator)
    assert model.estimator.n_features_in_ == len(model.used_features)
    kept = dataclasses.replace(model, meta={**model.meta, "photo_cut": 0.5})  # what `dedup batch` does
    assert kept.forest is model.forest and type(kept.estimator) is type(estimator)


def test_fitted_with_missing_values_and_thresholds_hit_exactly() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _rows(2000, 5, 1)
    y = (np.nan_to_num(x[:, 0], nan=0.9) + 0.3 * np.nan_to_num(x[:, 1], nan=0.1) > 0.7).astype(int)
    est = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0).fit(x, y)
    forest = FastForest.of(est)
    assert forest is not None
    probe = _rows(300, 5, 2)
    # Values exactly on split thresholds (x <= threshold goes left), each in its split's feature column:
    # as float32 (the pipeline's features) and as the float64 threshold itself.
    splits = np.concatenate([p[0].nodes[~p[0].nodes["is_leaf"].astype(bool)] for p in est._predictors])[:300]
    rows = np.arange(len(splits))
    probe[rows, splits["feature_idx"]] = splits["num_threshold"].astype(np.float32)
    exact = probe.astype(np.float64)
    exact[rows, splits["feature_idx"]] = splits["num_threshold"]
    exact[:5, 0] = [np.inf, -np.inf, 0.0, -0.0, np.nan]
    for x in (probe, exact):
        expected = est.predict_proba(x)[:, 1]
        assert np.array_equal(forest.proba(x), expected)  # the leaf tables
        assert np.array_equal(expit(forest._walk(np.asarray(x, np.float64))), expected)  # the walk
        for lo in range(0, 300, 7):
            assert np.array_equal(forest.proba(x[lo: lo + 7]), expected[lo: lo + 7])


@pytest.mark.parametrize("leaves", [6, 31, 40, 90])
def test_every_table_width_and_the_walk_for_wider_trees(leaves: int, tmp_path: Path) -> None:
    """uint8 / uint32 / uint64 leaf masks, and over 64 leaves a tree the tables do not hold (walked), in
    blocks of `CHUNK` rows; also read back from a trees' file."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _rows(4000, 4, 3)
    y = (np.sin(9 * np.nan_to_num(x[:, 0], nan=0.3)) + np.nan_to_num(x[:, 1], nan=0.6) * x[:, 2] > 0.4).astype(int)
    est = HistGradientBoostingClassifier(max_iter=8, max_leaf_nodes=leaves, min_samples_leaf=2,
                                         random_state=0).fit(x, y)
    forest = FastForest.of(est)
    assert forest is not None
    assert (forest._tables is None) == (max(p[0].nodes["is_leaf"].sum() for p in est._predictors) > 64)
    forest.save(tmp_path / "f.npz", note="x")
    back, info = FastForest.load(tmp_path / "f.npz")
    assert info == {"note": "x"}
    probe = _rows(2 * CHUNK + 3, 4, 4)
    expected = est.predict_proba(probe)[:, 1]
    assert np.array_equal(forest.proba(probe), expected)
    assert np.array_equal(back.proba(probe), expected)


def test_expit_is_scipys_bit_for_bit() -> None:
    from scipy.special import expit as scipy_expit

    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.normal(0, 4, 300_000), rng.uniform(-800, 800, 100_000), rng.uniform(-712, -706, 50_000),
                          [0.0, -0.0, 709.78, -709.78, 709.782712893384, -709.782712893384, 710.0, -710.0, 745.2,
                           -745.2, 1e300, -1e300, np.inf, -np.inf, 5e-324, -5e-324]])
    assert np.array_equal(expit(raw), scipy_expit(raw))
    assert np.isnan(expit(np.array([np.nan]))).all()


def test_saved_model_writes_its_trees_file_and_a_stale_one_is_ignored(tmp_path: Path) -> None:
    shipped = LearnedModel.load()
    path = tmp_path / "m.pkl"
    digest = shipped.save(path)
    assert forest_path(path).is_file()
    again = LearnedModel.load(path)
    assert again.forest is not None and again.meta["sha256"] == digest
    x = _rows(100, len(shipped.used_features), 5)
    cols = np.arange(len(shipped.used_features))
    assert np.array_equal(again.predict(x, cols), shipped.predict(x, cols))
    # Another model's trees beside this model file: read the model file instead.
    _, listing_trees = _packaged("listing")
    forest_path(path).write_bytes(listing_trees.read_bytes())
    stale = LearnedModel.load(path)
    assert stale.forest is None and stale.meta["sha256"] == digest
    assert np.array_equal(stale.predict(x, cols), shipped.predict(x, cols))
    forest_path(path).write_bytes(b"not a zip")
    assert LearnedModel.load(path).forest is None


def test_other_estimators_keep_their_own_predict(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    assert FastForest.of(LogisticRegression()) is None
    assert FastForest.of(object()) is None
    x = _rows(200, 2, 6)
    est = LogisticRegression().fit(np.nan_to_num(x), np.nan_to_num(x[:, 0]) > 0.5)
    path = tmp_path / "lr.pkl"
    forest_path(path).write_bytes(b"stale")
    LearnedModel(est, ("a", "b"), {}).save(path)
    assert not forest_path(path).exists()  # no trees to write: a stale file is removed


def test_packaged_models_load_and_predict_without_scikit_learn() -> None:
    """A service member loads its model the way `load_artifacts` does and never imports scikit-learn (~1 s of
    start-up CPU)."""
    code = ("import sys, numpy as np\n"
            "from consumer.config import load_settings\n"
            "from consumer.engine.fusion import LearnedModel\n"
            "for profile in ('crm-signup', 'listing'):\n"
            "    s = load_settings(env={}, profile=profile)\n"
            "    m = LearnedModel.load(s.fusion.learned_model, profile=s.profile.name)\n"
            "    x = np.random.default_rng(0).uniform(size=(600, len(m.used_features))).astype(np.float32)\n"
            "    x[::3, 1] = np.nan\n"
            "    p = m.predict(x, np.arange(len(m.used_features)))\n"
            "    assert p.shape == (600,) and np.isfinite(p).all()\n")
    _without_scikit_learn(code, timeout=120)


def _without_scikit_learn(code: str, timeout: int) -> None:
    """Run `code` in a fresh interpreter, then check it imported neither scikit-learn nor scipy. Run twice:
    with the compiled kernels (numba's own set-up imports scipy.linalg to look for a BLAS, ~0.25 s, so there
    only scikit-learn is checked) and with `NUMBA_DISABLE_JIT=1` (nothing of ours imports scipy)."""
    for jit in (True, False):
        check = "'sklearn' not in sys.modules" + ("" if jit else " and 'scipy' not in sys.modules")
        full = code + (f"assert {check}, "
                       "sorted(k for k in sys.modules if k.startswith(('sklearn', 'scipy')))[:5]\n"
                       "print('ok')\n")
        env = {**os.environ, **({} if jit else {"NUMBA_DISABLE_JIT": "1"})}
        out = subprocess.run([sys.executable, "-c", full], capture_output=True, text=True, timeout=timeout,
                             cwd=Path(__file__).resolve().parents[1], env=env)
        assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_a_batch_run_with_the_packaged_forest_never_unpickles_it(tmp_path: Path) -> None:
    """`dedup batch` on a CRM file predicts with the forest's trees from start to end: the Fellegi-Sunter
    checks at either end of the run (`bind_population`, `drift_notes`) do not unpickle the scikit-learn
    estimator to find out that it is none (it cost ~140 MB of RSS at the end of a 100k-record run)."""
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from consumer.config import load_settings\n"
            "from consumer.generate import write_crm\n"
            "from consumer.io.batch import run_batch\n"
            f"d = Path({str(tmp_path)!r})\n"
            "write_crm(d / 'c.csv', d / 't.csv', 400, 3)\n"
            "summary, pipe = run_batch(d / 'c.csv', d / 'o.jsonl', load_settings(env={}), progress=False)\n"
            "assert summary.records == 400 and pipe.fuser.model.forest is not None\n")
    _without_scikit_learn(code, timeout=180)
