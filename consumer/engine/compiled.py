"""Compiled loops (numba) for the few places where many small numpy steps cost more than the work.

Why: at the sizes the service decides (a dozen records, ~400 pairs a micro-batch; 1-30 pairs for the
clustering's on-demand checks) each numpy call's fixed cost dominates, and a loop that must stay a loop
(a tree walk, a token-pair table) is far cheaper compiled. Each kernel keeps a numpy reference beside it and a
test that both give the same bits: a compiled kernel changes speed, never a decision.

A kernel is compiled on first use, not at import (importing numba costs ~0.3 s, which a process that never
decides should not pay), and cached on disk (numba's `cache=True`: beside the module, or under
`NUMBA_CACHE_DIR` where the package directory is read-only), so only the first process after an install
compiles (~1-2 s a kernel). Without numba, or with `NUMBA_DISABLE_JIT=1`, `Kernel.get` is None and callers run
their numpy form.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["Kernel", "POP_H01", "POP_M1", "POP_M2", "POP_M4", "POP_S1", "POP_S2", "POP_S4", "POP_S56"]

#: A kernel's popcount of a uint64 `x` (SWAR, counting as np.bitwise_count does), in four steps:
#: `x - ((x >> POP_S1) & POP_M1)`, `(x & POP_M2) + ((x >> POP_S2) & POP_M2)`, `(x + (x >> POP_S4)) & POP_M4`,
#: `(x * POP_H01) >> POP_S56`. uint64 constants, so numba keeps the arithmetic unsigned (a uint64 mixed with an
#: int literal becomes a float).
POP_M1 = np.uint64(0x5555555555555555)
POP_M2 = np.uint64(0x3333333333333333)
POP_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
POP_H01 = np.uint64(0x0101010101010101)
POP_S1, POP_S2, POP_S4, POP_S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)

log = logging.getLogger("dedup.engine")


class Kernel:
    """A plain-Python loop function, compiled with numba (`nogil`: other threads run beside it) on first
    `get`."""

    def __init__(self, py_func: Callable[..., Any]):
        self.py_func = py_func
        self._lock = threading.Lock()
        self._tried = False
        self._dispatcher: Callable[..., Any] | None = None

    def get(self) -> Callable[..., Any] | None:
        """numba's dispatcher, or None where the numpy form must run (no numba, NUMBA_DISABLE_JIT=1, or a
        broken install, which is logged once)."""
        if self._tried:
            return self._dispatcher
        with self._lock:
            if not self._tried:
                self._dispatcher = self._compile()
                self._tried = True
        return self._dispatcher

    def _compile(self) -> Callable[..., Any] | None:
        # NUMBA_DISABLE_JIT=1 would run the loop as Python, slower than the numpy form; read before importing
        # numba, whose import alone costs ~0.3 s (and scipy's, ~10 modules).
        if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
            return None
        try:
            import numba
        except ImportError:
            return None
        try:
            try:
                return numba.njit(cache=True, nogil=True)(self.py_func)
            except RuntimeError:  # no writable cache location: compile in each process instead
                return numba.njit(nogil=True)(self.py_func)
        except Exception as exc:  # noqa: BLE001 - a broken numba install must not stop the service
            log.warning("jit_unavailable", extra={"kernel": self.py_func.__name__, "error": type(exc).__name__})
            return None

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """A context in which `get` is None (tests compare the kernel with its numpy form)."""
        saved = self._tried, self._dispatcher
        self._tried, self._dispatcher = True, None
        try:
            yield
        finally:
            self._tried, self._dispatcher = saved
