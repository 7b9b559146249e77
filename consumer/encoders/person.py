"""Person fields compared one by one: given name, surname, date of birth, phone.

A plug-in modality (docs/extending.md) used by the built-in `person` profile, beside `names` (which
compares the whole name with nicknames and phonetics, and feeds the candidate index). Fitting without
labels (Fellegi-Sunter, `consumer/learn/fellegi_sunter.py`) needs each field as its own comparison: agreeing on
a surname and disagreeing on a given name is a sibling, the reverse a spouse, and a rare surname says far
more than a common one (`Feature.tf`: term-frequency adjustment from the streaming frequency table), and
two names one edit apart are a typo only when one of them is rare (`Feature.tf_near`: Schmitt / Schmidt).

- given name / surname: equal, one edit apart, trigram overlap; a given name that is an initial or the start
  of the other ("t." / "thomas", "wolf" / "wolfgang") is related (the third level); a pair whose two fields were swapped
  ("smith john" vs "john smith") is compared crossed, also where one side's other field is empty
  ("holly" vs "thomson holly");
- date of birth (optional): equal; one typo or day and month swapped; two of year, month and day equal
  (one part wrong: a mistyped year, a default day); the next or previous month (a date entered a few
  weeks off: "1981-12-15" / "1982-01-14"); the same year only; the next or previous year; else. "One
  typo" also needs two parts equal: the 16-bit deletion hashes alone collide for ~0.1% of pairs of
  different dates (measured on RLdata10000: "1968-08-15" / "1991-04-09" read as one typo apart, a false
  match between namesakes). The month and year neighbours are Splink's "within a month / a year" levels
  of its date-of-birth comparison, on keyed hashes of the month and year numbers (no date is stored);
- phone (optional): the last 8 digits equal, one typo apart, else.

A field either side lacks is NaN: never disagreement. Keyed hashes only, like every encoder.

The date of birth reaches the candidates by an exact key (`keys`, `consumer/engine/keys.py`), not by a vector
in the candidate index. Why: a 512-bucket date vector was 64% of the person index's 800 dimensions, so most
of the index's time (inserts and searches, the run's longest thread on a 50,000-record file), and since the
exact keys came it found no pair they miss: left out, every person file of the quality suite moved by at
most 0.0013 and a 50,000-record file took 30 s end to end instead of 38.5 s (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, KeyedHasher, Rarity, Score
from consumer.encoders.fields import (
    FIELD_LEVELS,
    ONE_EDIT,
    FieldCodec,
    deletion_hashes,
    field_columns,
    field_similarity,
    one_edit,
)
from consumer.engine.normalize import fold
from consumer.engine.records import Record

__all__ = ["PersonEncoder", "dob_canonical"]

ROLES = ("given_name", "surname", "date_of_birth", "phone")
_DIGITS = re.compile(r"\D+")
#: Exact; one typo or day/month swap (0.9); two of three parts (0.7); the next or previous month (0.6); same
#: year only (0.5); the next or previous year (0.4); else.
DOB_LEVELS = (1.0, 0.88, 0.65, 0.55, 0.45, 0.35)
DOB_TWO_PARTS = 0.7
DOB_NEXT_MONTH = 0.6
DOB_NEXT_YEAR = 0.4
PHONE_DIGITS = 8
#: A given name that is an initial of the other ("t." / "thomas") or its start ("wolf" / "wolfgang", "rob" /
#: "robert", at least `MIN_PREFIX` letters): related, the third level, neither agreement nor a different name.
GIVEN_SHORTENED = 0.7
MIN_PREFIX, MAX_PREFIX = 3, 8


def _name(text: str) -> str:
    return fold(text).replace(",", " ").strip()


def dob_canonical(text: str) -> str:
    """YYYYMMDD digits from "1990-12-09", "19901209", "09/12/1990" (day first); "" when not a date."""
    digits = _DIGITS.sub("", text)
    if len(digits) != 8:
        return ""
    if digits[:2] in ("19", "20"):
        return digits
    if digits[4:6] in ("19", "20"):  # DDMMYYYY
        return digits[4:] + digits[2:4] + digits[:2]
    return digits


def _phone(text: str) -> str:
    digits = _DIGITS.sub("", text)
    return digits[-PHONE_DIGITS:] if len(digits) >= 6 else ""


#: The date-of-birth columns, in the order `PersonEncoder._dob_sig` gives them: the date, with day and month
#: swapped, its year, month and day, its month number (year * 12 + month), its single deletions, the month
#: before and after, the year before and after.
DOB_COLUMNS = ("dob_h", "dob_swap", "dob_year", "dob_month", "dob_day", "dob_ym", "dob_dels", "dob_ym_near",
               "dob_y_near")


class PersonEncoder:
    name = "person"

    def __init__(self, hash_key: str):
        self._hash = KeyedHasher(hash_key)
        self._fields = FieldCodec(self._hash)
        self._dob_sig = lru_cache(maxsize=100_000)(self._dob_uncached)
        self._start = lru_cache(maxsize=100_000)(self._start_uncached)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> PersonEncoder:
        return cls(settings.encoders.hash_key)

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=ROLES,
            columns=(*field_columns("given"), *field_columns("surname"), "given_short", "given_starts",
                     "dob_h", "dob_dels", "dob_swap",
                     "dob_year", "dob_month", "dob_day", "dob_ym", "dob_ym_near", "dob_y_near",
                     *field_columns("phone")),
            features=(Feature("given_name", levels=FIELD_LEVELS, tf="given_rarity", tf_near="given_rarer"),
                      Feature("surname", levels=FIELD_LEVELS, tf="surname_rarity", tf_near="surname_rarer",
                              joint="household"),  # with an address: a household (`consumer.learn.joint`)
                      Feature("dob", levels=DOB_LEVELS), Feature("phone", levels=(1.0, 0.88))),
            rarity=(Rarity("given_rarity", lambda cols: cols["given_h"]),
                    Rarity("surname_rarity", lambda cols: cols["surname_h"]),
                    Rarity("given_rarer", lambda cols: cols["given_h"], rarer=True),
                    Rarity("surname_rarer", lambda cols: cols["surname_h"], rarer=True)),
            scores=(Score("dob"), Score("phone")),
            keys=(("dob_h",),),
            coefficients={"dob.weight": 0.3, "phone.weight": 0.2})

    def encode(self, records: Sequence[Record]) -> Columns:
        cols: Columns = {}
        cols.update(self._fields.encode([r.role("given_name") for r in records], "given", _name, "pname"))
        cols.update(self._fields.encode([r.role("surname") for r in records], "surname", _name, "pname"))
        cols["given_short"], cols["given_starts"] = self._starts([r.role("given_name") for r in records])
        cols.update(self._fields.encode([r.role("phone") for r in records], "phone", _phone))
        n = len(records)
        cols.update({c: np.zeros(n, np.uint32) for c in ("dob_h", "dob_swap", "dob_year", "dob_month", "dob_day",
                                                         "dob_ym")})
        cols.update({"dob_dels": np.zeros((n, 9), np.uint16), "dob_ym_near": np.zeros((n, 2), np.uint32),
                     "dob_y_near": np.zeros((n, 2), np.uint32)})
        sigs = [self._dob_sig(r.role("date_of_birth")) for r in records]
        present = [i for i, sig in enumerate(sigs) if sig is not None]
        if present:  # laid into the columns for the whole batch at once
            for j, col in enumerate(DOB_COLUMNS):
                cols[col][present] = np.array([sigs[i][j] for i in present], cols[col].dtype)
        return cols

    def _dob_uncached(self, raw: str) -> tuple[Any, ...] | None:
        """A date of birth's columns (`DOB_COLUMNS` order), None without a date; cached per raw value (a
        file's dates repeat: every record of a person, and the same birthdays)."""
        d = dob_canonical(raw)
        if not d:
            return None
        h = self._hash.get
        y, mo = int(d[:4]), int(d[4:6])
        ym = y * 12 + mo - 1
        return (h("dob:" + d), h("dob:" + d[:4] + d[6:] + d[4:6]),  # the date, its day and month swapped
                h("doby:" + d[:4]), h("dobm:" + d[4:6]), h("dobd:" + d[6:]), h(f"doba:{ym}"),
                deletion_hashes(self._hash, "dob:", d, 9), (h(f"doba:{ym - 1}"), h(f"doba:{ym + 1}")),
                (h(f"doby:{y - 1:04d}"), h(f"doby:{y + 1:04d}")))

    def _starts(self, values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per given name: a keyed hash of itself as a possible shortening (an initial, or a one-word name of
        `MIN_PREFIX` to `MAX_PREFIX` letters; 0 otherwise), and keyed hashes of its first letter and of its
        starts of `MIN_PREFIX` to `MAX_PREFIX` letters shorter than itself. One name is a shortening of the
        other when its own hash is among the other's starts. Keyed hashes only: no letter is stored."""
        short = np.zeros(len(values), np.uint32)
        starts = np.zeros((len(values), MAX_PREFIX - MIN_PREFIX + 2), np.uint32)
        for i, raw in enumerate(values):
            if raw:
                own, cuts = self._start(raw)
                short[i] = own
                starts[i, :len(cuts)] = cuts
        return short, starts

    def _start_uncached(self, raw: str) -> tuple[int, tuple[int, ...]]:
        """`_starts` of one given name (cached per raw value: given names repeat)."""
        name = _name(raw)
        if not name or " " in name:
            return 0, ()
        h = self._hash.get
        own = h("start:" + name) or 1 if len(name) == 1 or MIN_PREFIX <= len(name) <= MAX_PREFIX else 0
        if len(name) == 1:
            return own, ()
        cuts = [name[:1]] + [name[:k] for k in range(MIN_PREFIX, min(MAX_PREFIX, len(name) - 1) + 1)]
        return own, tuple(h("start:" + c) or 1 for c in cuts)

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        given = field_similarity(a, b, "given")
        # An initial or a shortened given name ("t." / "thomas", "wolf" / "wolfgang"): related, not different.
        shortened = _starts_with(a, b) | _starts_with(b, a)
        given = np.where(shortened & (given < GIVEN_SHORTENED), GIVEN_SHORTENED, given).astype(np.float32)
        surname = field_similarity(a, b, "surname")
        # Swapped fields: compare crossed where that fits both names better than the direct reading.
        crossed_g = _cross(a, b, "given", "surname")
        crossed_s = _cross(a, b, "surname", "given")
        # One side's other field may be empty ("holly" / "thomson holly"): the crossed field that can be read
        # must then agree, and the crossed reading still fit better than the direct one.
        swap = (crossed_g >= 0.88) | (crossed_s >= 0.88)
        swap &= ~(crossed_g < 0.88) & ~(crossed_s < 0.88)
        swap &= np.nan_to_num(given) + np.nan_to_num(surname) < np.nan_to_num(crossed_g) + np.nan_to_num(crossed_s)
        given = np.where(swap, crossed_g, given).astype(np.float32)
        surname = np.where(swap, crossed_s, surname).astype(np.float32)
        return {"given_name": given, "surname": surname, "dob": self._dob(a, b),
                "phone": field_similarity(a, b, "phone", code=True)}

    @staticmethod
    def _dob(a: Columns, b: Columns) -> np.ndarray:
        ha, hb = a["dob_h"], b["dob_h"]
        year = a["dob_year"] == b["dob_year"]
        parts = year.astype(np.int8) + (a["dob_month"] == b["dob_month"]) + (a["dob_day"] == b["dob_day"])
        sim = np.zeros(len(ha), np.float32)
        sim[(a["dob_year"][:, None] == b["dob_y_near"]).any(axis=1)] = DOB_NEXT_YEAR
        sim[year] = 0.5
        sim[(a["dob_ym"][:, None] == b["dob_ym_near"]).any(axis=1)] = DOB_NEXT_MONTH
        sim[parts >= 2] = DOB_TWO_PARTS
        idx = np.nonzero((ha != hb) & (parts >= 2))[0]  # a one-digit typo leaves two parts equal
        close = np.zeros(len(ha), bool)
        if len(idx):
            close[idx] = one_edit(a["dob_dels"][idx], b["dob_dels"][idx])
        close |= a["dob_swap"] == hb
        sim[close] = ONE_EDIT
        sim[ha == hb] = 1.0
        sim[(ha == 0) | (hb == 0)] = np.nan
        return sim

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {"dob": feats["dob"].astype(np.float32), "phone": feats["phone"].astype(np.float32)}


def _starts_with(a: Columns, b: Columns) -> np.ndarray:
    """Whether a's given name is an initial or a start of b's (`PersonEncoder._starts`)."""
    return ((a["given_short"][:, None] == b["given_starts"]) & (a["given_short"] != 0)[:, None]).any(axis=1)


def _cross(a: Columns, b: Columns, field_a: str, field_b: str) -> np.ndarray:
    """Similarity of a's `field_a` with b's `field_b` (same columns, renamed)."""
    ca, cb = field_columns(field_a), field_columns(field_b)
    tmp = "cross"
    ta = {c.replace(field_a, tmp, 1): a[c] for c in ca}
    tb = {c.replace(field_b, tmp, 1): b[c] for c in cb}
    return field_similarity(ta, tb, tmp)
