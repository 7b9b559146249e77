"""The user's own answers, honoured: a pair answered "yes" scores as a match, a pair answered "no" as none.

Why: `dedup label` corrects the model with a handful of parameters, so that a hundred answers say something
about the pairs nobody was asked about. A correction that general cannot fit every answer: on Amazon-Google,
100 answers of one question order, a fifth of the answered pairs ended on the side of the threshold the user
had said they were not on. A user who said "these two are the same listing" and finds them apart (or said
"different" and finds them merged) stops trusting the rest. So a labelled model carries its answers, and every
run with it (`dedup batch --labels`, `dedup run --model`, the same core path) scores an answered pair as the
answer, wherever the pair comes up: as a candidate, or as a cluster member the clustering scores on demand;
and a "yes" partner the candidate search did not return is made a candidate (`with_partners`).
"Unsure" answers are not carried.

The answers are the model's, so they act exactly where its record ids do: the file it was labelled on, or a
stream carrying the same ids. Ids are stored hashed (`key_of`, blake2b 8 bytes), so a model file and its
manifest carry no raw ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Answers", "key_of", "with_support", "YES_SCORE", "NO_SCORE"]

#: The score an answered pair gets: a certain match, or certainly none (inside (0, 1), so that log-odds and
#: averages over cluster members stay finite: one "no" member pulls a cluster's average far below any bar).
YES_SCORE = 0.9999
NO_SCORE = 0.0001


def with_support(said: np.ndarray | None, held: np.ndarray) -> np.ndarray | None:
    """`said` (1 yes, -1 no, 0 none; None: no answer) with the unanswered pairs an encoder's `Support` rule
    holds for as a yes: to the clustering's partner re-check they are near-reciprocal whatever the other
    pairs score, and not the yardstick of their records' other partners (a 0.5 beside a model's 0.93 must
    not split one product's offers apart)."""
    if not held.any():
        return said
    return held.astype(np.int8) if said is None else np.where(said == 0, held.astype(said.dtype), said)


def key_of(record_id: str) -> str:
    """A record id as the model file keeps it (16 hex digits)."""
    return hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).hexdigest()


class Answers:
    """Answered pairs by hashed record id; `apply` overrides the scores of those among a batch's pairs."""

    def __init__(self, pairs: Iterable[tuple[str, str, bool]], record_ids: Sequence[str] = ()) -> None:
        """`pairs`: (key_of(a), key_of(b), same?); the later of two answers about one pair wins. `record_ids`:
        the pipeline's store's ids by row (the live list: rows appended later are read when next needed)."""
        self.record_ids = record_ids
        self._answer: dict[frozenset[str], bool] = {frozenset((a, b)): bool(same) for a, b, same in pairs if a != b}
        self._keys = {k for pair in self._answer for k in pair}
        #: key -> the keys it was answered "yes" with (`with_partners`).
        self._yes: dict[str, set[str]] = {}
        for pair, same in self._answer.items():
            a, b = tuple(pair)
            if same:
                self._yes.setdefault(a, set()).add(b)
                self._yes.setdefault(b, set()).add(a)
        #: Row -> key of the stored rows whose record is in some answer; rows up to `_seen` looked at.
        self._row_key: dict[int, str] = {}
        self._key_row: dict[str, int] = {}  # the inverse (the latest row of an id)
        self._seen = 0
        self._known: np.ndarray | None = None  # the rows of `_row_key` as an array (None: to rebuild)

    @classmethod
    def of(cls, meta: Mapping[str, Any] | None, record_ids: Sequence[str] = ()) -> Answers | None:
        """The answers a model's meta carries (`meta["answers"]`: [key_a, key_b, 0/1] rows); None without any."""
        rows = (meta or {}).get("answers") or []
        return cls(((str(a), str(b), bool(s)) for a, b, s in rows), record_ids) if rows else None

    @staticmethod
    def rows_for(labels: Iterable[tuple[str, str, str]]) -> list[list[Any]]:
        """The meta rows of (left id, right id, "yes"/"no"/...) answers; other answers are left out."""
        return [[key_of(a), key_of(b), int(ans == "yes")] for a, b, ans in labels if ans in ("yes", "no")]

    def __len__(self) -> int:
        return len(self._answer)

    def about(self, a: str, b: str) -> bool | None:
        """The answer about records `a` and `b` by id (True "yes", False "no"), None when not answered."""
        return self._answer.get(frozenset((key_of(a), key_of(b))))

    def _sync(self) -> None:
        """Hash the ids of rows stored since the last call (appended by `process`, `restore` or `absorb`)."""
        record_ids = self.record_ids
        for row in range(self._seen, len(record_ids)):
            rid = record_ids[row]
            if rid and (k := key_of(rid)) in self._keys:
                self._row_key[row], self._key_row[k], self._known = k, row, None
        self._seen = len(record_ids)

    def said(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray | None:
        """Per pair of rows (left[i], right[i]): 1 answered "yes", -1 "no", 0 not answered; None when none was."""
        self._sync()
        if not self._row_key or not len(left):
            return None
        left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
        if self._known is None:
            self._known = np.fromiter(self._row_key, np.int64, len(self._row_key))
        hit = np.flatnonzero(np.isin(left, self._known) & np.isin(right, self._known))
        out = None
        for i in hit:
            same = self._answer.get(frozenset((self._row_key[int(left[i])], self._row_key[int(right[i])])))
            if same is not None:
                out = np.zeros(len(left), np.int8) if out is None else out
                out[i] = 1 if same else -1
        return out

    def with_partners(self, rows: np.ndarray, cands: list[np.ndarray]) -> list[np.ndarray]:
        """Each new row's candidates (`cands[i]` for `rows[i]`) plus the earlier rows it was answered "yes"
        with, where the candidate search did not return them (a label file may hold any pair, and the search
        order of a stream is not the one the questions came from): a "yes" is then always scored."""
        self._sync()
        out = None
        for i, row in enumerate(rows.tolist()):
            partners = self._yes.get(self._row_key.get(row, ""), ())
            have = set(cands[i].tolist()) if partners else set()
            extra = [r for p in partners if (r := self._key_row.get(p, row)) < row and r not in have]
            if extra:
                out = list(cands) if out is None else out
                out[i] = np.concatenate([cands[i], np.array(sorted(extra), cands[i].dtype)])
        return cands if out is None else out

    def apply(self, left: Sequence[int], right: Sequence[int], scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """`scores` of the pairs with answered ones set to `YES_SCORE` / `NO_SCORE` (a copy when any is),
        and `said`'s verdicts (None when no pair was answered)."""
        said = self.said(left, right)
        if said is None:
            return scores, None
        return np.where(said > 0, YES_SCORE, np.where(said < 0, NO_SCORE, scores)).astype(scores.dtype), said

    def forget(self, row: int) -> None:
        """An erased row: its answers no longer reach it (its tombstone has no id, so no later sync finds it;
        an id sent again after its erasure is a new row, which the answers do reach: docs/security.md)."""
        if (k := self._row_key.pop(row, None)) is not None:
            self._known = None
            if self._key_row.get(k) == row:
                del self._key_row[k]
