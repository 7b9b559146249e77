"""Late fusion: comparison features -> per-modality scores -> one fused score -> match / possible / no.

Two modes behind one interface:

- `rule`: the CRM paper's weighted sum (text 0.4, behaviour 0.35, device 0.25, threshold 0.75), with the
  weights renormalised over the modalities a pair actually has, so a record without logins is judged on
  what it has instead of being pulled down by a zero.
- `learned`: a scikit-learn classifier over the same features (`dedup train`), returning a probability.
  Gradient-boosted trees handle missing modalities natively (NaN) and learn interactions the rule cannot
  (a common name is weak evidence unless behaviour agrees).

Either way every decision keeps the per-modality scores as its explanation.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from consumer.config import FusionSettings
from consumer.encoders.base import Encoder, SupportRules, nanmean_weighted
from consumer.engine.forest import FOREST_SUFFIX, FastForest, forest_path, read_forest_file, write_forest_file

__all__ = ["EitherOf", "Fuser", "LearnedModel", "ModelError", "ScoreLayout", "either_of", "learned_thresholds",
           "manifest_path"]

#: Comparisons added after the packaged models were trained, for the weights fitted to a file: a model that
#: never saw one reads the pipeline without it (as before it existed) instead of refusing the pipeline.
#: `desc_idf`: descriptions' overlap; `*_rarer`: the rarer name's count; the rest: the clustering's learned bars.
FIT_ONLY_FEATURES = frozenset({"desc_idf", "given_rarer", "surname_rarer", "image_colour", "colour_agree",
                               "tier_alone", "part_agree", "core_idf"})

NAME_GATE = 0.35
#: Profiles with their own packaged model (consumer/data/<stem>.pkl + .json + .forest.npz); others the default.
PACKAGED_MODELS = {"listing": "fusion-listing"}
#: Legacy per-modality rule weights (`fusion.weight_<modality>`); other modalities use `fusion.weights`.
_LEGACY_WEIGHTS = ("text", "behaviour", "device")


class ModelError(RuntimeError):
    """The learned model file is missing, corrupt or was trained on other features."""


class ScoreLayout:
    """How the encoders' per-modality scores combine, derived from their `Contribution.scores` and the
    fusion settings: which composites exist (e.g. "text" = name + semantic + city + keys), their parts and
    weights, the rule's top-level modalities and weights, and the reported order (decisions, events)."""

    def __init__(self, encoders: Sequence[Encoder], settings: FusionSettings):
        self.coefficients: dict[str, float] = {}
        for enc in encoders:
            self.coefficients.update(enc.contribution.coefficients)
        self.coefficients.update(settings.coefficients)
        composites: dict[str, list[str]] = {}
        top: list[str] = []
        reported: list[str] = []
        for enc in encoders:
            for sc in enc.contribution.scores:
                if sc.part_of:
                    if sc.part_of not in composites:
                        composites[sc.part_of] = []
                        top.append(sc.part_of)
                    composites[sc.part_of].append(sc.name)
                else:
                    top.append(sc.name)
                if sc.report:
                    reported.append(sc.name)
        # Parts in the configured order first (it fixes the floating-point summation order), then the rest.
        self.parts: dict[str, list[tuple[str, float]]] = {}
        for comp, names in composites.items():
            ordered = [n for n in settings.parts if n in names] + [n for n in names if n not in settings.parts]
            self.parts[comp] = [(n, self._weight(settings.parts, n)) for n in ordered]
        legacy = {m: getattr(settings, f"weight_{m}") for m in _LEGACY_WEIGHTS}
        self.rule: list[tuple[str, float]] = [
            (m, settings.weights[m] if m in settings.weights else
             legacy[m] if m in legacy else self._weight(settings.weights, m)) for m in top]
        self.reported: tuple[str, ...] = tuple(list(composites) + reported)

    def _weight(self, configured: Mapping[str, float], name: str) -> float:
        if name in configured:
            return float(configured[name])
        if f"{name}.weight" in self.coefficients:
            return float(self.coefficients[f"{name}.weight"])
        raise ModelError(f"no fusion weight for score {name!r}: set fusion.weights/parts or declare "
                         f"'{name}.weight' in the encoder's coefficients")

    def digest(self) -> str:
        """Stable hash of everything the rule computes with (its version stamp)."""
        raw = repr((sorted(self.coefficients.items()), sorted(self.parts.items()), self.rule))
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


@dataclass
class LearnedModel:
    """A fitted classifier plus the feature list it was trained on (`features`, the comparator's at
    training time) and the ones it uses (`meta["used_features"]`, those not all-NaN in training). Loaded from
    its trees' file (`forest`, `consumer.engine.forest`), the model file (`pickled`) is unpickled, importing
    scikit-learn (~1 s of CPU), only when something reads `estimator`."""

    _estimator: Any
    features: tuple[str, ...]
    meta: dict[str, Any]
    forest: FastForest | None = field(default=None, repr=False, compare=False)
    pickled: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        #: Exact faster twin of the estimator's predict_proba (None: scikit-learn's own).
        self._fast = self.forest if self.forest is not None else FastForest.of(self._estimator)

    @property
    def estimator(self) -> Any:
        if self._estimator is None and self.pickled is not None:
            self._estimator = _unpickle(self.pickled)["estimator"]
        return self._estimator

    @property
    def estimator_unless_forest(self) -> Any:
        """`estimator`, or None for a forest: its trees predict, and reading it would unpickle scikit-learn."""
        return None if self.forest is not None else self.estimator

    @property
    def used_features(self) -> tuple[str, ...]:
        return tuple(self.meta.get("used_features", self.features))

    def columns_for(self, pipeline_features: Sequence[str], absent: Collection[str] = ()) -> np.ndarray:
        """Column indices of the used features in a pipeline's feature matrix (-1: `absent`, a modality the
        profile does not have, fed as NaN like a record without it), or ModelError when the pipeline's
        encoders do not produce the features this model was trained on (or add ones it never saw, whose
        evidence it would silently ignore)."""
        return feature_columns(self.features, self.used_features, pipeline_features, absent)

    @classmethod
    def packaged_fits(cls, pipeline_features: Sequence[str], profile: str | None = None) -> bool:
        """Whether the model shipped for `profile` can read a pipeline's features (`columns_for` raises no
        ModelError), from its manifest alone (which lists the model's features). Why: unpickling the
        model imports scikit-learn (1.2-2.8 s of CPU here), which a person file that is fitted anyway,
        because the shipped CRM model cannot read it, never uses."""
        manifest = json.loads((resources.files("consumer") / "data"
                               / f"{PACKAGED_MODELS.get(profile or '', 'fusion-default')}.json").read_bytes())
        try:
            feature_columns(manifest["features"], manifest["used_features"], pipeline_features)
        except ModelError:
            return False
        return True

    def predict(self, feats: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Duplicate probability per pair; `columns` from `columns_for`."""
        if len(feats) == 0:
            return np.zeros(0, np.float32)
        x = feats[:, columns]
        if (columns < 0).any():
            x[:, columns < 0] = np.nan
        if self._fast is not None:
            return self._fast.proba(x).astype(np.float32)
        return self.estimator.predict_proba(x)[:, 1].astype(np.float32)

    def save(self, path: str | Path) -> str:
        """Write the model, its manifest (`manifest_path`: the meta plus the file's sha256, which `load`
        requires before it unpickles anything) and its trees' file (`forest_path`) where it is such a forest."""
        blob = pickle.dumps({"estimator": self.estimator, "features": self.features, "meta": self.meta})
        Path(path).write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        manifest = {"features": list(self.features), **{k: v for k, v in self.meta.items() if k != "sha256"}}
        manifest_path(path).write_text(json.dumps({**manifest, "sha256": digest}, indent=2) + "\n")
        write_forest_file(path, self._fast, digest, self.features, self.meta)
        return digest

    @classmethod
    def load(cls, path: str | Path | None = None, profile: str | None = None) -> LearnedModel:
        """Load a model file (None = the package's default for `profile`: listings have their own)."""
        try:
            if path is None:
                stem, here = PACKAGED_MODELS.get(profile or "", "fusion-default"), resources.files("consumer") / "data"
                blob, manifest = (here / f"{stem}.pkl").read_bytes(), (here / f"{stem}.json").read_bytes()
                trees: Any = here / f"{stem}{FOREST_SUFFIX}"
            else:
                blob, manifest = Path(path).read_bytes(), _read_manifest(Path(path))
                trees = forest_path(path)
            digest = hashlib.sha256(blob).hexdigest()
            _check_manifest(digest, manifest, path)
            # The trees' file written with this very model file (its sha256): predict without unpickling it.
            data = read_forest_file(trees, digest) or _unpickle(blob)
        except ModelError:
            raise
        except FileNotFoundError as exc:
            raise ModelError(f"learned fusion model not found ({path or 'packaged default'}); "
                             "train one with `dedup train` or use --fusion rule") from exc
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to a user
            raise ModelError(f"cannot load learned fusion model {path or '(default)'}: {exc}; "
                             "retrain it with `dedup train`") from exc
        if not isinstance(data, dict) or not data.get("features"):
            raise ModelError(f"learned fusion model {path or '(default)'} stores no feature list; "
                             "retrain it with `dedup train`")
        forest = data.get("forest")
        model = cls(data["estimator"], tuple(data["features"]), dict(data.get("meta", {})), forest,
                    blob if forest is not None else None)
        model.meta["sha256"] = digest
        point = json.loads(manifest).get("operating_point")
        if point is not None:
            model.meta["operating_point"] = _operating_point(point, path)
        return model


def _unpickle(blob: bytes) -> Any:
    return pickle.load(io.BytesIO(blob))  # noqa: S301 - only bytes whose sha256 `load` checked against the manifest


def feature_columns(features: Sequence[str], used: Sequence[str], pipeline_features: Sequence[str],
                    absent: Collection[str] = ()) -> np.ndarray:
    """`LearnedModel.columns_for` of a model trained on `features` that uses `used`."""
    have = list(pipeline_features)
    missing = [f for f in used if f not in have and f not in absent]
    unknown = [f for f in have if f not in features and f not in FIT_ONLY_FEATURES]
    if missing or unknown:
        detail = []
        if missing:
            detail.append(f"it needs {missing}, which this profile's encoders do not produce")
        if unknown:
            detail.append(f"this profile's encoders add {unknown}, which it was not trained on")
        raise ModelError("learned fusion model does not fit this pipeline: " + "; ".join(detail)
                         + "; train one for this profile with `dedup train` (labels) or `dedup fit` (no labels), "
                         "or use --fusion rule")
    return np.array([have.index(f) if f in have else -1 for f in used], np.int64)


class EitherOf:
    """A pair's probability as the larger of several models' (a match when either calls it one).

    Why: on a file unlike its training data a shipped model and the weights fitted to the file each see
    part of the truth: the shipped model knows the hard negatives it was trained on and stays precise,
    the fitted weights know this file's codes and words and find most of its duplicates (Amazon-Google,
    no labels: shipped 0.24, fitted 0.20, either 0.27; Abt-Buy 0.31 / 0.76 / 0.76). Columns: the union of
    the models' used features, in `used_features` order."""

    def __init__(self, models: Sequence[LearnedModel]) -> None:
        used: list[str] = []
        for m in models:
            used += [f for f in m.used_features if f not in used]
        self.models = list(models)
        self.used_features = tuple(used)
        self._cols = [np.array([used.index(f) for f in m.used_features], np.int64) for m in self.models]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.max([m.predict(x, c) for m, c in zip(self.models, self._cols)], axis=0).astype(np.float64)
        return np.stack([1 - p, p], axis=1)


def either_of(models: Sequence[LearnedModel], meta: dict[str, Any]) -> LearnedModel:
    """One `LearnedModel` over `EitherOf(models)`, reading the first model's feature list."""
    est = EitherOf(models)
    return LearnedModel(est, models[0].features, {**meta, "used_features": list(est.used_features)})


def _operating_point(point: Any, path: str | Path | None) -> dict[str, float]:
    """The manifest's `operating_point` ({"match": m, "possible": p}, 0 <= p <= m <= 1), or ModelError."""
    try:
        match, possible = float(point["match"]), float(point["possible"])
    except (TypeError, KeyError, ValueError):
        match = possible = float("nan")
    if not 0 <= possible <= match <= 1:
        raise ModelError(f"manifest of {path or 'the packaged model'}: operating_point needs numbers "
                         "0 <= possible <= match <= 1")
    return {"match": match, "possible": possible}


def learned_thresholds(settings: FusionSettings, model: LearnedModel, link: float | None = None) -> tuple[float, float]:
    """(match, possible) thresholds of a learned model: the configured ones, else a linked file's `link`
    (`consumer.config.link_match`; not for a model fitted to labels, whose answers chose its point), else the
    model's operating point (its manifest), else 0.5 / 0.25. Possible is never above match."""
    point = model.meta.get("operating_point") or {"match": 0.5, "possible": 0.25}
    own = link if link is not None and model.meta.get("kind") != "labelled" else point["match"]
    match = own if settings.learned_match is None else settings.learned_match
    possible = point["possible"] if settings.learned_possible is None else settings.learned_possible
    return float(match), float(min(possible, match))


def manifest_path(model: str | Path) -> Path:
    """Where a model file's manifest lives: `model.pkl` -> `model.json` (`dedup train` writes it)."""
    p = Path(model)
    return p.with_name(p.name + ".manifest.json") if p.suffix == ".json" else p.with_suffix(".json")


def _read_manifest(model: Path) -> bytes:
    try:
        return manifest_path(model).read_bytes()
    except FileNotFoundError:
        if not model.exists():
            raise
        raise ModelError(f"refusing to load {model}: no manifest {manifest_path(model)} with its sha256. A model "
                         "file is a pickle and loading one runs code: only files written by `dedup train` "
                         "(which writes the manifest) are loaded; see docs/security.md") from None


def _check_manifest(actual: str, manifest: bytes, path: str | Path | None) -> None:
    """Refuse, before unpickling, a model whose sha256 (`actual`) is not the one its manifest names."""
    try:
        expected = json.loads(manifest)["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"manifest of {path or 'the packaged model'} is not valid (needs \"sha256\")") from None
    if not isinstance(expected, str) or not hmac.compare_digest(actual, expected.lower()):
        raise ModelError(f"refusing to load {path or 'the packaged model'}: its sha256 {actual[:12]}... does not "
                         f"match its manifest {manifest_path(path) if path else ''} (changed after training?); "
                         "loading an unknown pickle runs code, see docs/security.md")


class Fuser:
    """Scores candidate pairs and labels them: 2 = match, 1 = possible, 0 = no match. `encoders` and `features`
    (the comparator's feature order) define the per-modality scores and the model's input; none is named here."""

    def __init__(self, settings: FusionSettings, model: LearnedModel | None, encoders: Sequence[Encoder],
                 features: Sequence[str], absent: Collection[str] = (), link_match: float | None = None):
        self.settings = settings
        self.mode = settings.mode
        self._encoders = list(encoders)
        self.features = tuple(features)
        self.layout = ScoreLayout(self._encoders, settings)
        #: Per-modality score names, in the order decisions and events report them.
        self.modalities = self.layout.reported
        self._threads: Any = None  # threadpoolctl's controller, found once, dropped by close()
        if self.mode == "learned":
            if model is None:
                raise ValueError("learned fusion needs a loaded model (LearnedModel.load; "
                                 "consumer.io.artifacts.build_pipeline loads the configured one)")
            self.model: LearnedModel | None = model
            self._columns = self.model.columns_for(self.features, absent)
            self.match_threshold, self.possible_threshold = learned_thresholds(settings, self.model, link_match)
            self.version = f"learned:{self.model.meta.get('sha256', 'unknown')[:12]}"
            self._name_gate = bool(self.model.meta.get("name_gate", True))
        else:
            self.model = None
            self._name_gate = True
            self.match_threshold = settings.match_threshold
            self.possible_threshold = settings.possible_threshold
            self.version = f"rule:{self.layout.digest()}"
        self._support = SupportRules(self._encoders, self.features, self.match_threshold)

    def thread_limits(self) -> AbstractContextManager[Any]:
        """One OpenMP thread while predicting, as a context manager the pipeline holds around its fuse step.

        Why: scikit-learn's OpenMP pool fights onnxruntime's threads for the cores and makes each
        micro-batch prediction ~6x slower (measured); one thread predicts a batch in ~ms. Scoped rather
        than set once for the whole process (what this used to do, and never undo), so nothing else in
        the process inherits the limit. Rule fusion runs no OpenMP: a no-op."""
        if self.model is None:
            return nullcontext()
        if self._threads is None:  # scanning the loaded libraries costs ~ms: once per fuser
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=1, user_api="openmp")

    def close(self) -> None:
        """Drop the thread-pool controller (the limit itself is only held inside `thread_limits`)."""
        self._threads = None

    def modality_scores(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        """Per-modality similarities in [0, 1] (NaN = modality absent): every encoder's scores, then the
        composites (weighted means over their present parts). The explanation of every decision."""
        by_name = {name: feats[:, j] for j, name in enumerate(self.features)}
        coef = self.layout.coefficients
        mods: dict[str, np.ndarray] = {}
        for enc in self._encoders:
            mods.update(enc.scores(by_name, coef))
        for comp, parts in self.layout.parts.items():
            mods[comp] = nanmean_weighted([(mods[n], w) for n, w in parts]).astype(np.float32)
        return mods

    def score(self, feats: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Fused score per pair plus the per-modality scores that explain it."""
        mods = self.modality_scores(feats)
        if self.model is not None:
            # Name gate: pairs whose names barely overlap are never duplicates for the model (measured:
            # none of ~180k such candidate pairs scored >= 0.25), and skipping them halves the cost.
            # A model fitted without labels (Fellegi-Sunter) weighs the name fields itself: no gate.
            name = mods.get("name") if self._name_gate else None
            run = ~(name < NAME_GATE) if name is not None else np.ones(len(feats), bool)
            fused = np.zeros(len(feats), np.float32)
            if run.any():
                fused[run] = self.model.predict(feats[run], self._columns)
        else:
            fused = nanmean_weighted([(mods[m], w) for m, w in self.layout.rule])
            fused = np.nan_to_num(fused, nan=0.0).astype(np.float32)
        return self._support.apply(feats, fused), mods

    def supported(self, feats: np.ndarray) -> np.ndarray:  # per pair: an encoder's `Support` rule holds
        return self._support.held(feats)

    def label(self, fused: np.ndarray) -> np.ndarray:
        return np.where(fused >= self.match_threshold, 2, np.where(fused >= self.possible_threshold, 1, 0))
