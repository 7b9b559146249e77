"""Static text embeddings (a model2vec distillation of the same MiniLM) and the text-backend choice.

Why: on CPUs without AVX-512 VNNI the int8 MiniLM artifact runs ~4x slower than where it was tuned, and
``encode_text`` then takes most of a batch run (issue 14). A static model is a per-token lookup table:
``export/export_static_encoder.py`` runs every vocabulary token through MiniLM once (model2vec's
distillation, offline), projects the table to the pipeline's width with a PCA fitted on CRM-style strings
and stores it with the tokenizer. Encoding a string is then tokenise -> gather rows -> mean -> subtract
the PCA mean -> L2 normalise: pure numpy + ``tokenizers``, no model2vec, torch or onnxruntime at run time,
and orders of magnitude faster than the transformer on any CPU.

``TextEncoder`` and :class:`StaticTextEncoder` offer the same interface to ``SemanticEncoder``
(``dim``, ``entry``, ``providers``, ``encode(texts, batch_size)``), so ``make_text_encoder`` is the only
place that knows there are two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from consumer.encoders.base import text_batch

__all__ = ["Backend", "StaticTextEncoder", "default_static_dir", "make_text_encoder", "resolve_backend"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "transformer", "static"]
KIND = "static-text"


def default_static_dir() -> Path:
    """``$DEDUP_STATIC_MODEL_DIR`` if set, else the repository's ``models/static``."""
    env = os.environ.get("DEDUP_STATIC_MODEL_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models" / "static"


def _export_hint(model_dir: Path) -> str:
    return f"python export/export_static_encoder.py --out {model_dir}  (needs model2vec[distill] at export only)"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest_entry(model_dir: Path, dim: int) -> dict[str, Any]:
    """The ``static-text`` manifest entry for ``dim``; a missing one fails with the export command."""
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {model_dir}; export the static model with: "
                                f"{_export_hint(model_dir)}")
    artifacts = json.loads(path.read_text(encoding="utf-8")).get("artifacts", [])
    for a in artifacts:
        if a.get("kind") == KIND and int(a["dim"]) == dim:
            return a
    have = sorted(int(a["dim"]) for a in artifacts if a.get("kind") == KIND)
    raise FileNotFoundError(f"{path} has no static text model with dim={dim} (available: {have or 'none'}); "
                            f"export it with: {_export_hint(model_dir)}")


class StaticTextEncoder:
    """Texts -> float32 [n, dim] unit vectors by mean-pooling a distilled token table.

    Deterministic and batch-independent by construction (each row depends on its own tokens only). An
    empty string, or one whose pieces are all unknown, embeds as the zero vector: there is nothing to say
    about it, and a zero row has cosine 0 with everything rather than a spurious similarity.
    """

    def __init__(self, model_dir: Path | str | None = None, dim: int = 64, max_len: int = 32,
                 verify: bool = False) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else default_static_dir()
        self.entry = read_manifest_entry(self.model_dir, dim)
        table_path = self.model_dir / self.entry["file"]
        tok_path = self.model_dir / self.entry["tokenizer"]["file"]
        for path, meta in ((table_path, self.entry), (tok_path, self.entry["tokenizer"])):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; re-create it with: {_export_hint(self.model_dir)}")
            if "bytes" in meta and path.stat().st_size != int(meta["bytes"]):
                raise OSError(f"{path} is {path.stat().st_size} bytes, manifest says {meta['bytes']} "
                              f"(Git LFS pointer or partial copy?); re-create it with: "
                              f"{_export_hint(self.model_dir)}")
            if verify and sha256_file(path) != meta["sha256"]:
                raise OSError(f"{path}: sha256 differs from manifest.json")
        with np.load(table_path) as z:
            # fp16 on disk (half the size); fp32 in memory so the mean pools in full precision.
            self._table = z["table"].astype(np.float32)
            self._mean = z["mean"].astype(np.float32)
        if self._table.shape[1] != dim or self._mean.shape != (dim,):
            raise ValueError(f"{table_path.name} holds dim {self._table.shape[1]}, manifest says {dim}")
        self._dim = int(dim)
        self._tokenizer = Tokenizer.from_file(str(tok_path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_len)
        self._unk = self._tokenizer.token_to_id("[UNK]")

    @property
    def dim(self) -> int:
        """Embedding width (same as the transformer artifact it replaces)."""
        return self._dim

    @property
    def providers(self) -> list[str]:
        """No execution provider: numpy on the CPU (kept for interface parity with ``TextEncoder``)."""
        return ["numpy-static"]

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed ``texts``; float32 [len(texts), dim], rows L2-normalised (zero for empty), input order.

        ``batch_size`` is accepted for interface parity and ignored: the whole call is one gather.
        """
        texts = text_batch(texts, batch_size)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        # No offsets needed: the "fast" variant (tokenizers >= 0.20) skips computing them (~15% less time).
        batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        encodings = batch(texts, add_special_tokens=False)
        ids_per = [[i for i in e.ids if i != self._unk] for e in encodings]
        counts = np.fromiter((len(x) for x in ids_per), dtype=np.int64, count=len(ids_per))
        nz = counts > 0
        if not nz.any():
            return out
        flat = np.fromiter((i for x in ids_per for i in x), dtype=np.int64, count=int(counts.sum()))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[nz]
        pooled = np.add.reduceat(self._table[flat], starts, axis=0) / counts[nz, None] - self._mean
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out[nz] = pooled / np.where(norms > 0, norms, 1.0)
        return out


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has AVX-512 VNNI or AVX-VNNI (the int8 dot products the int8 artifact needs
    to be fast). Reads /proc/cpuinfo; anything unreadable counts as "no" (the safe, fast choice)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``static``, on every host.

    Why not by hardware (transformer on CUDA, say): measured in docs/benchmarks.md (Speed and memory), the
    static model keeps
    the learned-fusion F1 of the transformer on the CRM files and is two orders of magnitude faster on
    any CPU, VNNI or not, so a GPU is not needed for text at all; and the text vectors must not depend on
    the host, or replicas on mixed CPU/GPU nodes sharing one stored state would put two embedding spaces
    into one index. The transformer stays available as an explicit choice (and for state written by it).
    """
    if backend == "auto":
        return "static"
    if backend in ("transformer", "static"):
        return backend
    raise ValueError(f"text_backend must be 'auto', 'transformer' or 'static', got {backend!r}")


def make_text_encoder(enc: Any, threads: int | None = None) -> Any:
    """The text encoder that ``enc`` (``EncoderSettings``) asks for, after ``resolve_backend``."""
    backend = resolve_backend(getattr(enc, "text_backend", "auto"))
    log.info("text encoder backend", extra={"backend": backend, "requested": getattr(enc, "text_backend", "auto"),
                                           "vnni": cpu_has_vnni()})
    if backend == "static":
        return StaticTextEncoder(model_dir=getattr(enc, "static_model_dir", None), dim=enc.text_dim)
    from consumer.encoders.text import TextEncoder  # heavy (onnxruntime): load only when used

    return TextEncoder(model_dir=enc.model_dir, dim=enc.text_dim, device=enc.device, threads=threads)
