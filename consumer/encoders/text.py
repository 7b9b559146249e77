"""Sentence embeddings of "name, city" strings with all-MiniLM-L6-v2 exported to ONNX.

The whole model (BERT, masked mean pooling, L2 norm, PCA projection, L2 norm) is one ONNX graph built by
``export/export_text_encoder.py``, so at run time this module only tokenises, pads and calls the session:
no torch, no transformers. ``manifest.json`` next to the model says which file serves which dimension
and records its checksum, parity figures and the command that rebuilt it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from consumer.encoders.base import text_batch
from consumer.onnx_runtime import Device, make_session

__all__ = ["TextEncoder", "default_model_dir"]

MAX_POSITIONS = 512  # BERT position-embedding table


def default_model_dir() -> Path:
    """``$DEDUP_MODEL_DIR`` if set, else the repository's ``models/onnx`` (resolved from this file, so it
    does not depend on the working directory)."""
    env = os.environ.get("DEDUP_MODEL_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models" / "onnx"


def _export_hint(model_dir: Path, dim: int) -> str:
    return f"python export/export_text_encoder.py --dim {dim} --out {model_dir}  (needs the 'export' extra)"


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("+")[0].split(".")[:2] if p.isdigit())


def _check_onnxruntime(required: str | None, model_name: str) -> None:
    """int8 artifacts use com.microsoft.MatMulNBits with 8-bit weights, which older onnxruntime builds
    reject with an opaque kernel error; say which version is needed instead."""
    import onnxruntime as ort

    if required and _version(ort.__version__) < _version(required):
        raise RuntimeError(
            f"{model_name} needs onnxruntime>={required} (int8 MatMulNBits kernels); "
            f"installed: {ort.__version__}"
        )


class TextEncoder:
    """Texts -> float32 [n, dim] unit vectors.

    Texts are tokenised once, sorted by token count and batched, so each batch is padded only to its own
    longest member (short names dominate; padding to a global maximum would triple the work); the output
    is returned in input order. Empty strings are valid and embed as ``[CLS] [SEP]``.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        dim: int = 64,
        device: Device = "auto",
        threads: int | None = None,
        max_len: int = 32,
    ) -> None:
        if not 2 <= max_len <= MAX_POSITIONS:
            raise ValueError(f"max_len must be in 2..{MAX_POSITIONS} (room for [CLS]/[SEP]), got {max_len}")
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.max_len = max_len
        self.entry = self._manifest_entry(dim)
        self.model_path = self.model_dir / self.entry["file"]
        self._check_file(self.model_path, self.entry.get("bytes"), dim)
        _check_onnxruntime(self.entry.get("min_onnxruntime"), self.model_path.name)
        tok_file = self.model_dir / self.entry.get("tokenizer", {}).get("file", "tokenizer.json")
        self._check_file(tok_file, None, dim)
        self._tokenizer = Tokenizer.from_file(str(tok_file))
        # tokenizer.json ships with fixed padding to 128; padding is done per batch below instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_len)
        self._session = make_session(self.model_path, device=device, threads=threads)
        out = self._session.get_outputs()[0]
        self._output = out.name
        self._dim = int(dim)
        if isinstance(out.shape[-1], int) and out.shape[-1] != self._dim:
            raise ValueError(f"{self.model_path.name} outputs dim {out.shape[-1]}, manifest says {dim}")

    @property
    def dim(self) -> int:
        """Embedding width (PCA output dimension, or 384 without PCA)."""
        return self._dim

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses (first one does the work)."""
        return list(self._session.get_providers())

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed ``texts``; float32 [len(texts), dim], rows L2-normalised, in input order."""
        texts = text_batch(texts, batch_size)
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)  # 0 = [PAD]
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, j in enumerate(idx):
                n = lengths[j]
                ids[row, :n] = encodings[j].ids
                mask[row, :n] = 1
            out[idx] = self._session.run([self._output], {"input_ids": ids, "attention_mask": mask})[0]
        return out

    # -- loading ----------------------------------------------------------------------------------------
    def _manifest_entry(self, dim: int) -> dict[str, Any]:
        path = self.model_dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no manifest.json in {self.model_dir}; export the text model with: "
                f"{_export_hint(self.model_dir, dim)}"
            )
        artifacts = json.loads(path.read_text(encoding="utf-8")).get("artifacts", [])
        texts = [a for a in artifacts if a.get("kind", "text") == "text"]
        for a in texts:
            if int(a["dim"]) == dim:
                return a
        have = sorted(int(a["dim"]) for a in texts)
        raise FileNotFoundError(
            f"{path} has no text model with dim={dim} (available: {have or 'none'}); export it with: "
            f"{_export_hint(self.model_dir, dim)}"
        )

    def _check_file(self, path: Path, expected_bytes: int | None, dim: int) -> None:
        """Missing or truncated model files fail here with the fix, not deep inside onnxruntime.

        A size mismatch is almost always a Git LFS pointer or an interrupted copy.
        """
        if not path.is_file():
            hint = _export_hint(self.model_dir, dim)
            raise FileNotFoundError(f"{path} is missing; re-create it with: {hint}")
        if expected_bytes is not None and path.stat().st_size != expected_bytes:
            raise OSError(
                f"{path} is {path.stat().st_size} bytes, manifest says {expected_bytes} (Git LFS pointer or "
                f"partial copy?); re-create it with: {_export_hint(self.model_dir, dim)}"
            )
