"""benchmarks/bench_compare.py: the side-by-side harness speed claims are quoted from (issue 38).

What must hold for its ratios to mean anything: each side imports its own tree's code, both sides run every
round, the summary's medians, spreads and ratio come from the raw runs, a single round is refused unless the
output says it is a smoke run, and the base worktree is gone afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_compare  # noqa: E402
from compare_cases import BATCH_METRICS, Case  # noqa: E402


def _in_git_checkout() -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


def test_fewer_than_three_rounds_are_refused_without_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_compare.parse_args(["--base", "HEAD", "--rounds", "2"])
    assert exc.value.code == 2
    assert "--smoke" in capsys.readouterr().err
    assert bench_compare.parse_args(["--base", "HEAD", "--rounds", "1", "--smoke"]).rounds == 1
    assert bench_compare.parse_args(["--base", "HEAD"]).rounds == 3


def test_an_unknown_case_is_refused_and_the_defaults_leave_out_the_long_ones() -> None:
    with pytest.raises(SystemExit):
        bench_compare.parse_args(["--base", "HEAD", "--cases", "batch-crm,nope"])
    assert set(bench_compare.parse_args(["--base", "HEAD"]).case_list) == {"service", "batch-crm", "person"}


def test_summary_takes_medians_spread_and_ratio_from_the_runs_and_skips_failed_ones() -> None:
    case = Case("batch-crm", BATCH_METRICS)
    runs = [{"case": "batch-crm", "round": i + 1, "side": side, "metrics": {"records_per_second": v}}
            for i, (b, h) in enumerate([(10.0, 20.0), (12.0, 30.0), (11.0, 22.0)])
            for side, v in (("base", b), ("head", h))]
    runs.append({"case": "batch-crm", "round": 4, "side": "head", "error": "RuntimeError: boom"})
    row = bench_compare.summarise(runs, {"batch-crm": case})["batch-crm"]["records_per_second"]
    assert row["base"] == {"median": 11.0, "min": 10.0, "max": 12.0, "n": 3}
    assert row["head"] == {"median": 22.0, "min": 20.0, "max": 30.0, "n": 3}
    assert row["ratio"] == 2.0 and row["higher_is_better"] is True
    (line,) = bench_compare.quote_lines({"batch-crm": {"records_per_second": row}}, rounds=3, smoke=False)
    assert "base median 11.0, head median 22.0, ratio head/base 2.0 (3 rounds each, alternating)" in line
    assert "smoke" not in line


@pytest.mark.skipif(not _in_git_checkout(), reason="needs a git checkout (the base is a git worktree)")
def test_end_to_end_head_against_head_on_a_tiny_crm_file(tmp_path: Path) -> None:
    report_path = tmp_path / "compare.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_compare.py"), "--base", "HEAD", "--cases", "batch-crm",
         "--crm-records", "300", "--rounds", "1", "--smoke", "--json", str(report_path),
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke: not evidence" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["smoke"] is True and report["rounds"] == 1
    assert report["base"]["commit"] == report["head"]["commit"]
    # Each side imported its own tree: the base its worktree, the head this checkout.
    assert Path(report["base"]["consumer_file"]).is_relative_to(report["base"]["tree"])
    assert Path(report["head"]["consumer_file"]).resolve().is_relative_to(ROOT)
    assert [(r["side"], r["round"]) for r in report["runs"]] == [("base", 1), ("head", 1)]
    assert all(r["load_1m"] >= 0 and r["metrics"]["seconds"] > 0 for r in report["runs"])
    row = report["summary"]["batch-crm"]["records_per_second"]
    b, h = row["base"]["median"], row["head"]["median"]
    assert b > 0 and h > 0 and row["ratio"] == pytest.approx(h / b, abs=1e-3)
    assert report["summary"]["batch-crm"]["peak_rss_mb"]["head"]["median"] > 0
    assert "batch-crm records_per_second" in proc.stdout and "ratio head/base" in proc.stdout
    # The base worktree is removed, from disk and from git's list.
    assert not Path(report["base"]["tree"]).exists()
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert report["base"]["tree"] not in listed
