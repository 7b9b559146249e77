"""File adapters: CSV/JSONL rows in (streamed, with positions), decisions and rejects out.

Reading never raises on a bad row: each row comes out as a mapping or a `Rejected` carrying the line
number and a reason, so the runner can write it to the rejects file and carry on. Only problems with the
file as a whole (missing, empty, unknown format) raise `InputError` with a message meant for a person.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from consumer.records import Rejected

__all__ = ["InputError", "detect_format", "read_rows", "JsonlWriter"]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # huge fields become a reasoned reject, not a crash


class InputError(ValueError):
    """The input file as a whole cannot be read (message says why and what to do)."""


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise InputError(f"unknown input format {fmt!r}: use csv or jsonl")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise InputError(f"cannot tell the format of {path.name!r} from its extension; pass --format csv|jsonl")


def read_rows(path: str | Path, fmt: str | None = None,
              max_record_bytes: int = 65536) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """Yield (line number, row or Rejected). Raises InputError only for whole-file problems."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a directory, not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"input file is empty: {p}")
    kind = detect_format(p, fmt)
    # surrogateescape: undecodable bytes reach validation as lone surrogates and become a reasoned reject.
    fh = p.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    with fh:
        yield from (_read_csv(fh, max_record_bytes) if kind == "csv" else _read_jsonl(fh, max_record_bytes))


def _read_csv(fh: IO[str], max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("input file has no header row") from None
    except csv.Error as exc:
        raise InputError(f"cannot parse the CSV header: {exc}") from exc
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError("input file's header row is empty")
    seen_row = False
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield line, Rejected("malformed_csv", str(exc), position=line)
            continue
        if not values or all(not v.strip() for v in values):
            continue  # blank line
        seen_row = True
        line = reader.line_num
        if sum(len(v) for v in values) > max_bytes:
            yield line, Rejected("oversized_record", f"row longer than {max_bytes} chars", position=line)
        elif len(values) != len(header):
            yield line, Rejected("wrong_column_count",
                                 f"{len(values)} values for {len(header)} columns", position=line)
        else:
            yield line, dict(zip(header, values))
    if not seen_row:
        raise InputError("input file has a header but no data rows")


def _read_jsonl(fh: IO[str], max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    seen_row = False
    for line_no, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        seen_row = True
        if len(line) > max_bytes:
            yield line_no, Rejected("oversized_record", f"line longer than {max_bytes} chars", position=line_no)
            continue
        try:
            obj = orjson.loads(line.encode("utf-8", errors="surrogateescape"))
        except orjson.JSONDecodeError as exc:
            yield line_no, Rejected("malformed_json", f"not valid JSON ({exc.msg})", position=line_no)
            continue
        if not isinstance(obj, dict):
            yield line_no, Rejected("not_an_object", f"expected a JSON object, got {type(obj).__name__}",
                                    position=line_no)
            continue
        yield line_no, obj
    if not seen_row:
        raise InputError("input file has no records (only blank lines)")


class JsonlWriter:
    """Write one JSON object per line; '-' means stdout."""

    def __init__(self, path: str | Path):
        self._own = str(path) != "-"
        if self._own:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(path, "wb") if self._own else sys.stdout.buffer  # noqa: SIM115
        self.count = 0

    def write(self, obj: Any) -> None:
        self._fh.write(orjson.dumps(obj) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self._own:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
