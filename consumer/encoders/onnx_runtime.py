"""ONNX Runtime session construction shared by the encoders.

Kept in one place so every model gets the same provider choice, thread count and optimisation level; a
mismatch there is the usual reason "the same model" is 3x slower in one process than in another.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def default_threads() -> int:
    """Cores this process may use (respects cgroup/affinity limits, unlike ``os.cpu_count``).

    Oversubscribing intra-op threads on a container with a CPU quota costs more than it gains.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not available on macOS/Windows
        return max(1, os.cpu_count() or 1)


def resolve_providers(device: Device = "auto") -> list[str]:
    """Execution providers for ``device``; CPU is always last so unsupported ops can fall back.

    ``auto`` uses CUDA only when the installed onnxruntime build has it (onnxruntime-gpu), so the same
    code runs on laptops and GPU nodes. ``cuda`` is an explicit request and fails loudly instead of
    silently running on CPU at a fraction of the expected throughput.
    """
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise RuntimeError(
                f"device='cuda' requested but onnxruntime {ort.__version__} has no {CUDA} "
                f"(available: {', '.join(available)}). Install the 'gpu' extra (onnxruntime-gpu) "
                "instead of onnxruntime, or use device='auto'/'cpu'."
            )
        return [CUDA, CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def make_session(
    path: str | Path, device: Device = "auto", threads: int | None = None
) -> ort.InferenceSession:
    """Create an InferenceSession with graph optimisation ALL and a bounded intra-op thread pool.

    ``threads`` defaults to the cores available to the process. Inter-op parallelism stays at 1: the
    encoders are a straight chain of ops, and the consumer gets its parallelism from batching.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads if threads and threads > 0 else default_threads()
    so.inter_op_num_threads = 1
    # The pool's threads otherwise spin after each run, stealing the cores from the Python work (index,
    # comparison, clustering) that runs between our small encode calls: measured 2x slower encoding.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = resolve_providers(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # CUDA libraries present but unusable (driver, cuDNN, out of memory)
        if CUDA not in providers or device == "cuda":
            raise
        cpu_fallback_log(path, device, f"CUDA session failed: {type(exc).__name__}: {_first_line(exc)}")
        return ort.InferenceSession(str(path), sess_options=so, providers=[CPU])
    if CUDA in providers and CUDA not in session.get_providers():
        # onnxruntime drops a provider it cannot initialise and carries on with the CPU one, silently.
        reason = "CUDAExecutionProvider did not initialise (driver, CUDA or cuDNN libraries missing?)"
        if device == "cuda":
            raise RuntimeError(f"device='cuda' requested but {reason}; use device='auto' to fall back to CPU")
        cpu_fallback_log(path, device, reason)
    elif device == "auto" and CUDA not in providers:
        log.info("onnx session on cpu", extra={"model": path.name, "device": "cpu", "requested": device,
                                              "reason": f"onnxruntime {ort.__version__} has no {CUDA}"})
    return session


def on_gpu(session: ort.InferenceSession) -> bool:
    """Whether ``session`` runs on the CUDA provider (after any fallback)."""
    return CUDA in session.get_providers()


def cpu_fallback_log(path: Path, device: str, reason: str) -> None:
    """The one structured line a GPU-to-CPU fallback writes (model file name only: no data in logs)."""
    log.warning("onnx session falls back to cpu", extra={"model": Path(path).name, "device": "cpu",
                                                          "requested": device, "reason": reason})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
