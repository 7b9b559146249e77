"""CPU vs CUDA on the same machine: records/s and p99 per text encoder and end to end, one command.

    python benchmarks/bench_gpu.py --records 20000            # every device this onnxruntime can use
    python benchmarks/bench_gpu.py --records 5000 --devices cpu

Needs the `gpu` extra (onnxruntime-gpu) for the CUDA rows; without it they are reported as skipped with the
reason, so the command is the same on any machine. Per device it measures

* ``encoder/<name>``: ``encode`` of distinct "name, city" strings (the semantic encoder's cache is bypassed,
  so every string reaches the model) in calls of ``--batch`` strings: strings/s and p50/p99 per call;
* ``end_to_end``: `Pipeline.process` on a generated CRM file in micro-batches of ``batch_size`` with the
  transformer as text backend on that device: records/s and p50/p99 per micro-batch (decide included).

The static encoder is numpy on the CPU whatever the device, so it is measured once. Bounded by
``--seconds`` per measurement (it stops early and reports what it measured). Prints one JSON object with
the date, CPU model, GPU name (nvidia-smi) and onnxruntime version, for the performance tables (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stats(n: int, seconds: float, per_call: list[float]) -> dict[str, Any]:
    ms = np.asarray(per_call) * 1e3
    return {"n": n, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1) if seconds else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None, "calls": len(ms)}


def strings(n: int, seed: int) -> list[str]:
    """Distinct "name, city" strings from generated CRM rows (what the transformer sees, in bulk)."""
    from consumer.generate import generate_crm

    rows, _ = generate_crm(n, seed)
    return list(dict.fromkeys(f"{r['name']}, {r['city']}" for r in rows))[:n]


def bench_encoder(enc: Any, texts: list[str], batch: int, budget: float) -> dict[str, Any]:
    enc.encode(texts[:batch])  # warm-up: session arenas, CUDA kernels and bucket buffers
    per_call: list[float] = []
    done, t0 = 0, time.perf_counter()
    for start in range(0, len(texts), batch):
        t = time.perf_counter()
        enc.encode(texts[start: start + batch])
        per_call.append(time.perf_counter() - t)
        done += len(texts[start: start + batch])
        if time.perf_counter() - t0 > budget:
            break
    return stats(done, time.perf_counter() - t0, per_call)


def bench_end_to_end(device: str, data: Path, budget: float) -> dict[str, Any]:
    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records

    settings = load_settings()
    settings.encoders.device = device  # type: ignore[assignment]
    settings.encoders.text_backend = "transformer"
    records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
    pipe = build_pipeline(settings)
    pipe.text.encode(["warm up"])
    per_call: list[float] = []
    done, t0 = 0, time.perf_counter()
    for start in range(0, len(records), settings.batch_size):
        t = time.perf_counter()
        pipe.process(records[start: start + settings.batch_size])
        per_call.append(time.perf_counter() - t)
        done += len(records[start: start + settings.batch_size])
        if time.perf_counter() - t0 > budget:
            break
    pipe.close()
    out = stats(done, time.perf_counter() - t0, per_call)
    out["on_gpu"] = bool(getattr(pipe.text, "on_gpu", False))
    out["artifact"] = pipe.text.entry.get("file")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--batch", type=int, default=1024, help="strings per encode call (encoder rows)")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--seconds", type=float, default=120.0, help="time bound per measurement")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args()

    import onnxruntime as ort

    from consumer.encoders.onnx_runtime import CUDA
    from consumer.encoders.static_text import StaticTextEncoder
    from consumer.encoders.text import TextEncoder
    from consumer.generate import write_crm

    texts = strings(args.records, args.seed)
    cache = ROOT / ".bench"
    cache.mkdir(exist_ok=True)
    data = cache / f"crm-{args.records}-{args.seed}.csv"
    if not data.exists():
        write_crm(data, data.with_suffix(".truth.csv"), args.records, args.seed)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_model(),
        "gpu": gpu_name(), "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
        "records": args.records, "devices": {},
        "static_encoder_cpu": bench_encoder(StaticTextEncoder(), texts, args.batch, args.seconds),
    }
    for device in [d.strip() for d in args.devices.split(",") if d.strip()]:
        if device == "cuda" and CUDA not in ort.get_available_providers():
            report["devices"][device] = {"skipped": f"onnxruntime {ort.__version__} has no {CUDA} "
                                                    "(install the 'gpu' extra on a GPU machine)"}
            continue
        enc = TextEncoder(device=device)  # type: ignore[arg-type]
        row: dict[str, Any] = {"providers": enc.providers, "artifact": enc.entry.get("file"),
                               "encoder/transformer": bench_encoder(enc, texts, args.batch, args.seconds)}
        if not args.skip_end_to_end:
            row["end_to_end"] = bench_end_to_end(device, data, args.seconds)
        report["devices"][device] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
