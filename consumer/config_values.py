"""Turning TOML and environment values into typed setting values, for `consumer.config`.

Generic over the settings dataclasses (the field types say what a value must be), so it sits apart from the
settings themselves; `ConfigError` is defined here and re-exported by `consumer.config`. Strict for TOML
(typed values: a wrong kind is a mistake to report), parsing for the environment (values are text).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["ConfigError", "apply_values", "coerce", "flatten"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type (message says which)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def coerce(value: Any, tp: Any, where: str, from_env: bool = False) -> Any:
    """Coerce a TOML or environment value to the dataclass field type, or raise ConfigError.

    Strict for TOML (its values are typed: a list or table for a string setting, or `true` for a number,
    is a mistake to report, not to stringify); environment values are text and are parsed.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # "" means "none" in both sources (README: `login_times_field = ""`); "none"/"null" only in env.
        if value is None or value == "" or (from_env and isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where, from_env)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is dict:
        if from_env and isinstance(value, str):  # DEDUP_FUSION__WEIGHTS="postcode=0.2,email=0.1" (Helm's form)
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            if any(not sep or not k.strip() for k, sep, _ in pairs):
                raise ConfigError(f"{where}: expected key=value pairs separated by commas")
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table")
        return {str(k): coerce(v, args[1], f"{where}.{k}", from_env) for k, v in value.items()}
    if origin is list:
        items = [v.strip() for v in value.split(",") if v.strip()] if from_env and isinstance(value, str) \
            else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        return [coerce(v, args[0], where, from_env) for v in items]
    if tp in (bool, int, float, str) and not from_env and not _toml_fits(value, tp):
        raise ConfigError(f"{where}: {_kind(value)} is not a valid {tp.__name__} (expected {_KINDS[tp]})")
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            out = tp(value)
            if tp is float and not math.isfinite(out):
                raise ValueError(value)
            return out
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a valid {tp.__name__}") from exc
    return value


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _toml_fits(value: Any, tp: Any) -> bool:
    """Whether a typed TOML value is acceptable for a field of type `tp` (an int is a fine float)."""
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if tp is int:
        return isinstance(value, int)
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, str)


def _kind(value: Any) -> str:
    kinds = {dict: "a table", list: "a list", bool: "a boolean", str: "a string", int: "an integer",
             float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def apply_values(obj: Any, values: Mapping[str, Any], where: str, from_env: bool = False) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown setting {where}{key} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{key} must be a table")
            apply_values(current, value, f"{where}{key}.", from_env)
        elif isinstance(current, dict):  # tables override single entries of a default mapping
            setattr(obj, key, {**current, **coerce(value, hints[key], f"{where}{key}", from_env)})
        else:
            setattr(obj, key, coerce(value, hints[key], f"{where}{key}", from_env))
