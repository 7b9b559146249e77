"""Validation: every bad row becomes a reasoned reject; good rows in every accepted shape parse."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from consumer.config import LimitSettings, ProfileSettings
from consumer.engine.records import RejectError, parse_record

P, L = ProfileSettings(), LimitSettings()


def row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"customer_id": "c1", "name": "Kyle Roberts", "city": "Joseshire",
                               "browser": "Firefox", "os": "macOS",
                               "login_times": '["2025-01-28T22:00:00", "2025-05-08T21:51:00"]'}
    base.update(kw)
    return base


def test_paper_python_list_string_and_json_array_both_parse() -> None:
    a = parse_record(row(login_times="['2025-01-28T22:00:00', '2025-05-08T21:51:00']"), P, L)
    b = parse_record(row(), P, L)
    assert a.login_times == b.login_times == (datetime(2025, 1, 28, 22), datetime(2025, 5, 8, 21, 51))


def test_json_list_value_epoch_and_zulu_timestamps() -> None:
    r = parse_record(row(login_times=["2025-01-28T22:00:00Z", 1735689600]), P, L)
    assert len(r.login_times) == 2


def test_missing_modalities_are_fine() -> None:
    r = parse_record({"customer_id": 7, "name": "Ann Lee"}, P, L)
    assert r.record_id == "7" and r.city == "" and r.login_times == ()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"customer_id": ""}, "missing_id"),
        ({"customer_id": None}, "missing_id"),
        ({"customer_id": ["x"]}, "wrong_type"),
        ({"customer_id": True}, "wrong_type"),
        ({"name": {"first": "x"}}, "wrong_type"),
        ({"name": float("nan")}, "wrong_type"),
        ({"login_times": "yesterday"}, "bad_timestamps"),
        ({"login_times": "['2025-13-45T99:00:00']"}, "bad_timestamps"),
        ({"login_times": '{"a": 1}'}, "bad_timestamps"),
        ({"login_times": [None]}, "bad_timestamps"),
        ({"name": "x" * 10_000}, "oversized_field"),
        ({"login_times": ["2025-01-01T00:00:00"] * 6000}, "oversized_field"),
        ({"name": "bad \udcff bytes"}, "bad_encoding"),
        ({"name": "", "city": "", "browser": "", "os": "", "login_times": "[]"}, "no_usable_fields"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(bad: dict[str, object], reason: str) -> None:
    with pytest.raises(RejectError) as info:
        parse_record(row(**bad), P, L)
    assert info.value.reason == reason


def test_field_limit_holds_for_plain_ascii_and_other_text_alike() -> None:
    """Short ASCII fields skip the per-type checks; the configured length limit still holds for them."""
    tight = dataclasses.replace(L, max_field_chars=10)
    assert parse_record(row(name="  Ann Lee  "), P, tight).name == "Ann Lee"
    for name in ("Annabel Lee-Smith", "Zoë Lee-Smithson"):
        with pytest.raises(RejectError) as info:
            parse_record(row(name=name), P, tight)
        assert info.value.reason == "oversized_field"


def test_reject_messages_never_quote_field_values() -> None:
    with pytest.raises(RejectError) as info:
        parse_record(row(name="Kyle Roberts" * 100), P, L)
    assert "Kyle" not in str(info.value)


def test_not_an_object() -> None:
    with pytest.raises(RejectError, match="not_an_object"):
        parse_record(["a", "b"], P, L)
