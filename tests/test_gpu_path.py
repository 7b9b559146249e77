"""The GPU inference path, tested on CPU (CI has no GPU): CPU fallback with one structured log line,
artifact choice by device, and bucketed I/O binding giving the same embeddings as plain runs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import consumer.encoders.onnx_runtime as rt
from consumer.encoders.text import TextEncoder, bucket_rows, bucket_width, default_model_dir

TEXTS = ["Anna Schmidt, Berlin", "", "J. Smith, London", "Jean-Baptiste Marie-Thérèse, Saint-Rémy-de-Provence",
         "x" * 80, "Ö", "maria garcia, madrid"] * 5


def _cpu_entry() -> dict:
    manifest = json.loads((default_model_dir() / "manifest.json").read_text(encoding="utf-8"))
    return next(a for a in manifest["artifacts"] if a.get("kind", "text") == "text" and "device" not in a)


@pytest.fixture
def cuda_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This onnxruntime claims a CUDA provider it cannot start: the situation of a GPU image on a node
    without a usable driver. The session itself is real; onnxruntime drops the provider and runs on CPU."""
    real = ort.get_available_providers()
    monkeypatch.setattr(rt.ort, "get_available_providers", lambda: [rt.CUDA, *real])


def test_buckets() -> None:
    assert [bucket_rows(n, 256) for n in (1, 8, 9, 100, 256)] == [8, 8, 16, 128, 256]
    assert bucket_rows(300, 256) == 300  # never fewer rows than asked for
    assert [bucket_width(w, 32) for w in (2, 8, 9, 31, 32)] == [8, 8, 16, 32, 32]
    assert bucket_width(40, 32) == 40


def test_bucketed_io_binding_matches_plain_run() -> None:
    plain = TextEncoder(dim=64, device="cpu", threads=2, bucketed_io=False)
    bound = TextEncoder(dim=64, device="cpu", threads=2, bucketed_io=True)
    assert not bound.on_gpu and bound.bucketed_io and not plain.bucketed_io
    a, b = plain.encode(TEXTS, batch_size=16), bound.encode(TEXTS, batch_size=16)
    assert b.shape == a.shape and np.isfinite(b).all()
    assert float(np.min(np.sum(a * b, axis=1))) > 0.999
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    shapes = set(bound._buffers)
    assert all(r in (8, 16) and w % 8 == 0 for r, w in shapes)
    bound.encode(TEXTS[:5], batch_size=16)  # same buckets again: no new buffers
    assert len(bound._buffers) <= len(shapes) + 1


def test_auto_falls_back_to_cpu_with_one_log_line(cuda_listed: None, caplog: pytest.LogCaptureFixture) -> None:
    path = default_model_dir() / _cpu_entry()["file"]
    with caplog.at_level(logging.INFO, logger="consumer.encoders.onnx_runtime"), pytest.warns(UserWarning):
        session = rt.make_session(path, device="auto", threads=1)
    assert session.get_providers() == [rt.CPU]
    lines = [r for r in caplog.records if r.name == "consumer.encoders.onnx_runtime"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].device == "cpu" and lines[0].requested == "auto" and "CUDA" in lines[0].reason
    assert lines[0].model == path.name


def test_explicit_cuda_fails_loudly(cuda_listed: None) -> None:
    path = default_model_dir() / _cpu_entry()["file"]
    with pytest.raises(RuntimeError, match="device='cuda'"), pytest.warns(UserWarning):
        rt.make_session(path, device="cuda", threads=1)


def test_encoder_tries_the_cuda_artifact_then_loads_the_cpu_one(
        cuda_listed: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = default_model_dir()
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    cpu = _cpu_entry()
    gpu = {**cpu, "name": "gpu-stand-in", "device": "cuda", "file": "gpu.onnx"}
    shutil.copy(src / cpu["file"], tmp_path / "gpu.onnx")
    manifest["artifacts"].append(gpu)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="consumer.encoders.onnx_runtime"), pytest.warns(UserWarning):
        enc = TextEncoder(model_dir=tmp_path, dim=64, device="auto", threads=1)
    assert enc.entry["file"] == cpu["file"] and not enc.on_gpu and not enc.bucketed_io
    assert enc.providers == [rt.CPU]
    assert len([r for r in caplog.records if r.name == "consumer.encoders.onnx_runtime"]) == 1
    assert enc.encode(["Anna Schmidt, Berlin"]).shape == (1, 64)


def test_missing_cuda_artifact_is_logged(cuda_listed: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consumer.encoders.onnx_runtime"):
        enc = TextEncoder(dim=64, device="auto", threads=1)
    assert not enc.on_gpu
    if enc.entry.get("device") is None and not any(
            a.get("device") == "cuda" for a in json.loads(
                (default_model_dir() / "manifest.json").read_text(encoding="utf-8"))["artifacts"]):
        assert any("export_gpu_fp16" in r.reason for r in caplog.records if r.name == "consumer.encoders.onnx_runtime")


def test_bench_gpu_runs_on_a_cpu_only_machine() -> None:
    """The one-command GPU benchmark runs here too: CPU rows measured, CUDA rows skipped with the reason."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_gpu.py"), "--records", "150",
                          "--batch", "64", "--seconds", "5", "--skip-end-to-end"],
                         capture_output=True, text=True, timeout=300, check=True, cwd=root)
    report = json.loads(out.stdout)
    assert report["devices"]["cpu"]["encoder/transformer"]["per_second"] > 0
    assert report["static_encoder_cpu"]["p99_ms"] is not None
    if rt.CUDA not in ort.get_available_providers():
        assert "skipped" in report["devices"]["cuda"]


@pytest.mark.skipif(rt.CUDA not in ort.get_available_providers(), reason="needs onnxruntime-gpu and a GPU")
def test_cuda_encoder_matches_cpu() -> None:
    """On a GPU machine: the fp16 artifact on the CUDA provider, bucketed I/O binding, same embeddings."""
    gpu = TextEncoder(dim=64, device="cuda")
    assert gpu.on_gpu and gpu.bucketed_io and gpu.entry.get("device") == "cuda"
    cpu = TextEncoder(dim=64, device="cpu", threads=2)
    a, b = cpu.encode(TEXTS), gpu.encode(TEXTS)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.995
