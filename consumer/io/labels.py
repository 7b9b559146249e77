"""Label files (a user's answers about record pairs) and truth files an oracle answers from.

A label file is a CSV a person can read and edit:

    # dedup labels v1; input sha256=<hex of the input file>; profile=listing
    left_id,right_id,label
    a_12,b_907,yes
    a_40,b_33,no

`label` is yes, no or unsure (unsure pairs are kept so they are not asked again, and never fitted on).
The header names the input by its hash: labels about another file's records are refused rather than
silently matched by id. A file without the comment line (labels written by hand or exported from a CRM) is
accepted without that check. Every answer is appended and flushed at once; undo rewrites the file
atomically, so a session killed at any moment leaves a valid file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from consumer.io.files import InputError

__all__ = ["LabelFile", "Label", "file_sha256", "read_labels", "read_oracle", "HEADER_COLUMNS", "ENTITY_WORDS"]

HEADER_COLUMNS = ("left_id", "right_id", "label")
_PREFIX = "# dedup labels v1"


@dataclass(frozen=True)
class Label:
    left: str
    right: str
    answer: str  # yes | no | unsure

    @property
    def key(self) -> tuple[str, str]:
        return (self.left, self.right) if self.left <= self.right else (self.right, self.left)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta(line: str) -> dict[str, str]:
    out = {}
    for part in line[len(_PREFIX):].split(";"):
        k, _, v = part.strip().partition("=")
        if k and v:
            out[k.strip()] = v.strip()
    return out


def read_labels(path: str | Path, known_ids: Collection[str] | None = None, input_sha256: str | None = None
                ) -> list[Label]:
    """The labels of a label file, validated: InputError naming the line for wrong columns, an unknown
    answer, an id not in the input (`known_ids`), a pair labelled twice (the same answer or another), a
    pair of a record with itself, or a header made for another input (`input_sha256`)."""
    p = Path(path)
    name = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason})") from None
    lines = text.splitlines()
    start = 0
    if lines and lines[0].startswith("#"):
        meta = _meta(lines[0]) if lines[0].startswith(_PREFIX) else {}
        got = meta.get("input sha256")
        if input_sha256 and got and got != input_sha256:
            raise InputError(f"{name} line 1: these labels were made for another input file (sha256 {got[:12]}..., "
                             f"this input is {input_sha256[:12]}...); use a new label file for this input")
        start = 1
    if start >= len(lines) or not lines[start].strip():
        return []
    reader = csv.reader(io.StringIO("\n".join(lines[start:])))
    header = [h.strip() for h in next(reader)]
    if tuple(header) != HEADER_COLUMNS:
        raise InputError(f"{name} line {start + 1}: expected the columns {','.join(HEADER_COLUMNS)}, found "
                         f"{','.join(header) or '(nothing)'}")
    out: list[Label] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for offset, row in enumerate(reader):
        line = start + 2 + offset
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 3:
            raise InputError(f"{name} line {line}: expected 3 fields (left_id,right_id,label), found {len(row)}")
        left, right, answer = (c.strip() for c in row)
        answer = answer.lower()
        if answer not in ("yes", "no", "unsure"):
            raise InputError(f"{name} line {line}: label must be yes, no or unsure, not {answer!r}")
        if left == right:
            raise InputError(f"{name} line {line}: a record paired with itself ({left!r})")
        if known_ids is not None:
            for rid in (left, right):
                if rid not in known_ids:
                    raise InputError(f"{name} line {line}: unknown id {rid!r} (not in the input file)")
        lab = Label(left, right, answer)
        if lab.key in seen:
            first, before = seen[lab.key]
            kind = ("the same pair labelled again" if before == answer
                    else f"conflicting label ({before} on line {first})")
            raise InputError(f"{name} line {line}: {kind}: {left},{right}")
        seen[lab.key] = (line, answer)
        out.append(lab)
    return out


class LabelFile:
    """An append-only label file for one input (its hash in the header); `undo` drops the last answer."""

    def __init__(self, path: str | Path, input_sha256: str, profile: str, known_ids: Collection[str]) -> None:
        self.path = Path(path)
        self.header = f"{_PREFIX}; input sha256={input_sha256}; profile={profile}\n"
        self.labels = read_labels(self.path, known_ids, input_sha256)
        if not self.path.exists() or not self.path.read_text(encoding="utf-8").strip():
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(self.header)
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(HEADER_COLUMNS)
            w.writerows((lab.left, lab.right, lab.answer) for lab in self.labels)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def add(self, label: Label) -> None:
        """Append one answer, on disk before this returns."""
        self.labels.append(label)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerow((label.left, label.right, label.answer))
            fh.flush()
            os.fsync(fh.fileno())

    def undo(self) -> Label | None:
        if not self.labels:
            return None
        last = self.labels.pop()
        self._rewrite()
        return last


#: A truth file's entity column is named like one of these (`read_oracle`, `consumer.evaluation.evaluate.load_truth`).
ENTITY_WORDS = ("entity", "cluster", "group")


def read_oracle(path: str | Path, known_ids: Iterable[str]) -> dict[str, str]:
    """record id -> entity from a truth file: `id,entity` per record (the real-data benchmark's files, or
    any two columns whose second names an entity or cluster), or one row per matching pair
    (`left_id,right_id`). Records the file does not name are their own entity."""
    p = Path(path)
    with p.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise InputError(f"{p.name}: empty truth file")
    header = [h.strip().lower() for h in rows[0]]
    entity: dict[str, str] = {rid: rid for rid in known_ids}
    if len(header) < 2:
        raise InputError(f"{p.name} line 1: expected id,entity or left_id,right_id columns")
    if any(w in header[1] for w in ENTITY_WORDS):
        for line, row in enumerate(rows[1:], start=2):
            if len(row) < 2:
                raise InputError(f"{p.name} line {line}: expected 2 fields")
            entity[row[0]] = "e:" + row[1]
        return entity
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for line, row in enumerate(rows[1:], start=2):
        if len(row) < 2:
            raise InputError(f"{p.name} line {line}: expected 2 fields (a matching pair)")
        a, b = find(row[0]), find(row[1])
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {rid: find(rid) for rid in entity}
