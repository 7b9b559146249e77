"""Images: a pretrained CNN (EfficientNet-Lite0, ImageNet) exported to ONNX with a 128-d PCA head.

The graph (`export/export_image_encoder.py`) takes decoded, resized uint8 pixels and returns L2-normalised
128-d vectors, so at run time this module only decodes (Pillow), resizes and calls the session: no torch.
`manifest.json` beside the model names the file, its sha256, size, input size and parity figures, exactly
as for the text model; a missing or altered file fails at load with the command that rebuilds it.

A record's image arrives as bytes (`Record.blob("image")`, filled by `consumer.io.listing.attach_image` from
a file path or base64); one that does not decode is *absent* (a zero vector, NaN features), never an error:
the listing is still decided on its title, and the adapter has already counted why (`image_*` warnings).

Bring your own model (CLIP, ResNet): any ONNX file with input `pixels` uint8 [batch, S, S, 3] and output
float32 [batch, dim] (L2-normalised) works; add an entry of `"kind": "image"` with its `file`, `sha256`,
`bytes`, `dim` and `input_size` to the manifest in `encoders.model_dir` (docs/listings.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, IndexVector, Score
from consumer.encoders.onnx_runtime import Device, make_session
from consumer.engine.records import Record

__all__ = ["COLOUR_BINS", "INPUT_SIZE", "ImageModel", "ImageEncoder", "colours", "decode", "pixels"]

#: Pixels a side the shipped model takes. 160, not ImageNet's 224: half the model's arithmetic (the run's
#: bound on a listing file with photos: 5.7 -> 3.0 ms a photo on two cores) for the same match quality on
#: the suite's photo files, the PCA head refitted at this size (docs/benchmarks.md, "The image model at 160
#: pixels"). A model of your own names its size in the manifest (`input_size`).
INPUT_SIZE = 160
#: The colour signature: 12 hue bins of the coloured pixels, then dark, mid and light for the rest.
COLOUR_BINS = 15
#: A pixel counts as coloured from this saturation and value (HSV, 0-1) on; below, by its lightness only.
SATURATED, VISIBLE = 0.25, 0.15
#: Decompression-bomb guard: images with more pixels are not decoded (absent), whatever their file size.
MAX_PIXELS = 40_000_000


def pixels(img: Any, size: int = INPUT_SIZE) -> np.ndarray:
    """A Pillow image -> uint8 [size, size, 3] RGB, squashed (not cropped): a seller's crop of up to 10%
    then changes the aspect a little instead of cutting more of the product."""
    from PIL import Image

    return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.uint8)


def colours(px: np.ndarray) -> np.ndarray:
    """uint8 [n, S, S, 3] RGB -> float32 [n, COLOUR_BINS]: each photo's share of pixels per hue (12 bins of
    coloured pixels) and per lightness (dark / mid / light for the grey ones), over the middle of the frame
    (a fifth cut off each side, where a packshot's background is). Why beside the CNN vector: an ImageNet
    network is trained to see a mug as a mug whatever its colour, so two colours of one model drawn alike
    score near 1 (photo-offers-1: colour siblings' cosine median 0.72, a tenth above 0.91); the shares of
    hues tell them apart (histogram intersection: siblings' median 0.79, one product's 5th percentile
    0.92). Whether a file's photos say so is learned from the file (`consumer.learn.photo_cut`)."""
    n, size = px.shape[0], px.shape[1]
    if n == 0:
        return np.zeros((0, COLOUR_BINS), np.float32)
    lo, hi = size // 5, size - size // 5
    step = max(1, (hi - lo) // 32)
    rgb = px[:, lo:hi:step, lo:hi:step, :].reshape(n, -1, 3).astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    chroma = mx - mn
    sat = np.where(mx > 0, chroma / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    coloured = (sat >= SATURATED) & (mx >= VISIBLE)
    bins = np.where(coloured, np.minimum((hue * 2.0).astype(np.int64), 11),
                    12 + np.minimum((mx * 3.0).astype(np.int64), 2))
    flat = (np.arange(n)[:, None] * COLOUR_BINS + bins).ravel()
    counts = np.bincount(flat, minlength=n * COLOUR_BINS).reshape(n, COLOUR_BINS)
    return (counts / bins.shape[1]).astype(np.float32)


def decode(data: bytes, size: int | None = None) -> Any:
    """Decoded Pillow image, or None when the bytes are no (complete) image or too large to decode.

    `size`: the pixels a side the image will be resized to. A JPEG at least twice that on both sides is
    then decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, Pillow's `draft`), never below
    `size`: a seller's 1000-pixel photo decodes and resizes in ~1.4 ms instead of ~7 (the model itself
    takes ~3), and the pixels the model sees move by 0.2 of 255 on average."""
    from PIL import Image

    if not data:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            return None
        if size and img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
        return img
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad data; all mean "no image"
        return None


def _hint(model_dir: Path) -> str:
    return f"python export/export_image_encoder.py --out {model_dir}  (needs the 'image-export' extra)"


class ImageModel:
    """The ONNX image model of the manifest in `model_dir`: uint8 pixels -> float32 [n, dim] unit vectors."""

    def __init__(self, model_dir: Path | str | None = None, device: Device = "auto", threads: int | None = None):
        from consumer.encoders.text import default_model_dir

        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        manifest = self.model_dir / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"no manifest.json in {self.model_dir}; export the image model with: "
                                    f"{_hint(self.model_dir)}")
        entries = [a for a in json.loads(manifest.read_text(encoding="utf-8")).get("artifacts", [])
                   if a.get("kind") == "image"]
        if not entries:
            raise FileNotFoundError(f"{manifest} lists no image model; export one with: {_hint(self.model_dir)}")
        self.entry = entries[0]
        self.path = self.model_dir / self.entry["file"]
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing; re-create it with: {_hint(self.model_dir)}")
        blob = self.path.read_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        if digest != self.entry.get("sha256"):
            raise OSError(f"{self.path} has sha256 {digest[:12]}..., its manifest says "
                          f"{str(self.entry.get('sha256'))[:12]}... (Git LFS pointer or partial copy?); "
                          f"re-create it with: {_hint(self.model_dir)}")
        self.dim = int(self.entry["dim"])
        self.input_size = int(self.entry.get("input_size", INPUT_SIZE))
        self._session = make_session(self.path, device=device, threads=threads)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def embed(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 [n, S, S, 3] -> float32 [n, dim]."""
        out = np.zeros((len(batch), self.dim), np.float32)
        for s in range(0, len(batch), batch_size):
            out[s:s + batch_size] = self._session.run([self._output], {self._input: batch[s:s + batch_size]})[0]
        return out


class ImageEncoder:
    """The image modality: one 128-d vector per record (zeros = absent), cosine as the feature."""

    name = "image"

    def __init__(self, model: Any, role: str = "image"):
        self.model = model
        self.dim: int = model.dim
        self._role = role

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> ImageEncoder:
        model = artifacts.get("image_encoder")
        if model is None:
            raise ValueError("the profile uses the image encoder: build the pipeline with "
                             "consumer.io.artifacts.build_pipeline, which loads it (or pass image_encoder=)")
        return cls(model)

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=(self._role,), columns=("image", "image_colour"),
            features=(Feature("image_cos"), Feature("image_colour")),
            scores=(Score("image"),),
            index=(IndexVector("image", self.dim, 0.6),),
            # Whitened-PCA cosines (benchmarks/bench_image_recall.py): an edited copy of a photo is mostly
            # above ~0.4, the nearest *other* product's packshot mostly below ~0.6; the learned model reads
            # the cosine itself, these only scale the reported and rule-fusion score.
            coefficients={"image.weight": 0.35, "image.floor": 0.3, "image.span": 0.5})

    def encode(self, records: Sequence[Record]) -> Columns:
        out = np.zeros((len(records), self.dim), np.float32)
        hues = np.zeros((len(records), COLOUR_BINS), np.float32)
        rows, batch = [], []
        for i, rec in enumerate(records):
            img = decode(rec.blob(self._role), self.model.input_size)
            if img is not None:
                rows.append(i)
                batch.append(pixels(img, self.model.input_size))
        if batch:
            px = np.stack(batch)
            out[rows] = self.model.embed(px)
            hues[rows] = colours(px)
        return {"image": out, "image_colour": hues}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        x, y = a["image"], b["image"]
        cos = np.clip(np.einsum("ij,ij->i", x, y), -1.0, 1.0).astype(np.float32)
        absent = ~x.any(axis=1) | ~y.any(axis=1)
        cos[absent] = np.nan
        p, q = a.get("image_colour"), b.get("image_colour")
        if p is None or q is None:  # a state written before the colour signature: no evidence either way
            return {"image_cos": cos, "image_colour": np.full(len(cos), np.nan, np.float32)}
        shared = np.minimum(p, q).sum(axis=1).astype(np.float32)
        shared[absent | ~p.any(axis=1) | ~q.any(axis=1)] = np.nan
        return {"image_cos": cos, "image_colour": shared}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {"image": np.clip((feats["image_cos"] - coef["image.floor"]) / coef["image.span"], 0.0, 1.0)}
