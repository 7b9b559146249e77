"""Exact, faster prediction for the learned fusion model (a scikit-learn HistGradientBoosting forest), without
importing scikit-learn to predict.

Why: fusion is ~30% of the deciding thread, and unpickling the shipped models imported scikit-learn and scipy
(~0.95 s of a service member's ~1.9 s start-up CPU) only to read their trees. `FastForest.of` copies a fitted
estimator's trees into flat node arrays; `save` writes them to an .npz beside the model file (numpy only, no
pickle; `python export/fusion_forests.py` rewrites the packaged ones) and `load` reads them back, so the
packaged models predict with numpy alone.

Prediction, bit-equal to `predict_proba` (`tests/test_forest.py`), by per-feature leaf tables (QuickScorer's
bitvectors): each tree's leaves are numbered left to right; a split that sends a row right rules out the
leaves of its left subtree, and the row's leaf is the leftmost one no split ruled out. A feature's split
thresholds, sorted, cut its values into bins; for each bin (and NaN) the table holds, per tree, the AND of
what that feature's splits rule out there. A batch is one `searchsorted` and one row gather + AND per feature
(not one gather per tree level): ~1.4x cheaper than `predict_proba` for one row, ~7x at 32 rows (the
clustering's `Pipeline.score_pairs`), ~3x at 256-4096 rows (a micro-batch; scikit-learn's binned path, which
this replaces, was ~20% faster than its float one). Exact: bin b holds the values v with
`t[b-1] < v <= t[b]`, so a split on threshold t[k] sends v right iff b > k, the same `<=` on the same
float64s; NaN follows each split's `missing_go_to_left`; the leaf values are added to the baseline one tree at
a time in tree order (a sequential `cumsum`, like scikit-learn's `raw += predictor.predict(X)`). A forest whose
trees are too wide or deep for the tables walks all trees at once instead (`_walk`, the same tests per node).

Where numba is installed (a dependency) `proba` runs the same tables as one compiled loop over the rows
(`_table_raw`: no rows x trees temporaries; ~4x less time at a micro-batch's ~400 pairs, ~7x at 4,000 rows,
~8x at 32), bit-equal to the numpy form, which stays as the reference and the path without numba
(`tests/test_forest.py` compares them).

The probability is scipy's `expit` (what scikit-learn's binomial loss returns), reproduced bit for bit as
`1 / (1 + exp(-raw))` with the C library's `exp` (`math.exp`, the one scipy calls; numpy's vectorised `exp`
may differ in the last bit on some CPUs): importing scipy.special alone costs ~0.47 s. Anything `of` does not
reproduce (categorical splits, several trees per iteration, another estimator) gets no `FastForest` and stays
on `predict_proba`.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from consumer.engine.compiled import Kernel

__all__ = ["CHUNK", "FOREST_SUFFIX", "FastForest", "expit", "forest_path", "read_forest_file", "write_forest_file"]

#: Rows per block (the working arrays are rows x trees): 512 measured fastest at 1-4k rows, 2 cores.
CHUNK = 512
#: The trees' file beside a model file: `fusion-default.pkl` -> `fusion-default.forest.npz`.
FOREST_SUFFIX = ".forest.npz"
FORMAT = 1
#: Node arrays of a forest file, concatenated over trees (`sizes`: nodes per tree; `left`/`right` per tree).
NODE_KEYS = ("sizes", "feature", "threshold", "missing_left", "left", "right", "is_leaf", "value")
#: Deepest tree the leaf tables handle (path codes are int64); deeper forests walk in blocks.
_MAX_TABLE_DEPTH = 40


def forest_path(model: str | Path) -> Path:
    """Where a model file's trees live: `model.pkl` -> `model.forest.npz`."""
    return Path(model).with_suffix(FOREST_SUFFIX)


def expit(raw: np.ndarray) -> np.ndarray:
    """scipy.special.expit(raw) bit for bit: 1 / (1 + exp(-raw)), exp from the C library (`math.exp`)."""
    z = -np.asarray(raw, np.float64)
    near = z > 709.0  # exp overflows just above 709.78: math.exp raises where C returns inf
    e = np.fromiter(map(math.exp, np.where(near, 0.0, z).tolist()), np.float64, len(z))
    if near.any():
        e[near] = [_exp(v) for v in z[near].tolist()]
    return 1.0 / (1.0 + e)


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


class FastForest:
    """All trees of a binary gradient-boosted forest as flat node arrays (`NODE_KEYS`) plus the baseline."""

    def __init__(self, nodes: Mapping[str, np.ndarray], baseline: float, n_features: int):
        self._nodes = {k: np.asarray(nodes[k]) for k in NODE_KEYS}
        self._baseline = float(baseline)
        self._start = 0.0 + self._baseline  # scikit-learn's raw = zeros, then += baseline
        self.n_features = int(n_features)
        sizes = self._nodes["sizes"].astype(np.int64)
        if len(sizes) == 0 or (sizes < 1).any() or sizes.sum() != len(self._nodes["value"]):
            raise ValueError("forest arrays do not match their tree sizes")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        shift = np.repeat(starts, sizes)
        leaf = self._nodes["is_leaf"].astype(bool)
        here = np.arange(len(leaf), dtype=np.int64)
        # A leaf points to itself, so every row can take the same number of steps (the deepest tree's).
        self._left = np.where(leaf, here, self._nodes["left"].astype(np.int64) + shift)
        self._right = np.where(leaf, here, self._nodes["right"].astype(np.int64) + shift)
        self._feature = np.where(leaf, 0, self._nodes["feature"]).astype(np.int64)
        inside = (self._left >= shift) & (self._left < shift + np.repeat(sizes, sizes)) & (self._right >= shift) & (
            self._right < shift + np.repeat(sizes, sizes)) & (self._feature >= 0) & (self._feature < self.n_features)
        if not inside.all():
            raise ValueError("forest arrays point outside their tree or feature columns")
        self._threshold = self._nodes["threshold"].astype(np.float64)
        self._missing_left = self._nodes["missing_left"].astype(bool)
        self._value = self._nodes["value"].astype(np.float64)
        self._roots = starts
        depth, code = self._paths(leaf)
        self._depth = int(depth.max())
        self._tables = self._leaf_tables(leaf, depth, code, np.repeat(np.arange(len(sizes)), sizes))

    def _paths(self, leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each node's depth and path code (left = 0, right = 1 per level, root first), level by level."""
        depth = np.zeros(len(leaf), np.int64)
        code = np.zeros(len(leaf), np.int64)
        seen = np.zeros(len(leaf), bool)
        seen[self._roots] = True
        frontier = self._roots[~leaf[self._roots]]
        d = 0
        while len(frontier):
            d += 1
            lo, hi = self._left[frontier], self._right[frontier]
            kids = np.concatenate([lo, hi])
            if seen[kids].any() or len(np.unique(kids)) != len(kids):
                raise ValueError("forest arrays are not trees")
            seen[kids] = True
            depth[kids] = d
            if d <= _MAX_TABLE_DEPTH:
                code[lo], code[hi] = 2 * code[frontier], 2 * code[frontier] + 1
            frontier = kids[~leaf[kids]]
        if not seen.all():
            raise ValueError("forest arrays hold nodes no tree reaches")
        return depth, code

    def _leaf_tables(self, leaf: np.ndarray, depth: np.ndarray, code: np.ndarray,
                     tree: np.ndarray) -> dict[str, Any] | None:
        """Per-feature tables of the leaves each bin rules out (module docstring); None where a tree has over 64
        leaves or is deeper than `_MAX_TABLE_DEPTH` (then `proba` walks the trees)."""
        trees, top = len(self._roots), self._depth
        leaves = np.flatnonzero(leaf)
        counts = np.bincount(tree[leaves], minlength=trees)
        width = int(counts.max())
        if width > 64 or top > _MAX_TABLE_DEPTH or np.isnan(self._threshold[~leaf]).any():
            return None
        dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(t).bits >= width)
        # Leaves left to right: sorted by tree, then by path code padded to the deepest level.
        scale = np.int64(1) << np.int64(top + 1)
        key = tree * scale + (code << (top - depth))
        ordered = leaves[np.argsort(key[leaves], kind="stable")]
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(ordered)) - np.repeat(first, counts)
        values = np.zeros((trees, width), np.float64)
        values[tree[ordered], rank] = self._value[ordered]
        # A split's left subtree: the leaves whose padded code starts with the split's code then 0.
        split = np.flatnonzero(~leaf)
        shift = top - depth[split] - 1
        base = tree[split] * scale
        lo = np.searchsorted(key[ordered], base + ((2 * code[split]) << shift)) - first[tree[split]]
        hi = np.searchsorted(key[ordered], base + ((2 * code[split] + 1) << shift)) - first[tree[split]]
        keep = ~(_low_bits(hi) ^ _low_bits(lo))  # what going right leaves standing
        every = np.iinfo(dtype).max
        features = []
        for f in np.unique(self._feature[split]):
            on = split[self._feature[split] == f]
            mask = keep[self._feature[split] == f].astype(dtype)
            cuts = np.unique(self._threshold[on])
            steps = np.full((len(cuts) + 1, trees), every, dtype)
            np.bitwise_and.at(steps, (np.searchsorted(cuts, self._threshold[on]) + 1, tree[on]), mask)
            missing = np.full((1, trees), every, dtype)
            right = ~self._missing_left[on]
            np.bitwise_and.at(missing, (np.zeros(right.sum(), np.int64), tree[on][right]), mask[right])
            features.append((int(f), cuts, np.concatenate([np.bitwise_and.accumulate(steps, axis=0), missing])))
        lowest = None
        if width <= 16:  # the lowest set bit by lookup
            n = np.arange(1 << np.iinfo(dtype).bits, dtype=np.int64)
            lowest = np.frexp((n & -n).astype(np.float64))[1].astype(np.intp) - 1
        return {"features": features, "values": values.ravel(), "offsets": np.arange(trees, dtype=np.intp) * width,
                "dtype": dtype, "lowest": lowest}

    @classmethod
    def of(cls, estimator: Any) -> FastForest | None:
        """A FastForest for `estimator`, or None where it would not reproduce scikit-learn exactly."""
        if not type(estimator).__module__.startswith("sklearn."):
            return None  # weights fitted to a file (Fellegi-Sunter): no scikit-learn to import (1-3 s of CPU)
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier

            if (type(estimator) is not HistGradientBoostingClassifier or estimator.n_trees_per_iteration_ != 1
                    or type(estimator._loss.link).__name__ != "LogitLink"  # the probability is expit(raw)
                    or any(its[0].nodes["is_categorical"].any() for its in estimator._predictors)):
                return None
            trees = [its[0].nodes for its in estimator._predictors]
            flat = np.concatenate(trees)
            nodes = {"sizes": np.array([len(t) for t in trees], np.int64), "feature": flat["feature_idx"],
                     "threshold": flat["num_threshold"], "missing_left": flat["missing_go_to_left"].astype(bool),
                     "left": flat["left"], "right": flat["right"], "is_leaf": flat["is_leaf"].astype(bool),
                     "value": flat["value"]}
            baseline = np.asarray(estimator._baseline_prediction, np.float64).ravel()
            if baseline.shape != (1,):
                return None
            return cls(nodes, baseline[0], estimator.n_features_in_)
        except (AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError):
            return None  # another scikit-learn layout: keep its own predict

    def save(self, path: str | Path, **info: str | Sequence[str]) -> None:
        """Write the trees to an .npz that `load` reads with numpy alone (no pickle), with `info` (strings or
        lists of strings: the model file's sha256, its features, its meta as JSON)."""
        extra = {f"info_{k}": np.asarray(v if isinstance(v, str) else list(v), dtype=str) for k, v in info.items()}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, format=np.int64(FORMAT), baseline=np.float64(self._baseline),
                                n_features=np.int64(self.n_features), **self._nodes, **extra)

    @classmethod
    def load(cls, source: str | Path | bytes) -> tuple[FastForest, dict[str, Any]]:
        """A forest written by `save` (a path or the file's bytes) and its `info` (str or list[str] values)."""
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as z:
            if int(z["format"]) != FORMAT:
                raise ValueError(f"forest file format {int(z['format'])}, this version reads {FORMAT}")
            forest = cls({k: z[k] for k in NODE_KEYS}, float(z["baseline"]), int(z["n_features"]))
            info = {k[len("info_"):]: z[k].tolist() for k in z.files if k.startswith("info_")}
        return forest, info

    def proba(self, x: np.ndarray) -> np.ndarray:
        """P(duplicate) per row of `x` (the model's feature columns, NaN = missing), float64."""
        x = np.ascontiguousarray(x, np.float64)
        raw = np.empty(len(x), np.float64)
        kernel = _KERNEL.get() if self._tables is not None and self._tables["features"] else None
        if kernel is not None and len(x):
            kernel(x, *self._packed, self._start, raw)
            return expit(raw)
        path = self._walk if self._tables is None else self._table
        for lo in range(0, len(x), CHUNK):
            raw[lo: lo + CHUNK] = path(x[lo: lo + CHUNK])
        return expit(raw)

    @cached_property
    def _packed(self) -> tuple[Any, ...]:
        """The leaf tables as flat arrays for the compiled `_table_raw`: feature of each table, its cuts'
        and rows' starts, all cuts, all rows (one 2-d array), the leaf values and their width per tree."""
        t = self._tables
        assert t is not None
        feats = t["features"]
        feature = np.array([f for f, _, _ in feats], np.int64)
        cut_start = np.concatenate([[0], np.cumsum([len(c) for _, c, _ in feats])]).astype(np.int64)
        cuts = np.concatenate([c for _, c, _ in feats]).astype(np.float64)
        table_start = np.concatenate([[0], np.cumsum([len(tb) for _, _, tb in feats])[:-1]]).astype(np.int64)
        table = np.ascontiguousarray(np.concatenate([tb for _, _, tb in feats]))
        values = np.ascontiguousarray(t["values"], np.float64)
        return feature, cut_start, cuts, table_start, table, values, len(values) // table.shape[1]

    def _sum(self, leaf_values: np.ndarray) -> np.ndarray:
        """baseline + tree 1 + tree 2 + ..., added in tree order like scikit-learn's `raw += tree` (a
        sequential cumsum, in place: `leaf_values`, rows x trees, is overwritten)."""
        leaf_values[:, 0] += self._start
        return np.cumsum(leaf_values, axis=1, out=leaf_values)[:, -1].copy()

    def _table(self, x: np.ndarray) -> np.ndarray:
        t = self._tables
        assert t is not None
        standing = np.full((len(x), len(self._roots)), np.iinfo(t["dtype"]).max, t["dtype"])
        for f, cuts, table in t["features"]:
            col = x[:, f]
            bins = np.searchsorted(cuts, col)
            bins[np.isnan(col)] = len(cuts) + 1
            standing &= table[bins]
        if t["lowest"] is not None:
            leaf = t["lowest"].take(standing)
        else:
            low = standing & (~standing + standing.dtype.type(1))  # the lowest set bit alone
            leaf = np.frexp(low.astype(np.float64))[1].astype(np.intp) - 1
        leaf += t["offsets"]
        return self._sum(t["values"].take(leaf))

    def _walk(self, x: np.ndarray) -> np.ndarray:
        n, trees = len(x), len(self._roots)
        node = np.broadcast_to(self._roots, (n, trees)).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self._depth):
            v = x[rows, self._feature[node]]
            left = np.where(np.isnan(v), self._missing_left[node], v <= self._threshold[node])
            node = np.where(left, self._left[node], self._right[node])
        return self._sum(self._value[node])


#: Bit index of an isolated bit b (a power of two): `_LOWEST_BIT[(b * _DE_BRUIJN) >> 58]` (64-bit wrap).
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.zeros(64, np.int64)
_LOWEST_BIT[((np.uint64(1) << np.arange(64, dtype=np.uint64)) * _DE_BRUIJN) >> np.uint64(58)] = np.arange(64)
_ONE_U64, _SHIFT_58 = np.uint64(1), np.uint64(58)


def _table_raw(x, feature, cut_start, cuts, table_start, table, values, width, start,
               out):  # pragma: no cover - compiled (`_KERNEL`); the numpy form is `FastForest._table`
    """`FastForest._table` row by row, fused: the same bins (numpy's `searchsorted`, side left; NaN past the
    last bin), the same ANDs, the same lowest standing leaf, the leaf values added to the baseline in tree
    order. No rows x trees temporaries: ~4x less time at a micro-batch's ~400 pairs, ~7x at 4,000."""
    trees = table.shape[1]
    standing = np.empty(trees, table.dtype)
    for r in range(x.shape[0]):
        standing[:] = table[0, 0] | ~table[0, 0]  # every bit set, in the table's dtype
        for fi in range(feature.shape[0]):
            v = x[r, feature[fi]]
            lo, hi = cut_start[fi], cut_start[fi + 1]
            if np.isnan(v):
                b = hi - lo + 1
            else:
                a, z = lo, hi
                while a < z:
                    m = (a + z) >> 1
                    if cuts[m] < v:
                        a = m + 1
                    else:
                        z = m
                b = a - lo
            row = table_start[fi] + b
            for t in range(trees):
                standing[t] &= table[row, t]
        s = np.uint64(standing[0])
        acc = start + values[_LOWEST_BIT[((s & (~s + _ONE_U64)) * _DE_BRUIJN) >> _SHIFT_58]]
        for t in range(1, trees):
            s = np.uint64(standing[t])
            acc = acc + values[t * width + _LOWEST_BIT[((s & (~s + _ONE_U64)) * _DE_BRUIJN) >> _SHIFT_58]]
        out[r] = acc


_KERNEL = Kernel(_table_raw)


def _low_bits(n: np.ndarray) -> np.ndarray:
    """2**n - 1 as uint64 (n in 0..64)."""
    n = np.asarray(n, np.int64)
    one = np.uint64(1) << np.minimum(n, 63).astype(np.uint64)
    return np.where(n >= 64, np.uint64(np.iinfo(np.uint64).max), one - np.uint64(1))


def write_forest_file(model: str | Path, forest: FastForest | None, sha256: str, features: Sequence[str],
                      meta: Mapping[str, Any]) -> bool:
    """Write the trees' file beside the model file `model` (whose sha256 is `sha256`, holding `features` and
    `meta`), so `read_forest_file` can stand in for unpickling it. Where `forest` is None (not a forest
    `FastForest.of` reproduces) or `meta` does not survive JSON, remove a stale one instead: False."""
    path = forest_path(model)
    try:
        text = json.dumps(dict(meta))
        fits = forest is not None and json.loads(text) == dict(meta)
    except (TypeError, ValueError):
        fits = False
    if not fits or forest is None:
        path.unlink(missing_ok=True)
        return False
    forest.save(path, model_sha256=sha256, features=list(features), meta=text)
    return True


def read_forest_file(source: Any, sha256: str) -> dict[str, Any] | None:
    """The model file's dict (`estimator` None, `features`, `meta`, plus `forest`) from the trees' file (a path
    or an importlib Traversable) written for the model file whose sha256 is `sha256`; None where it is absent,
    unreadable or was written for another model file (then the caller unpickles the model file)."""
    try:
        forest, info = FastForest.load(source.read_bytes())
        if info.get("model_sha256") != sha256:
            return None
        return {"estimator": None, "features": list(info["features"]), "meta": json.loads(info["meta"]),
                "forest": forest}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
