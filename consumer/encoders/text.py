"""Sentence embeddings of "name, city" strings with all-MiniLM-L6-v2 exported to ONNX.

The whole model (BERT, masked mean pooling, L2 norm, PCA projection, L2 norm) is one ONNX graph built by
``export/export_text_encoder.py``, so at run time this module only tokenises, pads and calls the session:
no torch, no transformers. ``manifest.json`` next to the model says which file serves which dimension
and records its checksum, parity figures and the command that rebuilt it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from consumer.encoders.base import text_batch
from consumer.encoders.onnx_runtime import CUDA, Device, cpu_fallback_log, make_session, on_gpu, resolve_providers

__all__ = ["TextEncoder", "default_model_dir"]

MAX_POSITIONS = 512  # BERT position-embedding table
#: Smallest row bucket and the token-width step of bucketed batches (GPU path, see `TextEncoder`).
MIN_ROWS = 8
WIDTH_STEP = 8
#: Rows per session call on a GPU: larger batches keep it busy, and 1,024 short strings need a few MiB.
GPU_BATCH = 1024


def bucket_rows(n: int, cap: int) -> int:
    """Row count ``n`` rounded up to a power of two (>= MIN_ROWS), at most ``max(cap, n)``."""
    b = MIN_ROWS
    while b < n:
        b *= 2
    return max(n, min(b, cap))


def bucket_width(width: int, max_len: int) -> int:
    """Token width rounded up to a multiple of WIDTH_STEP, at most ``max(max_len, width)``."""
    return max(width, min(-(-width // WIDTH_STEP) * WIDTH_STEP, max_len))


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

    On a GPU (CUDA provider active) the manifest's ``"device": "cuda"`` artifact (fp16) is loaded when
    present, batches are up to GPU_BATCH rows, and calls go through I/O binding into buffers kept per
    *bucket* shape (rows a power of two, width a multiple of 8): every new input shape would otherwise make
    the CUDA provider allocate and, for attention, re-plan; with buckets a long stream touches a few dozen
    shapes. Padding rows are ``[CLS]`` only and their outputs are dropped; padding tokens are masked, so
    bucketing changes no embedding beyond float rounding. ``bucketed_io`` forces that path on or off (it is
    exercised on CPU in tests). If CUDA cannot start, the CPU artifact is loaded instead and one log line
    says why (`consumer.encoders.onnx_runtime.make_session`).
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        dim: int = 64,
        device: Device = "auto",
        threads: int | None = None,
        max_len: int = 32,
        bucketed_io: bool | None = None,
    ) -> None:
        if not 2 <= max_len <= MAX_POSITIONS:
            raise ValueError(f"max_len must be in 2..{MAX_POSITIONS} (room for [CLS]/[SEP]), got {max_len}")
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.max_len = max_len
        self._dim = int(dim)
        self._session = None
        cpu_device: Device = device
        if CUDA in resolve_providers(device):
            gpu_entry = self._manifest_entry(dim, device="cuda", required=False)
            if gpu_entry is not None and (self.model_dir / gpu_entry["file"]).is_file():
                try:
                    session = self._load(gpu_entry, device, threads)
                except Exception as exc:  # e.g. the fp16 graph on a CPU-only provider list
                    if device == "cuda":
                        raise
                    cpu_fallback_log(self.model_dir / gpu_entry["file"], device, f"{type(exc).__name__}")
                else:
                    if on_gpu(session):
                        self._session = session
                # else make_session logged the fallback: the fp16 graph is not meant for CPUs, load int8.
                cpu_device = "cpu"
            elif device == "auto":
                cpu_device = "cpu"
                cpu_fallback_log(self.model_dir / "manifest.json", device,
                                 "no text artifact with device=cuda in the manifest; export it with "
                                 "export/export_gpu_fp16.py")
        if self._session is None:
            self._session = self._load(self._manifest_entry(dim), cpu_device, threads)
        self.on_gpu = on_gpu(self._session)
        self.bucketed_io = self.on_gpu if bucketed_io is None else bool(bucketed_io)
        self._buffers: dict[tuple[int, ...], tuple[Any, Any, Any, Any]] = {}
        self._buffers_lock = threading.Lock()  # the buffers are shared state; plain `run` is thread-safe
        out = self._session.get_outputs()[0]
        self._output = out.name
        if isinstance(out.shape[-1], int) and out.shape[-1] != self._dim:
            raise ValueError(f"{self.model_path.name} outputs dim {out.shape[-1]}, manifest says {dim}")

    def _load(self, entry: dict[str, Any], device: Device, threads: int | None) -> Any:
        """Check ``entry``'s files and open its session (sets ``entry``/``model_path``/tokenizer)."""
        dim = int(entry["dim"])
        self.entry = entry
        self.model_path = self.model_dir / entry["file"]
        self._check_file(self.model_path, entry.get("bytes"), dim)
        _check_onnxruntime(entry.get("min_onnxruntime"), self.model_path.name)
        tok_file = self.model_dir / entry.get("tokenizer", {}).get("file", "tokenizer.json")
        self._check_file(tok_file, None, dim)
        self._tokenizer = Tokenizer.from_file(str(tok_file))
        # tokenizer.json ships with fixed padding to 128; padding is done per batch below instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_len)
        return make_session(self.model_path, device=device, threads=threads)

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
        step = max(batch_size, GPU_BATCH) if self.on_gpu else batch_size
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            width = int(lengths[idx].max())
            rows, cols = (bucket_rows(len(idx), step), bucket_width(width, self.max_len)) if self.bucketed_io \
                else (len(idx), width)
            ids = np.zeros((rows, cols), dtype=np.int64)  # 0 = [PAD]
            mask = np.zeros((rows, cols), dtype=np.int64)
            for row, j in enumerate(idx):
                n = lengths[j]
                ids[row, :n] = encodings[j].ids
                mask[row, :n] = 1
            if rows > len(idx):  # bucket padding rows: [CLS] alone, output dropped
                ids[len(idx):, 0] = encodings[idx[0]].ids[0]
                mask[len(idx):, 0] = 1
            out[idx] = self._run(ids, mask)[: len(idx)]
        return out

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One session call: plain ``run``, or I/O binding into this bucket's reused device buffers."""
        if not self.bucketed_io:
            return self._session.run([self._output], {"input_ids": ids, "attention_mask": mask})[0]
        with self._buffers_lock:
            return self._run_bound(ids, mask)

    def _run_bound(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`_run` via I/O binding (caller holds the lock): buffers per bucket shape, at most a few dozen."""
        import onnxruntime as ort

        key = ids.shape
        if key not in self._buffers:
            dev = "cuda" if self.on_gpu else "cpu"
            binding = self._session.io_binding()
            ids_v = ort.OrtValue.ortvalue_from_shape_and_type(key, np.int64, dev, 0)
            mask_v = ort.OrtValue.ortvalue_from_shape_and_type(key, np.int64, dev, 0)
            out_v = ort.OrtValue.ortvalue_from_shape_and_type((key[0], self._dim), np.float32, dev, 0)
            binding.bind_ortvalue_input("input_ids", ids_v)
            binding.bind_ortvalue_input("attention_mask", mask_v)
            binding.bind_ortvalue_output(self._output, out_v)
            self._buffers[key] = (binding, ids_v, mask_v, out_v)
        binding, ids_v, mask_v, out_v = self._buffers[key]
        ids_v.update_inplace(ids)  # host -> device copy into the existing buffer, no allocation
        mask_v.update_inplace(mask)
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]  # device -> host (a plain copy on CPU)

    # -- loading ----------------------------------------------------------------------------------------
    def _manifest_entry(self, dim: int, device: str = "cpu", required: bool = True) -> Any:
        """The manifest's text artifact for ``dim`` and ``device`` ("cpu" artifacts carry no device key)."""
        path = self.model_dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no manifest.json in {self.model_dir}; export the text model with: "
                f"{_export_hint(self.model_dir, dim)}"
            )
        artifacts = json.loads(path.read_text(encoding="utf-8")).get("artifacts", [])
        texts = [a for a in artifacts if a.get("kind", "text") == "text" and a.get("device", "cpu") == device]
        for a in texts:
            if int(a["dim"]) == dim:
                return a
        if not required:
            return None
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
