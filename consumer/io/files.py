"""File adapters: CSV/JSONL rows in (streamed, with positions), decisions and rejects out.

Reading never raises on a bad row: each row comes out as a mapping or a `Rejected` carrying the line
number and a reason, so the runner can write it to the rejects file and carry on. Only problems with the
file as a whole (missing, empty, unknown format) raise `InputError` with a message meant for a person.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import lzma
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from consumer.engine.records import Rejected
from consumer.io.csv_separator import separator_of

__all__ = ["InputError", "detect_format", "check_input", "check_outputs_distinct", "read_rows", "JsonlWriter",
           "is_stream", "open_text", "text_encoding", "write_csv_table"]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # huge fields become a reasoned reject, not a crash


class InputError(ValueError):
    """The input file as a whole cannot be read (message says why and what to do)."""


#: A compressed file's first bytes -> the standard-library module that reads it: `people.csv.gz` is read as
#: `people.csv` (a data engineer's export is often compressed; unpacking it first doubles the disk it needs).
COMPRESSED = {b"\x1f\x8b": gzip, b"BZh": bz2, b"\xfd7zXZ\x00": lzma}
#: First bytes of a spreadsheet workbook (a ZIP: .xlsx / .ods; OLE2: .xls), which no --format reads.
WORKBOOKS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise InputError(f"unknown input format {fmt!r}: use csv or jsonl")
        return fmt
    name = path.name.lower()
    suffix = Path(name.removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")).suffix
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in SPREADSHEET_SUFFIXES:
        raise InputError(f"{path.name!r} is a spreadsheet workbook: save it as CSV (CSV UTF-8) and run that")
    raise InputError(f"cannot tell the format of {path.name!r} from its extension; pass --format csv|jsonl")


def check_input(path: str | Path, fmt: str | None = None) -> str:
    """Whole-file checks, done before any output is opened; returns the format. Raises InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a directory, not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"input file is empty: {p}")
    kind = detect_format(p, fmt)
    with p.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(WORKBOOKS):
        raise InputError(f"{p.name!r} is a spreadsheet workbook or another archive, not {kind} text: save it as "
                         "CSV (CSV UTF-8) and run that")
    return kind


def open_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> IO[str]:
    """`path` opened as text in `encoding` (`text_encoding`), through gzip, bz2 or xz where its first bytes
    say it is compressed (`COMPRESSED`), whatever its name."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    opener = next((m.open for magic, m in COMPRESSED.items() if head.startswith(magic)), open)
    return opener(path, "rt", encoding=text_encoding(encoding), errors=errors, newline="")  # type: ignore[no-any-return]


def check_outputs_distinct(input_path: str | Path, *outputs: str | Path | None) -> None:
    """Refuse an output that is the input (same path, a symlink to it, or a hard link): it would be replaced."""
    src = Path(input_path)
    for out in outputs:
        if out is None or str(out) == "-":
            continue
        dst = Path(out)
        same = dst.resolve() == src.resolve()
        if not same and dst.exists():
            try:
                same = os.path.samefile(src, dst)
            except OSError:
                same = False
        if same:
            raise InputError(f"output {dst} is the input file; choose another --out/--rejects path")


def text_encoding(encoding: str) -> str:
    """The codec a file named to be in `encoding` is opened with: UTF-8 skipping a byte-order mark
    (Excel's "CSV UTF-8" writes one), any other as it is."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def read_rows(path: str | Path, fmt: str | None = None, max_record_bytes: int = 65536,
              encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """Yield (line number, row or Rejected). Raises InputError only for whole-file problems. `encoding`:
    `profile.encoding`."""
    p = Path(path)
    kind = check_input(p, fmt)
    # surrogateescape: undecodable bytes reach validation as lone surrogates and become a reasoned reject.
    fh = open_text(p, encoding, errors="surrogateescape")
    with fh:
        yield from (_read_csv(fh, max_record_bytes) if kind == "csv" else _read_jsonl(fh, max_record_bytes))


def _csv_records(fh: IO[str], ncols: int, max_bytes: int,
                 sep: str = ",") -> Iterator[tuple[int, list[str] | Rejected]]:
    """(first line number, values) per CSV record, recovering from an unterminated quote.

    A quoted field may span lines, so a stray opening quote would swallow every following line into one
    field. A record that spans lines yet has the wrong column count, outgrows `max_bytes`, or contains a
    line that is a complete row by itself is taken to be such a stray quote: its first line is rejected
    (`malformed_csv`) and parsing restarts on the next line.
    """
    pending: list[str] = []  # physical lines read ahead, pending[0] is line `first`
    first = 2  # the header was line 1
    eof = False
    while True:
        if not pending:
            if eof:
                return
            line = fh.readline()
            if not line:
                return
            pending.append(line)
        used = 0
        size = 0

        def feed() -> Iterator[str]:
            nonlocal used, size, eof
            while size <= max_bytes:
                if used == len(pending):
                    nxt = "" if eof else fh.readline()
                    if not nxt:
                        eof = True
                        return
                    pending.append(nxt)
                line = pending[used]
                used += 1
                size += len(line)
                yield line

        try:
            values: list[str] | None = next(csv.reader(feed(), delimiter=sep), None)
            error = ""
        except csv.Error as exc:
            values, error = None, str(exc)
        if used > 1 and (values is None or len(values) != ncols or size > max_bytes
                         or _swallows_a_row(pending[1:used], ncols, sep)):
            yield first, Rejected("malformed_csv", "unterminated quoted field", position=first)
            used = 1
        elif values is None:
            if error:
                yield first, Rejected("malformed_csv", error, position=first)
            used = max(used, 1)
        elif size > max_bytes:
            yield first, Rejected("oversized_record", f"row longer than {max_bytes} chars", position=first)
        else:
            yield first, values
        del pending[:used]
        first += used


def _swallows_a_row(continuation: list[str], ncols: int, sep: str = ",") -> bool:
    """Whether a line inside a multi-line record is, on its own, a row of `ncols` fields (or more).

    A real multi-line field continues with a fragment (`Apt 4",Oslo,...` has fewer fields than the header);
    a stray quote that reached the next row's own quotes (`...,"[""2025..."`) has swallowed a whole row.
    """
    for line in continuation:
        try:
            if len(next(csv.reader([line], delimiter=sep), [])) >= ncols:
                return True
        except csv.Error:
            continue
    return False


def _read_csv(fh: IO[str], max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    header_line = fh.readline()
    sep = separator_of(header_line)  # ";" from a European Excel, a tab from a .tsv
    try:
        header = next(csv.reader([header_line], delimiter=sep))
    except StopIteration:
        raise InputError("input file has no header row") from None
    except csv.Error as exc:
        raise InputError(f"cannot parse the CSV header: {exc}") from exc
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError("input file's header row is empty")
    seen_row = False
    for line, values in _csv_records(fh, len(header), max_bytes, sep):
        if isinstance(values, Rejected):
            seen_row = True
            yield line, values
            continue
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # a blank line; a row of empty fields (",,,") is a row, and gets a reasoned reject
        seen_row = True
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


def is_stream(path: str | Path) -> bool:
    """Whether `path` is "-" or an existing file that is not a regular file or folder: a device (/dev/null,
    /dev/stdout), a FIFO, a socket. Such an output is written where it is: renaming a finished temporary
    file over it would replace the device itself (`--out /dev/null` run as root once left /dev/null a
    regular file, and every program that opens it for a terminal broke)."""
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class JsonlWriter:
    """Write one JSON object per line; '-' means stdout.

    A file is written to a temporary sibling and renamed over `path` only by `close()`: a run that fails
    half-way (or is interrupted) leaves an existing output as it was, never truncated or half-written. A
    device or FIFO (`is_stream`) is written in place.
    """

    def __init__(self, path: str | Path):
        self._own = str(path) != "-"
        self._tmp: Path | None = None
        if self._own:
            self._path = Path(path)
        if self._own and is_stream(path):
            self._fh = self._path.open("wb")
        elif self._own:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", suffix=".tmp", dir=self._path.parent)
            self._tmp = Path(tmp)
            self._fh: IO[bytes] = os.fdopen(fd, "wb")
        else:
            self._fh = sys.stdout.buffer
        self.count = 0

    def write(self, obj: Any) -> None:
        self._fh.write(orjson.dumps(obj) + b"\n")
        self.count += 1

    def close(self) -> None:
        """Finish: the file appears at its path (atomically replacing any old one)."""
        if not self._own:
            self._fh.flush()
            return
        if self._tmp is None:  # a device written in place (or closed already)
            self._fh.close()
            return
        self._fh.close()
        os.chmod(self._tmp, 0o666 & ~_umask())
        os.replace(self._tmp, self._path)
        self._tmp = None

    def abort(self) -> None:
        """Give up: remove the temporary file, leave any existing output untouched."""
        if self._own:
            self._fh.close()
        if self._own and self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv_table(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a CSV table atomically (temporary sibling, renamed when complete, like `JsonlWriter`), so a
    failed run never leaves a half-written table; a device or FIFO in place. Returns the number of rows."""
    target = Path(path)

    def write(fh: IO[str]) -> int:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        n = 0
        for row in rows:
            writer.writerow(row)
            n += 1
        return n

    if is_stream(target):  # never replaced: see `is_stream`
        with target.open("w", encoding="utf-8", newline="") as out:
            return write(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
