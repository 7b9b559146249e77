"""Issue 10, the input side: poison values, destroyed files, undecodable ids, broken quotes, one-line errors.

Each test here failed before its fix: a row that passed validation crashed the core, `--out` could
truncate the input or an existing output, one undecodable byte aborted a file, a stray quote swallowed
the rows after it, and OS errors surfaced as tracebacks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config import load_settings
from consumer.engine.records import RejectError, parse_record
from consumer.io.batch import run_batch
from consumer.io.files import InputError, read_rows

HEADER = "customer_id,name,city,browser,os,login_times"
GOOD = [
    'g1,Kyle Roberts,Joseshire,Firefox,macOS,"[""2025-01-28T22:00:00"", ""2025-05-08T21:51:00""]"',
    'g2,Kyle Robrts,Joseshire,Firefox,macOS,"[""2025-02-01T21:30:00"", ""2025-03-08T22:10:00""]"',
    "g3,Mark Anderson,New Emily,Firefox,iOS,\"['2025-02-23T13:18:00']\"",
]


def _decisions(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("logins", [
    '["0001-01-01T00:00:00"]', "[-62135596800]", '["9999-12-31T23:59:59"]', "[1e300]",
    '["0001-01-01T00:00:00+14:00", "2025-01-01T00:00:00"]',
])
def test_login_times_the_core_cannot_use_are_rejected(logins: str) -> None:
    s = load_settings(env={})
    with pytest.raises(RejectError) as err:
        parse_record({"customer_id": "p1", "name": "Ann Lee", "login_times": logins}, s.profile, s.limits)
    assert err.value.reason == "bad_timestamps"


def test_poison_timestamps_become_rejects_and_the_file_is_decided(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, GOOD[0], 'p1,Ann Lee,Oslo,Chrome,Windows,"[""0001-01-01T00:00:00""]"',
                              "p2,Bo Li,Oslo,Chrome,Windows,[-62135596800]", *GOOD[1:]]) + "\n")
    summary, _ = run_batch(src, tmp_path / "out.jsonl", load_settings(env={}), progress=False)
    assert summary.records == 3 and summary.reject_reasons == {"bad_timestamps": 2}
    assert [d["record_id"] for d in _decisions(tmp_path / "out.jsonl")] == ["g1", "g2", "g3"]


def test_non_utf8_id_is_one_reject_not_a_failed_file(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("\n".join([HEADER, GOOD[0], "b\xff1,Ann Lee,Oslo,Chrome,Windows,[]", *GOOD[1:]]).encode("latin-1")
                    + b"\n")
    summary, _ = run_batch(src, tmp_path / "out.jsonl", load_settings(env={}), progress=False)
    assert summary.records == 3 and summary.reject_reasons == {"bad_encoding": 1}
    reject = json.loads((tmp_path / "out.jsonl.rejects.jsonl").read_text())
    assert reject["line"] == 3 and reject["record_id"] is None


def test_unterminated_quote_rejects_its_row_only(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, GOOD[0], 'q1,"Ann Lee,Oslo,Chrome,Windows,[]', *GOOD[1:],
                              'm1,"Multi\nLine",Oslo,Chrome,Windows,[]']) + "\n")
    rows = list(read_rows(src))
    assert [(line, getattr(r, "reason", None) or r["customer_id"]) for line, r in rows] == [
        (2, "g1"), (3, "malformed_csv"), (4, "g2"), (5, "g3"), (6, "m1")]
    assert rows[-1][1]["name"] == "Multi\nLine"  # a legitimate multi-line field still parses


def test_truncated_quote_does_not_swallow_the_next_quoted_row(tmp_path: Path) -> None:
    # The open quote of line 3 closes at the next row's own quotes: the swallowed text has the right
    # number of columns, yet line 4 is a whole row by itself and must come out as one (found by fuzzing).
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, GOOD[0], 't1,Ann Lee,Oslo,,Windows,"[""2024-08-18T23:28:42"", ""2024-08',
                              'g2,Kyle Robrts,Joseshire,Firefox,macOS,"[""2025-02-01T21:30:00""]"', GOOD[2],
                              't2,Bo,Oslo,,Windows,"', 'x1,Bo,Oslo,,,,Windows,"[""2025-02-01T21:30:00""]"'])
                    + "\n")
    rows = list(read_rows(src))
    assert [(line, getattr(r, "reason", None) or r["customer_id"]) for line, r in rows] == [
        (2, "g1"), (3, "malformed_csv"), (4, "g2"), (5, "g3"), (6, "malformed_csv"), (7, "wrong_column_count")]


def test_row_of_empty_fields_is_a_reject_not_silently_skipped(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, GOOD[0], ",,,,,", "", *GOOD[1:]]) + "\n")
    summary, _ = run_batch(src, tmp_path / "out.jsonl", load_settings(env={}), progress=False)
    assert summary.records == 3 and summary.reject_reasons == {"missing_id": 1}


def test_out_equal_to_input_is_refused_and_input_untouched(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, *GOOD]) + "\n")
    before = src.read_bytes()
    (tmp_path / "link.csv").symlink_to(src)
    os.link(src, tmp_path / "hard.csv")
    for out in (src, tmp_path / "link.csv", tmp_path / "hard.csv", tmp_path / "sub" / ".." / "in.csv"):
        assert main(["batch", str(src), "--out", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert "is the input file" in err and "Traceback" not in err
        assert src.read_bytes() == before
    assert main(["batch", str(src), "--out", str(tmp_path / "o.jsonl"), "--rejects", str(src), "-q"]) == 2
    assert src.read_bytes() == before
    out = tmp_path / "o.jsonl"
    assert main(["batch", str(src), "--out", str(out), "--rejects", str(out), "-q"]) == 2
    assert "same file as --out" in capsys.readouterr().err and not out.exists()


def test_mistyped_input_leaves_an_existing_output_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    assert main(["batch", str(tmp_path / "typo.csv"), "--out", str(out), "-q"]) == 2
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no rejects file, no temp files


def test_failed_run_keeps_the_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, *GOOD]) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n")

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("core failed")

    monkeypatch.setattr("consumer.engine.pipeline.Pipeline.process_stream", boom)
    with pytest.raises(RuntimeError):
        run_batch(src, out, load_settings(env={}), progress=False)
    assert out.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]


def test_unwritable_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, *GOOD]) + "\n")
    (tmp_path / "dir.jsonl").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (tmp_path / "dir.jsonl", blocker / "out.jsonl"):
        assert main(["batch", str(src), "--out", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_out_dash_keeps_stdout_to_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, *GOOD]) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["batch", str(src), "--out", "-", "-q"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [d["record_id"] for d in lines] == ["g1", "g2", "g3"]
    assert json.loads(captured.err.strip().splitlines()[-1])["records"] == 3


def test_input_error_is_raised_before_outputs_open(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        run_batch(tmp_path / "nope.csv", tmp_path / "out.jsonl", load_settings(env={}), progress=False)
    assert not list(tmp_path.iterdir())
