"""Hardening against hostile files and weak secrets (issue 10, items 3 and 4).

Why: a model file is a pickle (loading one runs code), and the default hash key is public, so neither may
be accepted silently; and nothing public (events) or stored (Redis) may give the key or a name away.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config import DEFAULT_HASH_KEY, ConfigError, load_settings
from consumer.encoders.names import NameEncoder
from consumer.engine.fusion import LearnedModel, ModelError, manifest_path
from consumer.engine.records import Record

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this creates a file: what an attacker's model would do (with a shell command)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))  # unpickling calls open(target, "w"): creates the file


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "created-by-pickle"
    model = tmp_path / "evil.pkl"
    model.write_bytes(pickle.dumps(_Payload(target)))
    return model, target


def test_crafted_pickle_without_manifest_is_refused_before_unpickling(tmp_path: Path) -> None:
    model, target = _crafted(tmp_path)
    with pytest.raises(ModelError, match="no manifest"):
        LearnedModel.load(model)
    assert not target.exists()


def test_crafted_pickle_with_a_wrong_manifest_is_refused(tmp_path: Path) -> None:
    model, target = _crafted(tmp_path)
    manifest_path(model).write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ModelError, match="does not match its manifest"):
        LearnedModel.load(model)
    assert not target.exists()


def test_cli_refuses_crafted_model_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, target = _crafted(tmp_path)
    (tmp_path / "in.csv").write_text("customer_id,name\n1,Ann Lee\n")
    rc = main(["batch", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.jsonl"), "--model", str(model)])
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to load" in err and "Traceback" not in err
    assert not target.exists()


def test_saved_model_round_trips_through_its_manifest(tmp_path: Path) -> None:
    shipped = LearnedModel.load()  # the packaged model passes its shipped manifest
    path = tmp_path / "m.pkl"
    digest = shipped.save(path)
    assert json.loads(manifest_path(path).read_text())["sha256"] == digest
    assert LearnedModel.load(path).meta["sha256"] == digest
    path.write_bytes(path.read_bytes() + b"\x00")  # tampered after training
    with pytest.raises(ModelError, match="does not match"):
        LearnedModel.load(path)


def test_service_refuses_the_default_hash_key_unless_told() -> None:
    from consumer.service.runner import Service

    s = load_settings(env={})
    assert s.encoders.hash_key == DEFAULT_HASH_KEY
    with pytest.raises(ConfigError, match="insecure-default-key"):
        Service(s)
    env = load_settings(env={"DEDUP_SERVICE__INSECURE_DEFAULT_KEY": "true"})
    assert env.service.insecure_default_key is True


def test_dedup_run_on_the_default_key_exits_2_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", "run", "--kafka", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "hash_key is the public default" in proc.stderr and "Traceback" not in proc.stderr


def test_config_version_does_not_depend_on_the_hash_key() -> None:
    a = load_settings(env={})
    b = load_settings(env={"DEDUP_ENCODERS__HASH_KEY": "a-secret"})
    assert a.fingerprint() == b.fingerprint()


def test_stored_name_signatures_keep_no_initial_or_length_in_clear() -> None:
    recs = [Record("1", "Alexandra Mbeki", "", (), "", "", ())]
    a = NameEncoder("key-one").encode(recs)
    b = NameEncoder("key-two").encode(recs)
    init_a, init_b = a["tok_init"][0, :2], b["tok_init"][0, :2]
    assert not set(init_a.tolist()) & {ord("a"), ord("m")}  # no letter code
    assert (init_a != init_b).all()  # keyed: another key, other values
    assert a["tok_len"][0, :2].tolist() == [3, 3]  # only the class (1, 2, >= 3), not 9 and 5
    # Equal initials still match under one key: "A." against "Alexandra".
    c = NameEncoder("key-one").encode([Record("2", "A. Mbeki", "", (), "", "", ())])
    assert c["tok_init"][0, 0] == init_a[0] and c["tok_len"][0, 0] == 1


def test_dedup_batch_warns_once_on_the_default_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.csv").write_text("customer_id,name,city\n1,Ann Lee,Lisbon\n2,Anne Lee,Lisbon\n")
    assert main(["batch", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.jsonl"), "--fusion", "rule"]) == 0
    assert capsys.readouterr().err.count("hash_key is the public default") == 1
