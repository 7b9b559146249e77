"""Per-modality similarities rank the real variations above unrelated records."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from consumer.encoders.behaviour import BehaviourEncoder
from consumer.encoders.device import DeviceEncoder
from consumer.encoders.names import NameEncoder
from consumer.engine.records import Record


def rec(name: str = "", city: str = "", browser: str = "", os: str = "",
        logins: tuple[datetime, ...] = ()) -> Record:
    return Record("x", name, city, (), browser, os, logins)


def pair_scores(encoder: object, a: Record, others: list[Record]) -> dict[str, np.ndarray]:
    cols_a = encoder.encode([a] * len(others))  # type: ignore[attr-defined]
    cols_b = encoder.encode(others)  # type: ignore[attr-defined]
    return encoder.compare(cols_a, cols_b)  # type: ignore[attr-defined]


def name_score(out: dict[str, np.ndarray]) -> np.ndarray:
    return np.fmax(0.75 * out["name_cov_max"] + 0.25 * out["name_cov_min"], out["name_grams"])


def test_name_variations_beat_a_different_person() -> None:
    enc = NameEncoder("test-key")
    base = rec("Robert Smith", "Boston")
    variants = ["Bob Smith", "R. Smith", "Smith, Robert", "ROBERT SMITH", "Robrt Smiht", "Robert J. Smith",
                "Dr. Robert Smith"]
    others = [rec(v, "Boston") for v in variants] + [rec("Mary Smith", "Boston"), rec("Robert Jones", "Boston")]
    s = name_score(pair_scores(enc, base, others))
    assert s[: len(variants)].min() > max(s[-2:]), (s, variants)
    assert s[0] >= 0.9 and s[2] == 1.0 and s[3] == 1.0


def test_city_alias_typo_and_blank() -> None:
    enc = NameEncoder("test-key")
    out = pair_scores(enc, rec("A B", "New York"), [rec("A B", "NYC"), rec("A B", "New Yrok"),
                                                     rec("A B", ""), rec("A B", "Chicago")])
    city = out["city"]
    assert city[0] == 1.0 and 0.4 < city[1] < 1.0 and np.isnan(city[2]) and city[3] < 0.3


def test_hashed_signatures_depend_on_the_key() -> None:
    a = NameEncoder("key-one").encode([rec("Robert Smith", "Boston")])
    b = NameEncoder("key-two").encode([rec("Robert Smith", "Boston")])
    assert not np.array_equal(a["tok_keys"], b["tok_keys"])


def habit(hour: int, n: int, start: datetime, step_days: float = 3.0) -> tuple[datetime, ...]:
    return tuple(start + timedelta(days=step_days * i, hours=hour, minutes=7 * i % 50) for i in range(n))


def test_behaviour_matches_habits_not_timestamps() -> None:
    enc = BehaviourEncoder()
    me = rec(logins=habit(22, 6, datetime(2025, 1, 1)))
    me_again = rec(logins=habit(23, 5, datetime(2025, 6, 3), 4.0))  # other stamps, same late-evening habit
    morning = rec(logins=habit(7, 6, datetime(2025, 1, 1)))
    none = rec(name="x")
    out = pair_scores(enc, me, [me_again, morning, none])
    assert out["beh_hour"][0] > 0.8 > out["beh_hour"][1]
    assert np.isnan(out["beh_hour"][2])


def test_device_partial_credit() -> None:
    enc = DeviceEncoder("k")
    base = rec(browser="Chrome", os="Windows")
    out = pair_scores(enc, base, [rec(browser="Google Chrome", os="Win10"), rec(browser="Edge", os="Windows"),
                                  rec(browser="Chrome", os="macOS"), rec(browser="Safari", os="iOS"), rec("x")])
    d = out["device"]
    assert d[0] == 1.0 and d[0] > d[1] > d[2] > d[3]
    assert np.isnan(d[4])
