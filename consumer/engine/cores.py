"""How many cores this process may use: the one place the engine counts them."""

from __future__ import annotations

import os

__all__ = ["usable_cores"]


def usable_cores() -> int:
    """Cores this process may use (cgroup/affinity aware, unlike os.cpu_count): oversubscribing threads on
    a container with a CPU quota costs more than it gains."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS/Windows
        return max(1, os.cpu_count() or 1)
