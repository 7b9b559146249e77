"""Issue 10 item 9 (CLI side): bad Kafka properties and Redis errors are one line and a non-zero exit.

Before: an unknown --kafka-property surfaced only after Redis was reached, as a librdkafka traceback,
and `export-clusters` against an unreachable Redis printed a redis-py traceback (and had already truncated
its --out file).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consumer.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--kafka-property", "foo.bar=1"], {}, 'No such configuration property: "foo.bar"'),
    ([], {"DEDUP_KAFKA_SECURITY_PROTOCOL": "FOO"}, 'Invalid value "FOO"'),
    (["--kafka-property", "security.protocol=SSL", "--kafka-property", "ssl.ca.location=/nonexistent/ca.pem"],
     {}, "ssl.ca.location"),
])
def test_bad_kafka_properties_are_one_line_before_connecting(
        argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    port = _closed_port()
    rc = main(["run", "--kafka", f"127.0.0.1:{port}", "--redis", f"redis://127.0.0.1:{port}/0",
               "--http-port", "0", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: Kafka client properties") and message in err


def test_export_clusters_redis_down_is_one_line_and_keeps_old_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clusters.jsonl"
    out.write_text("previous export\n")
    rc = main(["export-clusters", "--redis", f"redis://user:s3cret@127.0.0.1:{_closed_port()}/0",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "cannot export clusters from Redis" in err and "Traceback" not in err
    assert "s3cret" not in err and "user:***@" in err
    assert out.read_text() == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.jsonl"]


def test_export_clusters_to_stdout_keeps_the_summary_off_stdout(
        redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-clusters", "--redis", redis_url, "--redis-prefix", redis_prefix, "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and '"records": 0' in captured.err


@pytest.mark.parametrize(("header", "config", "message"), [
    ("id,given_name,surname\n1,Ann,Lee\n", '[profile]\nname = "person"\nroles = { surname = "family_name" }\n',
     "maps a role to 'family_name', which the file does not have"),
    ("listing_id,title,price\n1,Sony TV,10\n", '[profile]\nname = "person"\n', "no id column 'id'"),
    ("listing_id,foo,bar\n1,a,b\n", '[profile]\nname = "listing"\n', "none of the columns profile 'listing'"),
    ("id,given_name,surname\n1,,\n2,,\n", '[profile]\nname = "person"\n', "are empty in every row read"),
])
def test_a_file_the_profile_cannot_read_is_one_line_before_any_work(
        header: str, config: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, cfg, out = tmp_path / "in.csv", tmp_path / "c.toml", tmp_path / "out.jsonl"
    src.write_text(header)
    cfg.write_text(config)
    rc = main(["batch", str(src), "--config", str(cfg), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [err.splitlines()[-1]]
    assert not out.exists()  # nothing written, nothing encoded


@pytest.mark.parametrize(("header", "args", "hint"), [
    ("id,given_name,surname,date_of_birth\nr0,Ann,Lee,1970-01-02\n", [], "--profile person"),
    ("listing_id,title,brand,price\n1,Sony TV,Sony,10\n", ["--profile", "person"], "--profile listing"),
    ("customer_id,name,city\n1,Ann Lee,Leeds\n", ["--profile", "listing"], "--profile crm-signup"),
    ("id,foo,bar\n1,a,b\n", [], None),
])
def test_a_file_of_another_built_in_profile_is_told_the_flag_that_reads_it(
        header: str, args: list[str], hint: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A person or listing CSV run without `--profile` (read as CRM signups), or with the wrong one: the one-line
    error names the built-in profile whose id and matching columns the file has; a file like none says none."""
    src, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    src.write_text(header)
    rc = main(["batch", str(src), *args, "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith("error: the file has no id column"), err
    assert (hint in err) if hint else ("--profile" not in err), err
    assert not out.exists()
