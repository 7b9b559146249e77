"""loadtest/loadtest.py as a user runs it: against the local stack (tansu + Redis + `dedup run`) with a small
bound, and against a broker or metrics endpoint that is not there (one clear line, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import kafka as hk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtest"))

from windows import Segment, max_rate_under, send_offsets  # noqa: E402


def loadtest(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "loadtest" / "loadtest.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_profiles_schedule_the_offered_records() -> None:
    steps = send_offsets([Segment(200, 200, 2), Segment(400, 400, 1)], 10_000)
    assert len(steps) == 800 and steps[399] < 2 <= steps[400] and steps[-1] < 3
    ramp = send_offsets([Segment(100, 300, 4)], 10_000)
    assert len(ramp) == 800 and abs(sum(t < 2 for t in ramp) - 300) <= 1  # 100 -> 200 records/s over the first 2 s
    assert len(send_offsets([Segment(100, 100, 10)], 250)) == 250  # --max-records caps the schedule


def test_max_rate_stops_at_the_first_window_over_the_bound() -> None:
    def w(rate: float, p99: float | None, unseen: int = 0) -> dict[str, float | int | None]:
        return {"produced": 1, "offered_per_s": rate, "p99_ms": p99, "unseen": unseen, "errors": 0}

    assert max_rate_under([w(100, 90), w(300, 400), w(200, 120), w(400, 100)], 250) == 200
    assert max_rate_under([w(100, 90), w(200, 120, unseen=1)], 250) == 100
    assert max_rate_under([w(100, 300)], 250) is None


@pytest.mark.integration
@pytest.mark.slow
def test_local_stack_ramp_report_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "lt"
    run = loadtest("--local", "--ramp", "50:150", "--seconds", "5", "--max-records", "400", "--max-seconds", "60",
                   "--drain-seconds", "40", "--warmup-records", "20", "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "max offered rate with p99 <= 250 ms:" in run.stdout
    report = json.loads((out / "report.json").read_text())
    s, windows = report["summary"], report["windows"]
    assert s["produced"] == 400 and s["seen"] == 400 and s["unseen"] == 0  # every record reached an event
    assert s["produce_errors"] == 0 and s["dead_letters"] == 0 and s["scrape_failures"] == 0
    assert s["throughput_per_s"] > 0 and s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]
    loaded = [w for w in windows if w["produced"]]
    assert len(loaded) >= 4 and sum(w["produced"] for w in windows) == 400
    assert sum(w["events"] for w in windows) == 400
    for w in loaded:
        assert w["offered_per_s"] > 0 and w["errors"] == 0
        assert w["p50_ms"] is not None and w["p50_ms"] <= w["p95_ms"] <= w["p99_ms"]
    assert loaded[-1]["offered_per_s"] > loaded[0]["offered_per_s"]  # the ramp rose
    assert any(w["lag"] is not None for w in windows) and s["max_lag"] is not None
    assert any(w["service_records_per_s"] for w in windows)  # /metrics was scraped while it ran
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"IHDR" in png[:32] and png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.integration
def test_unreachable_broker_and_metrics_are_one_line_errors(kafka_bootstrap: str, tmp_path: Path) -> None:
    profile = ("--rate", "10", "--seconds", "1", "--out", str(tmp_path))
    run = loadtest("--bootstrap", f"127.0.0.1:{hk.free_port()}", "--input-topic", "a", "--events-topic", "b",
                   *profile, timeout=60)
    assert run.returncode == 2 and "loadtest: error: Kafka at 127.0.0.1:" in run.stderr
    assert "Traceback" not in run.stderr
    topics = [hk.unique_topic("lt-in"), hk.unique_topic("lt-ev")]
    run = loadtest("--bootstrap", kafka_bootstrap, "--input-topic", topics[0], "--events-topic", topics[1],
                   *profile, timeout=60)
    assert run.returncode == 2 and "not found" in run.stderr and "Traceback" not in run.stderr
    hk.create_topics(kafka_bootstrap, topics)
    run = loadtest("--bootstrap", kafka_bootstrap, "--input-topic", topics[0], "--events-topic", topics[1],
                   "--metrics-url", f"http://127.0.0.1:{hk.free_port()}", *profile, timeout=60)
    assert run.returncode == 2 and "loadtest: error: metrics at" in run.stderr and "Traceback" not in run.stderr
