"""Settings: defaults, TOML file, DEDUP_* environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import ConfigError, load_settings


def test_defaults_are_the_crm_profile_and_paper_rule() -> None:
    s = load_settings(env={})
    assert s.profile.id_field == "customer_id"
    assert (s.fusion.weight_text, s.fusion.weight_behaviour, s.fusion.weight_device) == (0.4, 0.35, 0.25)
    assert s.fusion.match_threshold == 0.75


def test_toml_file_then_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "dedup.toml"
    cfg.write_text(
        '[profile]\nname = "person"\nname_fields = ["given", "family"]\n'
        '[fusion]\nmode = "rule"\nmatch_threshold = 0.8\n[index]\nk = 30\n'
    )
    s = load_settings(cfg, env={"DEDUP_INDEX__K": "40", "DEDUP_BATCH_SIZE": "64"})
    assert s.profile.name_fields == ["given", "family"]
    assert s.profile.roles["postcode"] == "postcode"  # inherited from the built-in "person" profile
    assert s.fusion.mode == "rule" and s.fusion.match_threshold == 0.8
    assert s.index.k == 40 and s.batch_size == 64


def test_env_lists_are_comma_separated() -> None:
    s = load_settings(env={"DEDUP_SERVICE__INPUT_TOPICS": "signups, listings"})
    assert s.service.input_topics == ["signups", "listings"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fusion]\nmode = 'magic'\n", "not one of"),
        ("[index]\nk = 'many'\n", "not a valid int"),
        ("[nope]\nx = 1\n", "unknown setting"),
        ("[fusion]\nmatch_threshold = 0.5\npossible_threshold = 0.9\n", "possible_threshold"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env={})


def test_fingerprint_changes_with_decision_settings() -> None:
    a = load_settings(env={})
    b = load_settings(env={"DEDUP_FUSION__MATCH_THRESHOLD": "0.8"})
    c = load_settings(env={"DEDUP_SERVICE__GROUP": "other"})  # not a decision setting
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == c.fingerprint()
