"""The static (distilled) text encoder: artifact integrity, sanity of its geometry, the backend choice,
and that the batch runner works end to end with either backend."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from consumer.cli import main
from consumer.config import ConfigError, load_settings
from consumer.encoders.static_text import (
    StaticTextEncoder,
    default_static_dir,
    make_text_encoder,
    resolve_backend,
    sha256_file,
)


@pytest.fixture(scope="module")
def enc() -> StaticTextEncoder:
    return StaticTextEncoder(verify=True)


def test_manifest_matches_the_committed_artifact() -> None:
    d = default_static_dir()
    manifest = json.loads((d / "manifest.json").read_text())
    (entry,) = [a for a in manifest["artifacts"] if a["kind"] == "static-text" and a["dim"] == 64]
    for path, meta in ((d / entry["file"], entry), (d / entry["tokenizer"]["file"], entry["tokenizer"])):
        assert path.stat().st_size == meta["bytes"]
        assert sha256_file(path) == meta["sha256"]
    assert entry["bytes"] + entry["tokenizer"]["bytes"] < 16_000_000
    assert "export/export_static_encoder.py" in entry["export_command"]


def test_shapes_norms_and_determinism(enc: StaticTextEncoder) -> None:
    texts = ["jonathan", "smith", "berlin", "Anna-Lena Müller, München", "zzqx"]
    a = enc.encode(texts)
    assert a.shape == (5, 64) and a.dtype == np.float32 and enc.dim == 64
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, enc.encode(texts))
    # batch independence: a row depends only on its own string
    np.testing.assert_array_equal(a[2:3], enc.encode(["berlin"]))
    np.testing.assert_array_equal(enc.encode(texts[::-1])[::-1], a)
    assert enc.encode([]).shape == (0, 64)


def test_empty_string_is_the_zero_vector(enc: StaticTextEncoder) -> None:
    out = enc.encode(["", "anna"])
    assert not out[0].any() and abs(float(np.linalg.norm(out[1])) - 1.0) < 1e-5


def test_bad_input_is_a_clear_error(enc: StaticTextEncoder) -> None:
    with pytest.raises(TypeError):
        enc.encode("anna")
    with pytest.raises(TypeError):
        enc.encode(["anna", 3])  # type: ignore[list-item]


def test_similar_strings_are_closer_than_different_ones(enc: StaticTextEncoder) -> None:
    def cos(x: str, y: str) -> float:
        a, b = enc.encode([x, y])
        return float(a @ b)

    assert cos("jonathan", "jonathon") > cos("jonathan", "hamburg")
    assert cos("katherine", "catherine") > cos("katherine", "frankfurt")
    assert cos("john smith, boston", "jon smith, boston") > cos("john smith, boston", "maria garcia, madrid")


def test_missing_artifact_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export_static_encoder.py"):
        StaticTextEncoder(tmp_path)


def test_backend_resolution() -> None:
    assert resolve_backend("auto") == "static"  # on every host: vectors must not depend on the hardware
    assert resolve_backend("static") == "static"
    assert resolve_backend("transformer") == "transformer"
    with pytest.raises(ValueError):
        resolve_backend("bert")


def test_factory_builds_the_requested_backend() -> None:
    from consumer.encoders.text import TextEncoder

    base = {"text_dim": 64, "device": "cpu", "model_dir": None, "static_model_dir": None}
    assert isinstance(make_text_encoder(SimpleNamespace(**base, text_backend="static")), StaticTextEncoder)
    assert isinstance(make_text_encoder(SimpleNamespace(**base, text_backend="transformer")), TextEncoder)


def test_text_backend_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).encoders.text_backend == "auto"
    s = load_settings(env={"DEDUP_ENCODERS__TEXT_BACKEND": "static"})
    assert s.encoders.text_backend == "static"
    with pytest.raises(ConfigError):
        load_settings(env={"DEDUP_ENCODERS__TEXT_BACKEND": "bert"})


@pytest.mark.parametrize("backend", ["transformer", "static", "auto"])
def test_batch_runs_with_each_backend(tmp_path: Path, backend: str) -> None:
    src = tmp_path / "in.csv"
    assert main(["generate", str(src), "-n", "300", "--seed", "5"]) == 0
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(src), "--out", str(out), "--text-backend", backend]) == 0
    decided = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(decided) == 300
    assert len({d["cluster_id"] for d in decided}) < 300  # generated files hold duplicates: some merged
