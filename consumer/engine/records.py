"""Typed records and the validation every input row goes through.

A row (CSV dict, JSON object, Kafka message value) becomes a `Record` or a `Rejected` with a reason; no
other outcome exists. The reasons are short stable codes (`missing_id`, `bad_timestamps`, ...) so that
rejects files, dead-letter headers and metrics can group them. Messages never echo field values: rows
carry personal data and reasons end up in logs.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from consumer.config import LimitSettings, ProfileSettings

# Undecodable bytes surface as lone surrogates when files are read with errors="surrogateescape".
_SURROGATES = re.compile("[\ud800-\udfff]")

#: Login times outside this window are not logins (year 1, year 9999, epoch -6e10): the core turns stamps
#: into POSIX seconds, which a naive datetime near datetime.min/max cannot become, so validation rejects them.
MIN_LOGIN = datetime(1970, 1, 2)
MAX_LOGIN = datetime(2200, 1, 1)
#: Integers in text fields and ids are decimal strings; longer ones are no real identifier (and Python
#: refuses to print integers past 4,300 digits).
_MAX_INT_DIGITS = 64

__all__ = ["Record", "Rejected", "RejectError", "parse_record", "parse_login_times"]


@dataclass(frozen=True, slots=True)
class Record:
    """One input record, reduced to what the modalities use. Empty string = absent."""

    record_id: str
    name: str
    city: str
    keys: tuple[str, ...]
    browser: str
    os: str
    #: Login timestamps as naive local datetimes (the hour people log in is local habit).
    login_times: tuple[datetime, ...]
    #: Values of the profile's further roles (`profile.roles`), as (role, value) pairs.
    extra: tuple[tuple[str, str], ...] = ()
    #: Binary inputs by role (a listing's image bytes, attached by `consumer.io.listing.attach_image`).
    blobs: tuple[tuple[str, bytes], ...] = ()
    #: Keeper quality in [0, 1] when the profile defines one (listings); None = `completeness()` of the
    #: person fields.
    quality: float | None = None

    def blob(self, role: str) -> bytes:
        """The bytes of a binary role; b"" when absent."""
        for name, value in self.blobs:
            if name == role:
                return value
        return b""

    def role(self, role: str) -> str:
        """The value of a further role (plug-in encoders read their input this way); "" when absent."""
        for name, value in self.extra:
            if name == role:
                return value
        return ""

    def completeness(self) -> float:
        """Share of modality fields present; one input to the keeper's quality score."""
        if self.quality is not None:
            return self.quality
        present = [bool(self.name), bool(self.city), bool(self.browser), bool(self.os),
                   bool(self.login_times)]
        return sum(present) / len(present)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that could not become a record. `reason` is a stable code, `detail` says which field/why."""

    reason: str
    detail: str
    record_id: str | None = None
    position: int | None = None  # line number or offset, when known


class RejectError(ValueError):
    def __init__(self, reason: str, detail: str, record_id: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.record_id = record_id


#: Roles whose values may be long (a base64 image, a product description): bounded by `max_record_bytes`
#: instead of `max_field_chars`.
LONG_ROLES = frozenset({"image", "description"})


def _text(row: Mapping[str, Any], fields: list[str], limits: LimitSettings, rid: str | None,
          max_chars: int | None = None, numbers: bool = True) -> str:
    """The fields' values joined. `numbers=False`: a number is a wrong type (a name or a city is never one;
    a postcode, a price or a street number may come as one from JSON)."""
    parts: list[str] = []
    for f in fields:
        value = row.get(f)
        if value is None:
            continue
        if type(value) is str and value.isascii() and len(value) <= (max_chars or limits.max_field_chars):
            # An ASCII string within the length limit (most fields of most CSV files): valid UTF-8, so none
            # of the checks below can refuse it.
            value = value.strip()
            if value:
                parts.append(value)
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
                not numbers and not isinstance(value, str)):
            raise RejectError("wrong_type", f"field {f!r} must be a string, got {type(value).__name__}", rid)
        if isinstance(value, float) and not math.isfinite(value):
            raise RejectError("wrong_type", f"field {f!r} is not a finite number", rid)
        if isinstance(value, int) and not _int_fits(value):
            raise RejectError("oversized_field", f"field {f!r} is an integer of over {_MAX_INT_DIGITS} digits",
                              rid)
        text = str(value).strip()
        limit = max_chars or limits.max_field_chars
        if len(text) > limit:
            raise RejectError("oversized_field", f"field {f!r} has {len(text)} chars (limit {limit})", rid)
        if _SURROGATES.search(text):
            raise RejectError("bad_encoding", f"field {f!r} is not valid UTF-8", rid)
        if text:
            parts.append(text)
    return " ".join(parts)


def _parse_ts(item: Any) -> datetime:
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        if not math.isfinite(item):
            raise ValueError("non-finite epoch")
        return datetime.fromtimestamp(float(item), tz=timezone.utc).replace(tzinfo=None)
    if not isinstance(item, str):
        raise ValueError("not a string")
    s = item.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    # Keep the wall-clock time as written: login-hour habits are local.
    return dt.replace(tzinfo=None)


def _int_fits(value: int) -> bool:
    return value.bit_length() <= _MAX_INT_DIGITS * 3  # 2**192 ~ 6e57: a generous bound, cheap to test


def check_login_range(stamp: datetime) -> datetime:
    """The stamp, if the core can turn it into POSIX seconds and it could be a real login; else ValueError."""
    if not MIN_LOGIN <= stamp < MAX_LOGIN:
        raise ValueError("login time out of range")
    return stamp


def parse_login_times(value: Any, limits: LimitSettings, rid: str | None = None) -> tuple[datetime, ...]:
    """Accept a JSON array, the CRM paper's Python-list string, or a list; reject anything else."""
    if value is None:
        return ()
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if len(text) > limits.max_logins * 40:
            raise RejectError("oversized_field", "login_times is too long", rid)
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:
                items = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
                raise RejectError("bad_timestamps", "login_times is neither a JSON array nor a list "
                                  "literal", rid) from exc
    if not isinstance(items, (list, tuple)):
        raise RejectError("bad_timestamps", f"login_times must be a list, got {type(items).__name__}", rid)
    if len(items) > limits.max_logins:
        raise RejectError("oversized_field", f"login_times has {len(items)} entries "
                          f"(limit {limits.max_logins})", rid)
    out: list[datetime] = []
    for i, item in enumerate(items):
        try:
            stamp = _parse_ts(item)
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise RejectError("bad_timestamps", f"login_times[{i}] is not an ISO-8601 timestamp", rid) from exc
        try:
            out.append(check_login_range(stamp))
        except ValueError as exc:
            raise RejectError("bad_timestamps", f"login_times[{i}] is outside {MIN_LOGIN.year}.."
                              f"{MAX_LOGIN.year - 1}", rid) from exc
    return tuple(sorted(out))


def parse_record(row: Any, profile: ProfileSettings, limits: LimitSettings) -> Record:
    """Validate one row against the profile; raise RejectError with a reason code on bad input."""
    if not isinstance(row, Mapping):
        raise RejectError("not_an_object", f"expected an object, got {type(row).__name__}")
    raw_id = row.get(profile.id_field)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise RejectError("missing_id", f"no value in id field {profile.id_field!r}")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise RejectError("wrong_type", f"id field {profile.id_field!r} must be a string or integer")
    if isinstance(raw_id, int) and not _int_fits(raw_id):
        raise RejectError("oversized_field", "record id longer than 256 chars")
    rid = str(raw_id).strip()
    if len(rid) > 256:
        raise RejectError("oversized_field", "record id longer than 256 chars")
    if _SURROGATES.search(rid):
        # No record_id on this reject: the id itself cannot be written to a UTF-8 rejects file or log.
        raise RejectError("bad_encoding", f"id field {profile.id_field!r} is not valid UTF-8")
    name = _text(row, profile.name_fields, limits, rid, numbers=False)
    city = _text(row, profile.city_fields, limits, rid, numbers=False)
    keys = tuple(_text(row, [f], limits, rid) for f in profile.key_fields)
    browser = _text(row, [profile.browser_field], limits, rid) if profile.browser_field else ""
    os_ = _text(row, [profile.os_field], limits, rid) if profile.os_field else ""
    logins: tuple[datetime, ...] = ()
    if profile.login_times_field:
        logins = parse_login_times(row.get(profile.login_times_field), limits, rid)
    extra = tuple((role, _text(row, [f], limits, rid, limits.max_record_bytes if role in LONG_ROLES else None))
                  for role, f in profile.roles.items())
    if not (name or city or any(keys) or browser or os_ or logins or any(v for _, v in extra)):
        raise RejectError("no_usable_fields", "every mapped field is empty", rid)
    if profile.source_field:
        extra = (*extra, ("source", source_of(rid if profile.source_field == profile.id_field else
                                              _text(row, [profile.source_field], limits, rid), profile.source_pattern)))
    return Record(rid, name, city, keys, browser, os_, logins, extra)


def source_of(value: str, pattern: str | None) -> str:
    """The record's source (`profile.source_field`, cut by `profile.source_pattern`'s group); "" when the
    pattern does not match (such a record is compared with every source)."""
    if pattern is None:
        return value
    m = re.search(pattern, value)
    return (m.group(1) or "") if m else ""
