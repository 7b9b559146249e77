"""Bounded fuzz run over CSV/JSONL bytes: nothing crashes, no good row is lost (issue 10).

    python benchmarks/fuzz_inputs.py --cases 100000 --seconds 1500

Each case is one input row. Files of `--rows-per-file` rows are written as CSV or JSONL: most rows are
good (plausible CRM signups, names in several scripts), the rest are mutants (poison timestamps,
undecodable bytes, stray quotes, injected newlines, truncation, byte flips, wrong JSON types, huge
fields, ...). Every file goes through the batch runner's reader and validation (`iter_records`) and
every validated record through the core (`Pipeline.process`). Checked per row:

- no exception escapes reading, validation or the core (an InputError for a whole file counts too);
- every good row comes out as a record at its own line (none dropped, none swallowed by a neighbour);
- every mutant row is accounted for: some record or reasoned reject at one of its lines;
- every record gets exactly one decision, and the decision serialises.

Prints one JSON object with the counts; exits 1 if any check failed (failing inputs are kept under
--keep).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer.config import load_settings  # noqa: E402
from consumer.engine.pipeline import Pipeline  # noqa: E402
from consumer.engine.records import Record, Rejected  # noqa: E402
from consumer.io.artifacts import build_pipeline  # noqa: E402
from consumer.io.batch import iter_records  # noqa: E402
from consumer.io.files import InputError  # noqa: E402

FIELDS = ["customer_id", "name", "city", "browser", "os", "login_times"]
NAMES = ["Kyle Roberts", "Pam Velasquez MD", "Smith, John A.", "José Müller", "王小明", "Иван Петров",
         "Γιώργος Παπαδόπουλος", "محمد علي", "김민준", "O'Brien-Ng", "Zoë Ðorđević", "ǅemal", "Anna ☃"]
CITIES = ["Joseshire", "New York City", "München", "北京", "Москва", "Αθήνα", "القاهرة", "서울", "St. Paul"]
BROWSERS = ["Chrome", "Firefox 120", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) CriOS", "", "Edg/120"]
OSES = ["Windows", "Mac OS X", "iPhone OS", "Android 14", "", "Linux"]
POISON_LOGINS = ['["0001-01-01T00:00:00"]', "[-62135596800]", '["9999-12-31T23:59:59"]', "[1e400]",
                 '["2025-13-45T99:99:99"]', "[[[[", "{}", "None", "[1,2", "__import__('os').system('x')",
                 '["2025-01-01T00:00:00+99:00"]', "[" + "[" * 5000 + "]" * 5000 + "]", '["\\ud800"]',
                 "[" + ",".join(["1700000000"] * 6000) + "]", "1" + "0" * 5000]
LINE_END = re.compile(r"\r\n|\r|\n")


def good_row(rng: random.Random, rid: str) -> dict[str, Any]:
    n = rng.randint(0, 5)
    base = rng.randint(1_600_000_000, 1_760_000_000)
    stamps = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + rng.randint(0, 10**7))) for _ in range(n)]
    return {"customer_id": rid, "name": rng.choice(NAMES), "city": rng.choice(CITIES),
            "browser": rng.choice(BROWSERS), "os": rng.choice(OSES), "login_times": json.dumps(stamps)}


def csv_line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def mutate_fields(rng: random.Random, row: dict[str, Any], fmt: str) -> dict[str, Any] | list[Any] | Any:
    """Mutations that keep the row well-formed but make its values odd or wrong."""
    row = dict(row)
    kind = rng.randrange(9)
    if kind == 0:
        row["login_times"] = rng.choice(POISON_LOGINS)
    elif kind == 1:
        row["customer_id"] = rng.choice(["", "   ", "1" + "0" * 5000, "x" * 300])
    elif kind == 2:
        row[rng.choice(FIELDS[1:])] = "y" * rng.choice([600, 70_000])
    elif kind == 3:
        row = {k: "" for k in row}
    elif kind == 4 and fmt == "jsonl":
        row[rng.choice(FIELDS)] = rng.choice([None, True, 1.5, float("inf"), 10**30, [], {}, [1, [2]],
                                              {"a": {"b": 1}}, -0.0])
    elif kind == 5 and fmt == "jsonl":
        return rng.choice([[], "str", 1, None, [row]])
    elif kind == 6:
        row["name"] = "".join(chr(rng.choice([0, 0x200F, 0xFEFF, 0x1F600, 0x0301, 0xFFFF, 0x2028]))
                              for _ in range(rng.randint(1, 8)))
    elif kind == 7:
        row["login_times"] = repr([rng.choice(["2025-01-01T00:00:00", 1.7e9, "x", None, True]) for _ in range(3)])
    else:
        row.pop(rng.choice(FIELDS), None)
    return row


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Mutations of the serialised row: the reader must survive them."""
    b = bytearray(data)
    kind = rng.randrange(7)
    pos = rng.randrange(len(b) + 1)
    if kind == 0:
        b[pos:pos] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"])
    elif kind == 1:
        commas = [i + 1 for i, c in enumerate(b) if c == ord(",")] or [0]
        at = rng.choice(commas)
        b[at:at] = b'"'  # a stray opening quote at the start of a field
    elif kind == 2:
        b[pos:pos] = rng.choice([b"\n", b"\r", b"\r\n"])
    elif kind == 3:
        del b[pos:]
    elif kind == 4:
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 5:
        b[pos:pos] = b"," * rng.randint(1, 3)
    else:
        b[pos:pos] = rng.choice([b'"', b'""', b"\\", b"{", b"]", b'\\"'])
    return bytes(b)


def serialise(row: Any, fmt: str) -> bytes:
    if fmt == "jsonl":
        try:
            return orjson.dumps(row)
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps(row, default=str).encode()
    values = [row.get(f, "") for f in FIELDS] if isinstance(row, dict) else [str(row)]
    return csv_line(values).encode("utf-8", "surrogatepass")


def build_file(rng: random.Random, fmt: str, n_rows: int, tag: str, mutant_share: float
               ) -> tuple[bytes, list[tuple[int, int, str | None]]]:
    """File bytes plus, per row, (first line, last line, id if the row is good else None)."""
    out = [csv_line(FIELDS).encode()] if fmt == "csv" else []
    line = 2 if fmt == "csv" else 1
    spans: list[tuple[int, int, str | None]] = []
    for i in range(n_rows):
        rid = f"{tag}-{i}"
        row: Any = good_row(rng, rid)
        good = rng.random() >= mutant_share
        if good:
            data = serialise(row, fmt)
        else:
            data = serialise(mutate_fields(rng, row, fmt), fmt) if rng.random() < 0.5 else \
                mutate_bytes(rng, serialise(row, fmt))
            if not data.strip() or (fmt == "csv" and not data.strip(b" \t\r\n")):
                data = b"x" + data  # a mutant is never a blank line (blank lines are not rows)
        text = data.decode("utf-8", "surrogateescape")
        # Line ends as the reader counts them: a row ending in "\r" plus the joining "\n" is one "\r\n".
        breaks = len(LINE_END.findall(text + "\n")) - 1
        spans.append((line, line + breaks, rid if good else None))
        out.append(data)
        line += breaks + 1
    return b"\n".join(out) + b"\n", spans


def check_file(path: Path, fmt: str, spans: list[tuple[int, int, str | None]], pipe: Pipeline,
               settings: Any, stats: Counter[str]) -> list[str]:
    """Problems found in one file (empty = all checks passed)."""
    problems: list[str] = []
    outcomes: dict[int, list[Record | Rejected]] = {}
    records: list[Record] = []
    for pos, item in iter_records(path, settings, fmt):
        outcomes.setdefault(pos, []).append(item)
        if isinstance(item, Record):
            records.append(item)
            stats["records"] += 1
        else:
            stats["rejects"] += 1
            stats[f"reject:{item.reason}"] += 1
            if not item.reason:
                problems.append(f"line {pos}: reject without a reason")
    for first, last, rid in spans:
        if rid is not None:
            stats["good_rows"] += 1
            got = [o for o in outcomes.get(first, []) if isinstance(o, Record) and o.record_id == rid]
            if not got:
                stats["good_rows_dropped"] += 1
                problems.append(f"good row {rid} at line {first} not decided")
        else:
            stats["mutant_rows"] += 1
            if not any(outcomes.get(n) for n in range(first, last + 1)):
                stats["mutant_rows_unaccounted"] += 1
                problems.append(f"mutant row at lines {first}-{last} neither decided nor rejected")
    for i in range(0, len(records), settings.batch_size):
        batch = records[i:i + settings.batch_size]
        decisions = pipe.process(batch)
        if sorted(d.record_id for d in decisions) != sorted({r.record_id for r in batch}):
            problems.append("decisions do not match the records of a batch")
        for d in decisions:
            orjson.dumps(d.to_dict())
        stats["decisions"] += len(decisions)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000, help="input rows to generate (the bound)")
    ap.add_argument("--seconds", type=float, default=1800, help="stop after this long even if cases remain")
    ap.add_argument("--rows-per-file", type=int, default=200)
    ap.add_argument("--mutants", type=float, default=0.3, help="share of rows that are mutated")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--keep", default=".bench/fuzz-failures", help="where failing inputs are copied")
    args = ap.parse_args()

    settings = load_settings(env={})
    pipe = build_pipeline(settings)
    rng = random.Random(args.seed)
    stats: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dedup-fuzz-") as tmp:
        n_file = 0
        while stats["cases"] < args.cases and time.monotonic() - start < args.seconds:
            fmt = rng.choice(["csv", "jsonl"])
            n_rows = min(args.rows_per_file, args.cases - stats["cases"])
            data, spans = build_file(rng, fmt, n_rows, f"f{n_file}", args.mutants)
            path = Path(tmp) / f"case-{n_file}.{fmt}"
            path.write_bytes(data)
            stats["cases"] += n_rows
            stats[f"files_{fmt}"] += 1
            try:
                problems = check_file(path, fmt, spans, pipe, settings, stats)
            except (Exception, InputError) as exc:  # noqa: BLE001 - counting escapes is the point
                stats["uncaught_exceptions"] += 1
                problems = [f"{type(exc).__name__}: {exc}"[:300], traceback.format_exc(limit=4)[-600:]]
            if problems:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                (keep / path.name).write_bytes(data)
                failures.append({"file": str(keep / path.name), "problems": problems[:5]})
            n_file += 1
    stats["seconds"] = round(time.monotonic() - start)
    summary = {"cases": stats["cases"], "files": n_file, "uncaught_exceptions": stats["uncaught_exceptions"],
               "good_rows": stats["good_rows"], "good_rows_dropped": stats["good_rows_dropped"],
               "mutant_rows": stats["mutant_rows"],
               "mutant_rows_unaccounted": stats["mutant_rows_unaccounted"],
               "records": stats["records"], "rejects": stats["rejects"], "decisions": stats["decisions"],
               "reject_reasons": {k[7:]: v for k, v in sorted(stats.items()) if k.startswith("reject:")},
               "files_csv": stats["files_csv"], "files_jsonl": stats["files_jsonl"],
               "seconds": stats["seconds"], "failures": failures[:10]}
    print(json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
