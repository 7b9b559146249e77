"""Write the trees' files of the shipped learned-fusion models: `consumer/data/fusion-*.pkl` ->
`fusion-*.forest.npz` (`consumer.engine.forest`), so a service loads and runs them without scikit-learn.

    python export/fusion_forests.py                  # every consumer/data/fusion-*.pkl
    python export/fusion_forests.py path/to/model.pkl

`LearnedModel.save` (`dedup train`, `export/train_fusion.py`, ...) writes the file with the model; this
rewrites it for model files written before, or after a change of the file's format. Each is checked
bit-equal to scikit-learn's `predict_proba` on random rows (NaNs included) before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", help="model files (default: consumer/data/fusion-*.pkl)")
    args = ap.parse_args()
    from consumer.engine.forest import FastForest, forest_path, read_forest_file, write_forest_file
    from consumer.engine.fusion import LearnedModel

    for path in [Path(p) for p in args.models] or sorted((ROOT / "consumer" / "data").glob("fusion-*.pkl")):
        LearnedModel.load(path)  # refuses a model file its manifest does not name, before it is unpickled here
        blob = path.read_bytes()
        data = pickle.load(io.BytesIO(blob))  # noqa: S301 - sha256 checked against its manifest just above
        est = data["estimator"]
        forest = FastForest.of(est)
        if forest is None:
            print(f"{path}: {type(est).__name__} is not a forest FastForest reproduces; nothing written")
            continue
        rng = np.random.default_rng(0)
        x = rng.uniform(-0.2, 1.2, size=(20_000, est.n_features_in_))
        x[rng.uniform(size=x.shape) < 0.2] = np.nan
        if not np.array_equal(forest.proba(x), est.predict_proba(x)[:, 1]):
            raise SystemExit(f"{path}: the trees do not reproduce predict_proba; nothing written")
        digest = hashlib.sha256(blob).hexdigest()
        if not write_forest_file(path, forest, digest, data["features"], data.get("meta", {})):
            raise SystemExit(f"{path}: its meta does not survive JSON; nothing written")
        back = read_forest_file(forest_path(path), digest)
        assert back is not None and np.array_equal(back["forest"].proba(x), est.predict_proba(x)[:, 1])
        print(f"{forest_path(path)}: {forest_path(path).stat().st_size} bytes, {len(est._predictors)} trees, "
              f"for {path.name} sha256 {digest[:12]}")


if __name__ == "__main__":
    main()
