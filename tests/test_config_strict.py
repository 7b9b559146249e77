"""Issue 10 item 7: strict config types, checked ranges, unknown DEDUP_* names refused, one-line errors.

Before: `[index] m = 0` segfaulted hnswlib, negative values gave tracebacks deep in the core, a list given
for a string setting was silently stringified, and a typo in a DEDUP_* section name was ignored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumer.config import ConfigError, load_settings


@pytest.mark.parametrize(("text", "message"), [
    ("[index]\nm = 0\n", r"index.m = 0 is out of range"),
    ("[index]\nm = -3\n", "index.m"),
    ("[index]\nef_construction = -1\n", "index.ef_construction"),
    ("[index]\nseed = -1\n", "index.seed"),
    ("[index]\ninitial_capacity = 0\n", "index.initial_capacity"),
    ("batch_size = -5\n", "batch_size"),
    ("[limits]\nmax_field_chars = -1\n", "limits.max_field_chars"),
    ("[clustering]\nkeeper_alpha = 2.0\n", "clustering.keeper_alpha"),
    ("[service]\nhttp_port = 70000\n", "service.http_port"),
    ("[profile]\nid_field = [\"a\", \"b\"]\n", "a list is not a valid str"),
    ("[service]\nevents_topic = { a = 1 }\n", "a table is not a valid str"),
    ("[profile]\nname_fields = \"name\"\n", "expected a list"),
    ("[index]\nk = true\n", "a boolean is not a valid int"),
    ("[index]\nk = 3.5\n", "not a valid int"),
    ("[fusion]\nweight_text = \"0.4\"\n", "a string is not a valid float"),
    ("[fusion]\nweight_text = nan\n", "weight_text"),
])
def test_bad_values_are_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env={})


@pytest.mark.parametrize(("env", "message"), [
    ({"DEDUP_FUSON__MODE": "rule"}, "unknown environment variable DEDUP_FUSON__MODE"),
    ({"DEDUP_BATCHSIZE": "3"}, "unknown environment variable DEDUP_BATCHSIZE"),
    ({"DEDUP_INDEX__MM": "3"}, "unknown setting"),
    ({"DEDUP_INDEX__M": "0"}, "index.m = 0"),
    ({"DEDUP_INDEX__EF": "-1"}, "index"),
    ({"DEDUP_FUSION__WEIGHT_TEXT": "inf"}, "not a valid float"),
])
def test_bad_environment_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_other_readers_dedup_variables_are_left_alone() -> None:
    s = load_settings(env={"DEDUP_KAFKA_SECURITY_PROTOCOL": "SSL", "DEDUP_MODEL_DIR": "/m",
                           "DEDUP_BENCH_LOG_LEVEL": "INFO", "DEDUP_INDEX__M": "16", "DEDUP_INDEX__QUERY_THREADS": ""})
    assert s.index.m == 16 and s.index.query_threads is None


def test_toml_numbers_and_none_stay_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text("[fusion]\nweight_text = 1\n[index]\nk = 40\nef = 80\n")
    s = load_settings(cfg, env={})
    assert s.fusion.weight_text == 1.0 and isinstance(s.fusion.weight_text, float) and s.index.k == 40


def test_cli_config_error_is_one_line_and_no_crash(tmp_path: Path) -> None:
    cfg = tmp_path / "m0.toml"
    cfg.write_text("[index]\nm = 0\n")
    data = tmp_path / "in.csv"
    data.write_text("customer_id,name,city,browser,os,login_times\n1,Ann Lee,Oslo,Chrome,Windows,[]\n")
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", "batch", str(data), "--out",
                           str(tmp_path / "o.jsonl"), "--config", str(cfg), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: index.m = 0 is out of range: must be between 2 and 256"]
