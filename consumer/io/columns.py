"""The columns an input file offers, and whether a profile can read them: checked before any work.

Why a module of its own: what a file *is* (its format, its rows) is `consumer.io.files`; whether it is what
the configured profile reads, and which built-in profile it looks like otherwise, is a question about the
settings, answered once for `dedup batch`, `fit`, `label` and `eval` before an output is opened.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from consumer.io.csv_separator import separator_of
from consumer.io.files import InputError, check_input, open_text

if TYPE_CHECKING:
    from consumer.config import ProfileSettings

__all__ = ["check_columns", "check_file", "input_columns"]


def input_columns(path: str | Path, fmt: str, sample: int = 1000, encoding: str = "utf-8") -> tuple[set[str], set[str]]:
    """The columns a file offers and those of them filled in at least one of its first `sample` rows:
    a CSV's header, or the keys of a JSONL file's first objects (read as `read_rows` reads them)."""
    columns: set[str] = set()
    filled: set[str] = set()
    with open_text(path, encoding, errors="replace") as fh:
        if fmt == "csv":
            try:
                first = fh.readline()
                reader = csv.reader(itertools.chain([first], fh), delimiter=separator_of(first))
                header = [h.strip() for h in next(reader)]
                columns = set(header)
                for _, row in zip(range(sample), reader):
                    filled.update(h for h, v in zip(header, row) if v.strip())
            except (StopIteration, csv.Error):
                pass
            return columns, filled
        for _, line in zip(range(sample), fh):
            try:
                obj = orjson.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                columns.update(str(k) for k in obj)
                filled.update(str(k) for k, v in obj.items() if v not in (None, "", [], {}))
        return columns, filled


def _matched_columns(profile: ProfileSettings) -> list[str]:
    """The columns `profile` matches on (names, cities, keys, its roles' columns, device and login fields)."""
    return [*profile.name_fields, *profile.city_fields, *profile.key_fields, *profile.roles.values(),
            *(c for c in (profile.browser_field, profile.os_field, profile.login_times_field) if c)]


def _profile_hint(columns: set[str], profile: ProfileSettings) -> str:
    """" - they look like the 'listing' profile's: --profile listing" where another built-in profile finds
    its id and 2+ of its matching columns in the file (the one finding most), else "". Why: a listing or
    person CSV run without `--profile` is read as CRM signups; the error names the flag that reads it."""
    from consumer.config import BUILTIN_PROFILES

    fits = sorted(((len(set(_matched_columns(p)) & columns), name) for name, p in BUILTIN_PROFILES.items()
                   if name != profile.name and p.id_field in columns), reverse=True)
    return f" - they look like the {fits[0][1]!r} profile's: --profile {fits[0][1]}" if fits and fits[0][0] > 1 else ""


def check_columns(found: tuple[set[str], set[str]], profile: ProfileSettings) -> None:
    """InputError (one line) when the file cannot be what the profile reads, before any work: the id
    column is missing; a column the configuration maps a role to *by another name* is missing (a mapping
    the user wrote, e.g. `roles = { surname = "family_name" }`); or none of the profile's matching columns
    is there (a listings file run with the person profile). A built-in role's own-named column may be
    absent (a person file without phone). `found`: `input_columns` (the columns, those filled).
    Also when the profile's columns are there but empty in every row read."""
    columns, filled = found
    if not columns:
        return
    have = ", ".join(sorted(columns)[:20]) + (" ..." if len(columns) > 20 else "")
    hint = _profile_hint(columns, profile)
    if profile.id_field not in columns:
        raise InputError(f"the file has no id column {profile.id_field!r} (profile {profile.name!r}; set "
                         f"profile.id_field); its columns: {have}{hint}")
    mapped = [c for r, c in profile.roles.items() if c != r and c not in columns]
    if mapped:
        raise InputError(f"the configuration maps a role to {', '.join(repr(c) for c in mapped)}, which the file "
                         f"does not have; its columns: {have}")
    wanted = _matched_columns(profile)
    if wanted and not any(c in columns for c in wanted):
        raise InputError(f"none of the columns profile {profile.name!r} matches on is in the file "
                         f"(looked for {', '.join(sorted(set(wanted)))}); its columns: {have}"
                         + (hint or " - another --profile, or map them with profile.roles"))
    if filled and wanted and not any(c in filled for c in wanted):
        raise InputError(f"the columns profile {profile.name!r} matches on "
                         f"({', '.join(sorted(set(wanted) & columns))}) are empty in every row read; "
                         "another --profile, or map filled columns with profile.roles")


def check_file(path: str | Path, fmt: str | None, profile: ProfileSettings) -> str:
    """Every check of an input file before any work (`check_input`, then its columns against `profile`,
    read in `profile.encoding`); returns the format. InputError, one line."""
    kind = check_input(path, fmt)
    check_columns(input_columns(path, kind, encoding=profile.encoding), profile)
    return kind
