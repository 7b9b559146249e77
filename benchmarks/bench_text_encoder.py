"""Throughput of the text encoders (tokenise + pad + ONNX run; or the static table lookup), in texts/s.

    python benchmarks/bench_text_encoder.py            # committed artifact, batch 64 and 256, 2 threads
    python benchmarks/bench_text_encoder.py --json --variants all

Measures ``TextEncoder.encode`` end to end on two workloads built from generated CRM records:
``tokens`` - distinct folded name tokens and canonical cities, what the pipeline's SemanticEncoder sends
(3-6 word pieces each) - and ``strings`` - whole "name, city" strings (8-15 pieces). If ``--scratch``
holds output of ``export/export_text_encoder.py --out /tmp/onnx-scratch``, its other dims and the export
candidates in ``work/`` (``--variants``, default fp32 and fp16w) are measured the same way.

The static (distilled) encoder in ``models/static`` is measured in the same rounds (``--no-static`` to
leave it out), so the ratio between the two is taken back to back under the same load.

Wall-clock figures on a shared machine swing with neighbours' load: each number is the best of
``--repeats`` runs, and artifacts are interleaved round by round so drift hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Target:
    label: str
    model_dir: Path
    dim: int
    bytes: int
    sha256: str = ""
    kind: str = "onnx"


def workloads(n: int, seed: int) -> dict[str, list[str]]:
    """n texts per workload from generated CRM rows (tokens: distinct, in first-seen order)."""
    from consumer.engine.normalize import city_canonical, name_tokens
    from consumer.generate import generate_crm

    rows, _ = generate_crm(n * 2, seed)
    strings = [f"{r['name']}, {r['city']}" if r["city"] else r["name"] for r in rows][:n]
    seen: dict[str, None] = {}
    for r in rows:
        for piece in [*name_tokens(r["name"]), city_canonical(r["city"])]:
            if piece:
                seen.setdefault(piece)
    return {"tokens": list(seen)[:n], "strings": strings}


def manifest_targets(model_dir: Path, prefix: str) -> list[Target]:
    path = model_dir / "manifest.json"
    if not path.is_file():
        return []
    out = []
    for a in json.loads(path.read_text(encoding="utf-8"))["artifacts"]:
        if (model_dir / a["file"]).is_file():
            label = f"{prefix}:{a['file']}"
            out.append(Target(label, model_dir, int(a["dim"]), int(a["bytes"]), a.get("sha256", "")))
    return out


def static_targets(static_dir: Path | None) -> list[Target]:
    """The distilled static encoders in ``static_dir`` (interleaved with the ONNX ones, same workloads)."""
    from consumer.encoders.static_text import KIND, default_static_dir

    d = static_dir or default_static_dir()
    path = d / "manifest.json"
    if not path.is_file():
        return []
    return [Target(f"static:{a['file']}", d, int(a["dim"]), int(a["bytes"]), a.get("sha256", ""), "static")
            for a in json.loads(path.read_text(encoding="utf-8"))["artifacts"]
            if a.get("kind") == KIND and (d / a["file"]).is_file()]


def candidate_targets(work: Path, tokenizer: Path, tmp: Path, variants: set[str] | None) -> list[Target]:
    """Wrap each work/<stem>.<variant>.onnx in a one-entry model dir so TextEncoder loads it unchanged."""
    out = []
    for model in sorted(work.glob("text-minilm-l6-d*.onnx")):
        variant = model.name.split(".", 1)[1].removesuffix(".onnx")
        if model.name.endswith(".tmp.onnx") or (variants is not None and variant not in variants):
            continue
        dim = int(model.name.split(".")[0].rsplit("-d", 1)[1])
        d = tmp / model.stem
        d.mkdir()
        (d / model.name).symlink_to(model)
        shutil.copyfile(tokenizer, d / "tokenizer.json")
        entry = {"dim": dim, "file": model.name, "tokenizer": {"file": "tokenizer.json"}}
        (d / "manifest.json").write_text(json.dumps({"artifacts": [entry]}))
        out.append(Target(f"work:{model.name}", d, dim, model.stat().st_size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None, help="default: the repo's models/onnx")
    ap.add_argument("--static-dir", type=Path, default=None,
                    help="static (distilled) model dir, measured beside the ONNX ones (default: models/static)")
    ap.add_argument("--no-static", action="store_true", help="leave the static encoder out")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/onnx-scratch"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="64,256")
    ap.add_argument("--texts", type=int, default=2048, help="texts per workload")
    ap.add_argument("--workloads", default="tokens,strings")
    ap.add_argument(
        "--variants",
        default="fp32,fp16w",
        help="export candidates from <scratch>/work to include (comma-separated, or 'all')",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()

    from consumer.encoders.static_text import StaticTextEncoder
    from consumer.encoders.text import TextEncoder, default_model_dir

    model_dir = args.model_dir or default_model_dir()
    data = {k: v for k, v in workloads(args.texts, args.seed).items() if k in args.workloads.split(",")}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        targets = manifest_targets(model_dir, "committed")
        if not targets:
            raise SystemExit(f"no artifacts in {model_dir}; run export/export_text_encoder.py first")
        committed = {t.sha256 for t in targets}
        targets += [t for t in manifest_targets(args.scratch, "scratch") if t.sha256 not in committed]
        if (args.scratch / "work").is_dir() and (model_dir / "tokenizer.json").is_file():
            variants = None if args.variants == "all" else set(args.variants.split(","))
            work = args.scratch / "work"
            targets += candidate_targets(work, model_dir / "tokenizer.json", Path(tmp), variants)

        if not args.no_static:
            targets += static_targets(args.static_dir)
        encoders = {}
        for t in targets:
            enc = (StaticTextEncoder(t.model_dir, dim=t.dim) if t.kind == "static" else
                   TextEncoder(model_dir=t.model_dir, dim=t.dim, device="cpu", threads=args.threads))
            for texts in data.values():
                enc.encode(texts[:512])  # warm-up: session arenas, kernel selection
            encoders[t.label] = enc
        best: dict[tuple[str, str, int], float] = {}
        for _ in range(args.repeats):
            for name, texts in data.items():
                for bs in batch_sizes:
                    for t in targets:
                        t0 = time.perf_counter()
                        encoders[t.label].encode(texts, batch_size=bs)
                        key = (t.label, name, bs)
                        best[key] = min(best.get(key, float("inf")), time.perf_counter() - t0)

    results = [
        {
            **asdict(t),
            "model_dir": str(t.model_dir),
            "workload": name,
            "batch_size": bs,
            "texts_per_s": round(len(data[name]) / best[(t.label, name, bs)]),
        }
        for name in data
        for bs in batch_sizes
        for t in targets
    ]
    if args.json:
        sizes = {k: len(v) for k, v in data.items()}
        print(json.dumps({"threads": args.threads, "texts": sizes, "results": results}, indent=2))
        return
    print(
        f"{args.threads} threads, best of {args.repeats}; texts per workload: {len(next(iter(data.values())))}"
    )
    print(f"{'artifact':50s} {'dim':>4s} {'MB':>6s} {'workload':>8s} {'batch':>6s} {'texts/s':>8s}")
    for r in results:
        mb = r["bytes"] / 1e6
        print(
            f"{r['label']:50s} {r['dim']:4d} {mb:6.1f} {r['workload']:>8s} {r['batch_size']:6d} "
            f"{r['texts_per_s']:8d}"
        )


if __name__ == "__main__":
    main()
