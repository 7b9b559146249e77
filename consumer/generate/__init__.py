"""Synthetic CRM signups with realistic duplicate accounts and ground truth (see ``crm``).

The generator is imported on first use (PEP 562): it loads Faker (~0.2 s), which `dedup batch` and the
service never need, though the CLI reads `consumer.generate.variants` for its help text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate_crm", "write_crm"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from consumer.generate import crm

        return getattr(crm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
