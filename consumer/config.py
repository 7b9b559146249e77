"""One typed settings object, read from a TOML file and overridden by `DEDUP_*` environment variables.

Why one object: the batch runner, the Kafka service and the Helm chart all configure the same core, and a
single source of truth (with a stable `fingerprint()` stamped on every event) makes a run reproducible.

Environment overrides use `DEDUP_<SECTION>__<KEY>` (double underscore between section and key), e.g.
`DEDUP_FUSION__MODE=rule`, `DEDUP_INDEX__K=48`; top-level keys are `DEDUP_<KEY>`, e.g. `DEDUP_BATCH_SIZE`.
List values in the environment are comma-separated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

__all__ = [
    "ConfigError",
    "ProfileSettings",
    "FusionSettings",
    "IndexSettings",
    "ClusterSettings",
    "EncoderSettings",
    "LimitSettings",
    "ServiceSettings",
    "Settings",
    "load_settings",
    "BUILTIN_PROFILES",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type (message says which)."""


@dataclass
class ProfileSettings:
    """How input columns map to modalities. Defaults are the CRM paper's schema (`crm-signup`)."""

    name: str = "crm-signup"
    id_field: str = "customer_id"
    #: Person-name columns, joined with spaces in this order (e.g. ["given_name", "surname"]).
    name_fields: list[str] = field(default_factory=lambda: ["name"])
    #: Place columns, joined with spaces (e.g. ["suburb"] or ["city"]).
    city_fields: list[str] = field(default_factory=lambda: ["city"])
    #: Short identifying keys compared for (near-)equality, e.g. ["postcode"]; part of the text modality.
    key_fields: list[str] = field(default_factory=list)
    browser_field: str | None = "browser"
    os_field: str | None = "os"
    #: A JSON array (or Python-list string) of ISO timestamps; None when the input has no behaviour.
    login_times_field: str | None = "login_times"


@dataclass
class FusionSettings:
    """Late fusion: per-modality similarities -> one score -> match / possible / no match."""

    mode: Literal["rule", "learned"] = "learned"
    #: Rule-mode modality weights (the CRM paper's 0.4/0.35/0.25), renormalised over present modalities.
    weight_text: float = 0.4
    weight_behaviour: float = 0.35
    weight_device: float = 0.25
    match_threshold: float = 0.75
    possible_threshold: float = 0.65
    #: Learned mode: probability thresholds and the model file (None = the shipped default).
    learned_match: float = 0.5
    learned_possible: float = 0.25
    learned_model: str | None = None


@dataclass
class IndexSettings:
    """HNSW candidate search. k/ef chosen by measured candidate recall (README)."""

    k: int = 32
    ef: int = 128
    m: int = 12
    ef_construction: int = 64
    seed: int = 42
    initial_capacity: int = 16384
    #: Threads per knn query batch; None = auto (1 when encoding runs on the other cores alongside, as in
    #: `dedup batch`, else every core). Queries are independent, so this changes speed only.
    query_threads: int | None = None


@dataclass
class ClusterSettings:
    """Incremental clustering guards and the keeper (canonical record) rule."""

    #: A merge of two existing clusters needs fused evidence this much above the match threshold.
    merge_margin: float = 0.3
    #: Joining a cluster of >= 3 members needs the mean score over its scored members >= this share
    #: of the match threshold (a chaining guard).
    join_support: float = 1.0
    keeper_alpha: float = 0.7


@dataclass
class EncoderSettings:
    text_dim: int = 64  # measured: same F1 as 128 and 384 (README), least memory
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    model_dir: str | None = None
    #: Key for hashing name/city fragments: stored signatures hold keyed hashes, never raw values.
    hash_key: str = "dedup-stream-default-key"


@dataclass
class LimitSettings:
    """Input guards: anything past these is rejected with a reason, never processed or crashed on."""

    max_field_chars: int = 512
    max_record_bytes: int = 65536
    max_logins: int = 5000


@dataclass
class ServiceSettings:
    """The Kafka service (`dedup run`)."""

    kafka: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    input_topics: list[str] = field(default_factory=lambda: ["signups"])
    events_topic: str = "duplicate-events"
    dlq_topic: str | None = None
    group: str = "dedup-stream"
    max_batch: int = 500
    #: How long a micro-batch may wait to fill after its first record. Small on purpose: under load batches
    #: fill by themselves while the previous one is processed; at 300 records/s 200 ms doubled p50 latency
    #: (765 vs 353 ms, loadtest/bench_service.py) without raising throughput.
    max_wait_ms: int = 20
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    redis_prefix: str = "dedup"
    stall_seconds: float = 30.0


@dataclass
class Settings:
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    clustering: ClusterSettings = field(default_factory=ClusterSettings)
    encoders: EncoderSettings = field(default_factory=EncoderSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    batch_size: int = 256

    def fingerprint(self) -> str:
        """Short stable hash of every setting that changes decisions (stamped on events)."""
        data = dataclasses.asdict(self)
        data.pop("service", None)
        return hashlib.sha256(repr(sorted(_flatten(data).items())).encode()).hexdigest()[:12]


BUILTIN_PROFILES: dict[str, ProfileSettings] = {
    "crm-signup": ProfileSettings(),
    "person": ProfileSettings(
        name="person", id_field="id", name_fields=["given_name", "surname"], city_fields=["suburb"],
        key_fields=["postcode"], browser_field=None, os_field=None, login_times_field=None,
    ),
}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a TOML or environment value to the dataclass field type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(v, args[0], where) for v in items]
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
            return tp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a valid {tp.__name__}") from exc
    return value


def _apply(obj: Any, values: Mapping[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown setting {where}{key} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{key} must be a table")
            _apply(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}{key}"))


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("DEDUP_"):
            continue
        rest = name[len("DEDUP_"):].lower()
        if "__" in rest:
            section, _, key = rest.partition("__")
            out.setdefault(section, {})[key] = value
        else:
            out[rest] = value
    return out


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> Settings:
    """Defaults <- built-in profile (if named) <- TOML file <- DEDUP_* environment variables."""
    settings = Settings()
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    base = profile or data.get("profile", {}).get("name")
    if base in BUILTIN_PROFILES:
        settings.profile = dataclasses.replace(BUILTIN_PROFILES[base])
    elif profile is not None:
        raise ConfigError(f"unknown profile {profile!r} (built in: {', '.join(BUILTIN_PROFILES)})")
    _apply(settings, data, "")
    # Other DEDUP_* variables (DEDUP_KAFKA_* client properties, DEDUP_MODEL_DIR) belong to other readers.
    known_sections = {f.name for f in dataclasses.fields(settings)}
    overrides = {k: v for k, v in _env_overrides(os.environ if env is None else env).items()
                 if k in known_sections}
    _apply(settings, overrides, "DEDUP_ ")
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    f = s.fusion
    if not 0 <= f.possible_threshold <= f.match_threshold <= 1:
        raise ConfigError("fusion: need 0 <= possible_threshold <= match_threshold <= 1")
    if not 0 <= f.learned_possible <= f.learned_match <= 1:
        raise ConfigError("fusion: need 0 <= learned_possible <= learned_match <= 1")
    if min(f.weight_text, f.weight_behaviour, f.weight_device) < 0:
        raise ConfigError("fusion: weights must be >= 0")
    if s.index.k < 1 or s.index.ef < s.index.k:
        raise ConfigError("index: need k >= 1 and ef >= k")
    if s.batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    p = s.profile
    if not (p.name_fields or p.city_fields or p.key_fields or p.login_times_field or p.browser_field
            or p.os_field):
        raise ConfigError("profile maps no column to any modality")
