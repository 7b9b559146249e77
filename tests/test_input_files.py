"""Input files as users save them. A CSV is read with the separator its header uses (";" from a European
Excel, a tab from a `.tsv`, "|"); a byte-order mark before the header (Excel's "CSV UTF-8") is not part of
the first column's name (before, such files were one column each, and every run ended in "no id column"); a
file in another encoding is read with `--encoding`; a compressed file is read through gzip, bz2 or xz; a
spreadsheet workbook is a one-line error that says to save it as CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.io.batch import run_batch
from consumer.io.columns import input_columns
from consumer.io.csv_separator import separator_of
from consumer.io.files import read_rows

ROWS = [["id", "given_name", "surname", "date_of_birth", "suburb"],
        ["r1", "Anna", "Müller", "1970-01-02", "St. Kilda; East"],
        ["r2", "Ana", "Mueller", "1970-01-02", "St Kilda, East"],
        ["r3", "Bo", "Li", "1981-05-06", "Carlton\tNorth"],
        ["r4", "Bo", "Lee", "1981-05-06", 'Carlton "North"'],
        ["r5", "Chris", "Evans", "1990-07-08", ""]]


@pytest.mark.parametrize(("header", "sep"), [
    ("id,title,price", ","), ("id;title;price", ";"), ("id\ttitle\tprice", "\t"), ("id|title|price", "|"),
    ("title", ","), ('"id;x",title', ","), ('id;"a,b";price', ";"), ("", ","),
])
def test_the_header_decides_the_separator(header: str, sep: str) -> None:
    assert separator_of(header + "\n") == sep


def _write(path: Path, sep: str, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        csv.writer(fh, delimiter=sep).writerows(ROWS)
    return path


def _decisions(path: Path) -> list[tuple[str, str]]:
    return [(d["record_id"], d["cluster_id"]) for d in map(json.loads, path.read_text().splitlines())]


@pytest.mark.parametrize(("name", "sep", "bom"), [("semi.csv", ";", False), ("tabs.tsv", "\t", False),
                                                  ("pipes.txt", "|", False), ("excel.csv", ",", True),
                                                  ("excel-eu.csv", ";", True)])
def test_a_file_with_another_separator_or_a_bom_is_read_as_the_comma_file(name: str, sep: str, bom: bool,
                                                                          tmp_path: Path) -> None:
    comma = _write(tmp_path / "comma.csv", ",")
    other = _write(tmp_path / name, sep, bom)
    rows = [r for _, r in read_rows(other)]
    assert rows == [r for _, r in read_rows(comma)] and rows[0]["surname"] == "Müller"
    assert rows[2]["suburb"] == "Carlton\tNorth" and rows[3]["suburb"] == 'Carlton "North"'  # text, not separators
    assert input_columns(other, "csv") == input_columns(comma, "csv")
    settings = load_settings(env={}, profile="person")
    out_comma, out_other = tmp_path / "comma.jsonl", tmp_path / "other.jsonl"
    run_batch(comma, out_comma, settings, progress=False)
    summary, _ = run_batch(other, out_other, settings, progress=False)
    assert summary.records == 5 and summary.rejected == 0
    assert _decisions(out_other) == _decisions(out_comma)


def test_a_file_in_another_encoding_is_read_whole_when_named(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A file saved as Windows-1252: without `--encoding` its rows with "ü" are `bad_encoding` rejects and
    the run says how to read them; with `--encoding cp1252` (or `DEDUP_PROFILE__ENCODING`) it gives the
    decisions of the same file in UTF-8. The encoding decides nothing else: the settings' fingerprint stays."""
    from consumer.cli import main

    utf8 = _write(tmp_path / "utf8.csv", ",")
    cp = tmp_path / "cp.csv"
    cp.write_bytes(utf8.read_text(encoding="utf-8").encode("cp1252"))
    args = ["--profile", "person", "-q"]
    assert main(["batch", str(utf8), "--out", str(tmp_path / "u.jsonl"), *args]) == 0
    capsys.readouterr()
    assert main(["batch", str(cp), "--out", str(tmp_path / "bad.jsonl"), *args]) == 0
    err = capsys.readouterr().err
    assert "1 rows are not valid utf-8" in err and "--encoding" in err
    assert main(["batch", str(cp), "--encoding", "cp1252", "--out", str(tmp_path / "cp.jsonl"), *args]) == 0
    assert _decisions(tmp_path / "cp.jsonl") == _decisions(tmp_path / "u.jsonl")
    assert "not valid" not in capsys.readouterr().err
    assert main(["batch", str(cp), "--encoding", "no-such-codec", "--out", str(tmp_path / "x.jsonl"), *args]) == 2
    assert "not a known encoding" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert (load_settings(env={"DEDUP_PROFILE__ENCODING": "cp1252"}).fingerprint()
            == load_settings(env={}).fingerprint())


@pytest.mark.parametrize("packer", ["gzip", "bz2", "lzma"])
def test_a_compressed_file_is_read_as_the_file(packer: str, tmp_path: Path) -> None:
    import importlib

    comma = _write(tmp_path / "comma.csv", ",")
    packed = tmp_path / {"gzip": "p.csv.gz", "bz2": "p.csv.bz2", "lzma": "p.csv.xz"}[packer]
    packed.write_bytes(importlib.import_module(packer).compress(comma.read_bytes()))
    assert [r for _, r in read_rows(packed)] == [r for _, r in read_rows(comma)]
    settings = load_settings(env={}, profile="person")
    run_batch(comma, tmp_path / "c.jsonl", settings, progress=False)
    run_batch(packed, tmp_path / "p.jsonl", settings, progress=False)
    assert _decisions(tmp_path / "p.jsonl") == _decisions(tmp_path / "c.jsonl")


@pytest.mark.parametrize(("name", "fmt"), [("book.xlsx", []), ("book.xlsx", ["--format", "csv"]),
                                           ("export.csv", [])])
def test_a_spreadsheet_workbook_is_one_line_saying_to_save_it_as_csv(name: str, fmt: list[str], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """By its name, or by its first bytes (a workbook renamed .csv, or passed with --format csv): before, the
    ZIP's bytes were read as a header."""
    import zipfile

    from consumer.cli import main

    with zipfile.ZipFile(tmp_path / name, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    rc = main(["batch", str(tmp_path / name), *fmt, "--profile", "person", "--out", str(tmp_path / "o.jsonl"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "spreadsheet workbook" in err[0] and "save it as CSV" in err[0], err
    assert not (tmp_path / "o.jsonl").exists()
