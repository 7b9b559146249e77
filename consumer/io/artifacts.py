"""Loading what the core needs from disk, outside the core: the ONNX text encoder and the learned model.

Why a separate step: `Pipeline(...)` is pure (it takes loaded encoder and model objects and reads no
file), so tests, the service's state reloads and evaluation runs can build many pipelines around one
loaded transformer and one unpickled model, and nothing surprising happens at construction. Runners call
`build_pipeline`, which loads only what the profile and fusion mode use and was not handed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders import needs_image_model, needs_text_model
from consumer.engine.candidate_pool import merge_candidates
from consumer.engine.cores import usable_cores
from consumer.engine.fusion import LearnedModel
from consumer.engine.keycounts import KeyCounts
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record

__all__ = ["Artifacts", "build_pipeline", "load_artifacts", "load_text_encoder", "warm_kernels"]

log = logging.getLogger("dedup.io")


@dataclass(frozen=True)
class Artifacts:
    """What was loaded and is handed to `Pipeline`: None where the settings need none."""

    text_encoder: Any = None
    model: LearnedModel | None = None
    image_encoder: Any = None


def load_text_encoder(settings: Settings, *, encode_in_background: bool = False) -> Any:
    """The text encoder of `encoders.text_backend` (the static table, or the ONNX transformer: onnxruntime is
    heavy and imported only then). With `encode_in_background` the automatic thread count leaves one core to
    the deciding thread (see `Pipeline.__init__`)."""
    from consumer.encoders.static_text import make_text_encoder

    enc = settings.encoders
    threads = enc.threads or (max(1, usable_cores() - 1) if encode_in_background else None)
    return make_text_encoder(enc, threads=threads)


def load_image_encoder(settings: Settings, *, encode_in_background: bool = False) -> Any:
    """The ONNX image model of the manifest in `encoders.model_dir` (sha256-checked; onnxruntime and Pillow
    are imported only for profiles with images)."""
    from consumer.encoders.image import ImageModel

    enc = settings.encoders
    threads = enc.threads or (max(1, usable_cores() - 1) if encode_in_background else None)
    return ImageModel(enc.model_dir, device=enc.device, threads=threads)


def load_artifacts(settings: Settings, *, text_encoder: Any = None, model: LearnedModel | None = None,
                   image_encoder: Any = None, encode_in_background: bool = False) -> Artifacts:
    """Load what `settings` need that was not passed in: the text encoder when the profile uses it, the
    image model when it has images, the learned model (manifest-checked, `LearnedModel.load`; a profile's
    packaged default when none is configured) in learned fusion mode."""
    if text_encoder is None and needs_text_model(settings):
        text_encoder = load_text_encoder(settings, encode_in_background=encode_in_background)
    if image_encoder is None and needs_image_model(settings):
        image_encoder = load_image_encoder(settings, encode_in_background=encode_in_background)
    if model is None and settings.fusion.mode == "learned":
        model = LearnedModel.load(settings.fusion.learned_model, profile=settings.profile.name)
    return Artifacts(text_encoder, model, image_encoder)


def build_pipeline(settings: Settings, *, text_encoder: Any = None, model: LearnedModel | None = None,
                   image_encoder: Any = None, encode_in_background: bool = False,
                   variant_slots: list[list[int]] | None = None, hold_index_only: bool = True,
                   recent_index_rows: int = 0) -> Pipeline:
    """`load_artifacts`, then the pure `Pipeline` around them (`variant_slots`: the file's variant words,
    else the model's own), with the candidate index of `index.backend`: for "milvus" the run's own collection,
    started empty (`consumer.io.milvus_index`: a file run's row numbers start at 0)."""
    a = load_artifacts(settings, text_encoder=text_encoder, model=model, image_encoder=image_encoder,
                       encode_in_background=encode_in_background)
    factory = None
    if settings.index.backend == "milvus":
        from consumer.io.milvus_index import milvus_index_factory

        factory = milvus_index_factory(settings, recreate=True)
    pipe = Pipeline(settings, a.text_encoder, a.model, encode_in_background=encode_in_background,
                    image_encoder=a.image_encoder, variant_slots=variant_slots, index_factory=factory,
                    hold_index_only=hold_index_only, recent_index_rows=recent_index_rows)
    warm_kernels(pipe)
    return pipe


def warm_kernels(pipe: Pipeline) -> None:
    """Compare and fuse one made-up record with itself before the pipeline serves (a service member before it
    reports ready, the HTTP API before it listens), so the compiled kernels (`consumer.engine.compiled`) are
    loaded: their first use costs ~0.8 s of CPU and ~50-120 MB (numba's import and type set-up; a compile on the
    first start after an install), which would otherwise stall the first batch or request. Touches only the
    encoders' caches; a failure is logged and start-up goes on (the kernels then load on first use)."""
    try:
        cols = pipe.encode([Record("warm-up", "Ann Lee", "Oslo", (), "", "", ())], timed=False)
        pipe.fuser.score(pipe.comparator.compare(cols, cols))
        one = np.ones((1, 1), np.float32)  # the candidate pool's top-k loop (every batch's merge)
        merge_candidates(np.zeros((1, 1), np.int64), one, one, np.ones(1, np.int64), 1, one, np.zeros(1, np.int64))
        if pipe.frequencies.rarities:  # the counts' loops, on a throwaway table (the pipeline's stays empty)
            scratch = KeyCounts()
            scratch.add(np.ones(1, np.uint64))
            scratch.lookup(np.ones(1, np.uint64))
    except Exception as exc:  # noqa: BLE001 - speed only: never a reason not to start
        log.warning("kernel warm-up failed", extra={"error": type(exc).__name__})
