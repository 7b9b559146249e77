"""Property-based: validation owns every value the core touches (issue 10).

For any row (file dict or decoded Kafka payload), validation returns a Record or raises RejectError with
a reason; for any Record that passed, the core decides it without raising, and the decision serialises.
Kept to a few hundred examples so CI stays fast; `benchmarks/fuzz_inputs.py` runs 100k+ cases over
CSV/JSONL bytes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.config import Settings, load_settings
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record, RejectError, parse_record
from consumer.io.artifacts import build_pipeline
from consumer.service.batch import DeadLetter, decode_message

_PROFILE_FIELDS = ["customer_id", "name", "city", "browser", "os", "login_times"]


@lru_cache(maxsize=1)
def _core() -> tuple[Settings, Pipeline]:
    """One pipeline for every example: the state grows like a stream's, replays included."""
    s = load_settings(env={})
    s.batch_size = 16
    return s, build_pipeline(s)


_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["王小明", "Иван Петров", "Γιώργος", "محمد علي", "☃😀", "ǅ ﬁ Ⅻ", "\x00\n\t", "  ", "Dr.,"]),
    st.text(max_size=10).map(lambda s: s + "\udcff"),  # what an undecodable byte looks like after reading
)
_scalar = st.one_of(st.none(), _text, st.booleans(), st.integers(), st.integers(min_value=10**60),
                    st.floats(), st.builds(pow, st.just(10), st.just(5000)))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.dictionaries(st.text(max_size=3), _scalar,
                                                                             max_size=2))
def _safe(dump: Any, value: Any) -> str:
    """json.dumps/repr of a generated value; Python cannot print integers of over 4,300 digits."""
    try:
        return str(dump(value, default=str) if dump is json.dumps else dump(value))
    except ValueError:
        return "[1" + "0" * 5000 + "]"


_stamp = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(datetime.isoformat),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=14)))).map(datetime.isoformat),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 31)).map(datetime.isoformat),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.just("0001-01-01T00:00:00"),
    st.just(-62135596800), _scalar,
)
_logins = st.one_of(
    _value,
    st.lists(_stamp, max_size=6),
    st.lists(_stamp, max_size=6).map(lambda xs: _safe(json.dumps, xs)),
    st.lists(_stamp, max_size=6).map(lambda xs: _safe(repr, xs)),
)
#: Rows that mostly pass validation, so the core sees many odd-but-valid records.
_plausible = st.fixed_dictionaries(
    {"customer_id": st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12), "name": _text,
     "city": _text, "browser": st.sampled_from(["Chrome", "Firefox 120", "", "☃"]),
     "os": st.sampled_from(["Windows", "iPhone OS", "", "Ⅻ"]),
     "login_times": st.lists(_stamp, max_size=6).map(lambda xs: _safe(json.dumps, xs))},
)
_rows = st.one_of(_plausible, st.fixed_dictionaries(
    {"customer_id": st.one_of(st.text(min_size=1, max_size=12), st.integers(), _scalar),
     "name": _value, "city": _value, "browser": _value, "os": _value, "login_times": _logins},
    optional={"extra": _value},
))


def _decide(records: list[Record]) -> None:
    s, pipe = _core()
    decisions = pipe.process(records)
    assert {d.record_id for d in decisions} == {r.record_id for r in records}
    for d in decisions:
        orjson.dumps(d.to_dict())  # the sink must be able to write it


def _validated(rows: list[Any]) -> list[Record]:
    s, _ = _core()
    out: list[Record] = []
    for row in rows:
        try:
            out.append(parse_record(row, s.profile, s.limits))
        except RejectError as exc:
            assert exc.reason and exc.detail
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_rows, _value), min_size=1, max_size=6))
def test_any_row_is_a_record_or_a_reasoned_reject_and_records_never_crash_the_core(rows: list[Any]) -> None:
    _decide(_validated(rows))


def _json(row: Any, ascii_only: bool) -> bytes:
    """A JSON payload as a producer might send it (huge ints it cannot print become a number literal)."""
    try:
        text = json.dumps(row, default=str, ensure_ascii=ascii_only)
    except ValueError:
        text = '{"customer_id": 1' + "0" * 5000 + "}"
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8 bytes


_payload = st.one_of(
    st.binary(max_size=200),
    _rows.map(lambda r: _json(r, True)),
    _rows.map(lambda r: _json(r, False)),
    st.just(None),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_payload, st.sampled_from([None, [("dedup.profile", b"crm-signup")],
                                                     [("dedup.profile", b"\xff")]])), min_size=1, max_size=6))
def test_any_kafka_payload_decodes_to_a_record_or_a_dead_letter(msgs: list[tuple[bytes | None, Any]]) -> None:
    s, _ = _core()
    records = []
    for offset, (value, headers) in enumerate(msgs):
        msg = Message(topic="signups", partition=0, offset=offset, value=value, headers=headers)
        item = decode_message(msg, s)
        if isinstance(item, DeadLetter):
            assert item.reason and item.stage in ("decode", "validate")
        else:
            records.append(item)
    _decide(records)
