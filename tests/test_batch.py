"""The embedded runner on bad input: clear errors for bad files, reasoned rejects for bad rows, no loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config import load_settings
from consumer.io.batch import run_batch
from consumer.io.files import InputError

GOOD = [
    ("g1", "Kyle Roberts", "Joseshire", "Firefox", "macOS", '["2025-01-28T22:00:00", "2025-05-08T21:51:00"]'),
    ("g2", "Kyle Robrts", "Joseshire", "Firefox", "macOS", '["2025-02-01T21:30:00", "2025-03-08T22:10:00"]'),
    ("g3", "Mark Anderson", "New Emily", "Firefox", "iOS", "['2025-02-23T13:18:00']"),
    ("g4", "Katie Ward", "", "", "", ""),
]


def write_csv(path: Path, extra_lines: list[str]) -> None:
    lines = ["customer_id,name,city,browser,os,login_times"]
    for g in GOOD:
        lines.append(",".join(f'"{v}"' if "," in v or '"' in v else v for v in (g[0], *g[1:5]))
                     + "," + '"' + g[5].replace('"', '""') + '"')
    lines += extra_lines
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_bad_rows_go_to_rejects_and_good_rows_all_come_out(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, [
        ',No Id,Somewhere,Chrome,Windows,"[]"',                      # missing id
        'b2,Bad Stamps,Here,Chrome,Windows,"[""yesterday""]"',       # unparsable timestamps
        'b3,Too,Many,Columns,Here,"[]",extra',                       # wrong column count
        'b4,' + "x" * 5000 + ',City,Chrome,Windows,"[]"',             # huge field
        "b5,,,,,",                                                    # nothing usable
    ])
    with (tmp_path / "in.csv").open("ab") as fh:
        fh.write(b'b6,Bad \xff\xfe Bytes,City,Chrome,Windows,"[]"\n')  # invalid UTF-8
    out, rej = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    summary, _ = run_batch(src, out, load_settings(env={}), rejects_path=rej, progress=False)
    decided = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [json.loads(line) for line in rej.read_text().splitlines()]
    assert [d["record_id"] for d in decided] == ["g1", "g2", "g3", "g4"]
    assert {r["reason"] for r in rejected} == {"missing_id", "bad_timestamps", "wrong_column_count",
                                              "oversized_field", "no_usable_fields", "bad_encoding"}
    assert all(r["line"] for r in rejected)
    assert summary.records == 4 and summary.rejected == 6
    assert decided[1]["cluster_id"] == decided[0]["cluster_id"]  # the typo'd twin joined
    for d in decided:
        assert {"record_id", "cluster_id", "canonical_id", "decision", "matches"} <= set(d)


def test_jsonl_input_with_malformed_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([
        json.dumps({"customer_id": "a", "name": "Ann Lee", "city": "Boston", "login_times": []}),
        "{not json",
        "[1, 2]",
        json.dumps({"customer_id": "b", "name": {"first": "x"}}),
        json.dumps({"customer_id": "c", "name": "Anne Lee", "city": "Boston"}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    summary, _ = run_batch(src, out, load_settings(env={}), progress=False)
    assert [json.loads(x)["record_id"] for x in out.read_text().splitlines()] == ["a", "c"]
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert reasons == ["malformed_json", "not_an_object", "wrong_type"]


@pytest.mark.parametrize(("content", "message"), [(b"", "empty"), (b"customer_id,name\n", "no data rows"),
                                                  (b"\n\n", "header")])
def test_whole_file_problems_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    with pytest.raises(InputError, match=message):
        run_batch(src, tmp_path / "o.jsonl", load_settings(env={}), progress=False)


def test_cli_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: input file not found") and "Traceback" not in err


def test_cli_batch_on_crm_schema_needs_no_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, [])
    assert main(["batch", str(src), "--out", str(tmp_path / "o.jsonl"), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 4 and summary["rejected"] == 0


def test_person_profile_with_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "people.toml"
    cfg.write_text('[profile]\nname = "person"\nid_field = "pid"\n')
    src = tmp_path / "people.csv"
    src.write_text("pid,given_name,surname,suburb,postcode\n1,Robert,Smith,Carlton,3053\n"
                   "2,Bob,Smith,Carlton,3053\n3,Alice,Nguyen,Richmond,3121\n")
    out = tmp_path / "o.jsonl"
    run_batch(src, out, load_settings(cfg, env={}), progress=False)
    d = {x["record_id"]: x["cluster_id"] for x in map(json.loads, out.read_text().splitlines())}
    assert d["1"] == d["2"] != d["3"]


def test_batch_writes_the_final_cluster_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--clusters`: one row per decided record with its final cluster and keeper (merges applied)."""
    import csv

    src = tmp_path / "in.csv"
    write_csv(src, [])
    out, table = tmp_path / "out.jsonl", tmp_path / "clusters.csv"
    assert main(["batch", str(src), "--out", str(out), "--clusters", str(table), "-q"]) == 0
    rows = list(csv.DictReader(table.open(encoding="utf-8", newline="")))
    assert [r["record_id"] for r in rows] == ["g1", "g2", "g3", "g4"]
    assert set(rows[0]) == {"record_id", "cluster_id", "canonical_id"}
    by_id = {r["record_id"]: r for r in rows}
    assert by_id["g1"]["cluster_id"] == by_id["g2"]["cluster_id"] != by_id["g3"]["cluster_id"]
    assert by_id["g1"]["canonical_id"] == by_id["g2"]["canonical_id"] in {"g1", "g2"}
    decided = {json.loads(line)["record_id"] for line in out.read_text().splitlines()}
    assert decided == set(by_id)
    capsys.readouterr()
    assert main(["batch", str(src), "--out", str(out), "--clusters", str(out), "-q"]) == 2
    assert "--clusters" in capsys.readouterr().err


@pytest.mark.parametrize("profile", ["person", "listing"])
def test_a_file_fitted_whole_is_read_once_with_the_same_rejects(profile: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the fit reads whole is parsed once: the run takes the fit's rows (`ParsedFile`), rejects and
    warnings included, in file order, and decides exactly what a run reading the file again decides."""
    import consumer.io.batch as batch

    if profile == "person":
        header = "id,given_name,surname,date_of_birth"
        good = [f"p{i},{n},{s},19{50 + i % 40}0{1 + i % 9}1{i % 10}"
                for i, (n, s) in enumerate((n, s) for n in ("anna", "bernd", "carla", "dieter", "eva", "frank")
                                           for s in ("meier", "schulz", "becker", "koch", "wolf"))]
        good += [f"q{i},{line.split(',')[1][:-1]}x,{line.split(',', 2)[2]}" for i, line in enumerate(good[:8])]
        bad = [",no,id,19700101", "p9x,a,b,c,d,e"]
    else:
        header = "listing_id,title,brand,price"
        good = [f"l{i},Acme Widget {i % 12} Pro {c},Acme,{10 + i % 12}.99" for i, c in
                enumerate(["red", "blue", "green", "black"] * 8)]
        bad = [",no id,Acme,1.00", "l99,too,many,columns,here"]
    lines = [header, *good[:10], bad[0], *good[10:20], bad[1], *good[20:]]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(profile=profile, env={})
    reads = []
    real = batch.read_rows

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "read_rows", counted)
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    summary, pipe = run_batch(src, out, settings, rejects_path=rej, progress=False)
    pipe.close()
    assert len(reads) == 1 and summary.model  # one read of the file, by the fit
    expected = [(pos, item) for pos, item in batch.iter_records(src, settings)]
    want_rejects = [{"line": pos, "record_id": r.record_id, "reason": r.reason, "detail": r.detail}
                    for pos, r in expected if isinstance(r, batch.Rejected)]
    assert [json.loads(x) for x in rej.read_text().splitlines()] == want_rejects and len(want_rejects) == 2
    decided = [json.loads(x)["record_id"] for x in out.read_text().splitlines()]
    assert decided == [r.record_id for _, r in expected if not isinstance(r, batch.Rejected)]
    assert summary.rejected == 2 and summary.records == len(good)


def test_batch_keeps_one_copy_of_the_index_only_vectors_and_decides_the_same(tmp_path: Path) -> None:
    """`dedup batch` never assembles an index vector from stored rows, so its store drops the columns only the
    index reads (the HNSW graph holds them, weighted, in the composite vector): 320 of a CRM record's 1,112
    bytes. The keeper's centroid column stays, and every decision is the one a store holding them makes."""
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline

    write_crm(tmp_path / "crm.csv", tmp_path / "truth.csv", 600, 7)
    s = load_settings(env={})
    _, pipe = run_batch(tmp_path / "crm.csv", tmp_path / "a.jsonl", s, progress=False)
    held = build_pipeline(s, text_encoder=pipe.text, encode_in_background=True)  # as `dedup run` builds it
    _, held = run_batch(tmp_path / "crm.csv", tmp_path / "b.jsonl", s, progress=False, pipeline=held)
    index_only = held.comparator.unused_columns
    assert index_only and index_only <= set(held.store.column_names())
    assert not index_only & set(pipe.store.column_names())
    assert pipe.blocker.spec[0].column in pipe.store.column_names()  # the keeper's centroid
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert list(pipe.final_clusters()) == list(held.final_clusters())
    pipe.close()
    held.close()


def test_outputs_to_a_device_or_fifo_are_written_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out /dev/null` (or a FIFO, /dev/stdout) is written where it is: the temporary-file-then-rename that
    keeps a regular output whole must never replace a device with a file. Rejects then go to the working
    folder, as for `--out -`. A FIFO stands in for /dev/null here (a test must not risk the real one)."""
    import os
    import stat
    import threading

    src = tmp_path / "in.csv"
    write_csv(src, [',No Id,Somewhere,Chrome,Windows,"[]"'])
    fifo, table = tmp_path / "decisions.fifo", tmp_path / "clusters.fifo"
    os.mkfifo(fifo)
    os.mkfifo(table)
    got: dict[Path, bytes] = {}

    def drain(path: Path) -> None:
        with path.open("rb") as fh:
            got[path] = fh.read()

    readers = [threading.Thread(target=drain, args=(p,), daemon=True) for p in (fifo, table)]
    for r in readers:
        r.start()
    monkeypatch.chdir(tmp_path)
    summary, _ = run_batch(src, fifo, load_settings(env={}), progress=False, clusters_path=table)
    for r in readers:
        r.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISFIFO(os.stat(table).st_mode)  # still FIFOs
    assert [json.loads(line)["record_id"] for line in got[fifo].splitlines()] == ["g1", "g2", "g3", "g4"]
    assert got[table].decode().splitlines()[0].startswith("record_id")
    assert summary.rejected == 1 and json.loads((tmp_path / "rejects.jsonl").read_text())["reason"] == "missing_id"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left beside them
