"""The encoder registry: a profile names its encoders, this builds them.

A name is either a built-in (`text`, `names`, `behaviour`, `device`, `title`, `image`) or a plug-in given as
`package.module:Class`. Every encoder class has `from_settings(settings, artifacts)`, where `artifacts`
holds what was loaded outside the core and handed in (the ONNX text encoder as "text_encoder"). Nothing
else in the engine names a modality: comparison, blocking, frequencies, fusion, training, metrics and
events follow each encoder's `contribution` (see docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consumer.config import ConfigError

if TYPE_CHECKING:
    from consumer.config import Settings
    from consumer.encoders.base import Encoder

__all__ = ["BUILTIN_ENCODERS", "DEFAULT_ENCODERS", "build_encoders", "encoder_class", "needs_image_model",
           "needs_text_model", "omitted_features", "profile_encoders"]

BUILTIN_ENCODERS: dict[str, str] = {
    "text": "consumer.encoders.semantic:SemanticEncoder",
    "names": "consumer.encoders.names:NameEncoder",
    "behaviour": "consumer.encoders.behaviour:BehaviourEncoder",
    "device": "consumer.encoders.device:DeviceEncoder",
    "title": "consumer.encoders.title:TitleEncoder",
    "image": "consumer.encoders.image:ImageEncoder",
}
#: The encoders of a profile that names none (the order is the feature and index-vector order).
DEFAULT_ENCODERS: tuple[str, ...] = ("text", "names", "behaviour", "device")


def encoder_class(name: str) -> Any:
    """The class behind a built-in name or a `package.module:Class` path; ConfigError when unknown."""
    path = BUILTIN_ENCODERS.get(name, name)
    module, _, attr = path.partition(":")
    if not attr:
        raise ConfigError(f"unknown encoder {name!r} (built in: {', '.join(BUILTIN_ENCODERS)}; "
                          "a plug-in is named 'package.module:Class')")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load encoder {name!r}: {exc}") from exc


def profile_encoders(settings: Settings) -> list[str]:
    """The encoder names a profile uses: its own list, else the built-ins whose roles it maps (a profile
    without login times builds no behaviour encoder, one without browser and OS no device encoder, so
    neither stores empty columns)."""
    p = settings.profile
    if p.encoders:
        return list(p.encoders)
    has = {"text": bool(p.name_fields or p.city_fields), "names": bool(p.name_fields or p.city_fields or p.key_fields),
           "behaviour": bool(p.login_times_field), "device": bool(p.browser_field or p.os_field)}
    return [name for name in DEFAULT_ENCODERS if has[name]]


def needs_text_model(settings: Settings) -> bool:
    """Whether the profile's encoders use the text model (the `text` and `title` encoders)."""
    return bool({"text", "title"} & set(profile_encoders(settings)))


def needs_image_model(settings: Settings) -> bool:
    """Whether the profile's encoders use the ONNX image model."""
    return "image" in profile_encoders(settings)


def omitted_features(settings: Settings, built: list[str]) -> frozenset[str]:
    """Comparison features of the built-in encoders this profile does not build: for a learned model they
    are absent (NaN) on every pair, exactly like a modality a record lacks. (`text` needs an artifact to
    be built and is never omitted for a profile with names.)"""
    out: set[str] = set()
    for name in DEFAULT_ENCODERS:
        if name in built or name == "text":
            continue
        con = encoder_class(name).from_settings(settings, {}).contribution
        out.update(f.name for f in con.features)
        out.update(r.feature for r in con.rarity)
    return frozenset(out)


def build_encoders(settings: Settings, artifacts: Mapping[str, Any]) -> list[Encoder]:
    """Instantiate the profile's encoders, in order."""
    return [encoder_class(name).from_settings(settings, artifacts) for name in profile_encoders(settings)]
