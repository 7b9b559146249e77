"""Export the fp16 text encoder for GPUs (CUDA execution provider), next to the CPU int8 artifact.

    python export/export_gpu_fp16.py --out models/onnx      # needs the 'export' extra (torch, transformers)

Why a second artifact: the shipped int8 model uses MatMulNBits kernels tuned for CPUs; on a GPU the CUDA
provider runs fp16 MatMul/attention on tensor cores, so the GPU path wants the same graph in fp16. The graph
is the one `export_text_encoder.py` builds (BERT -> masked mean pool -> L2 -> PCA -> L2) with the *committed*
PCA (`text-pca-<dim>.npz`), so CPU and GPU embeddings live in the same space and one index can hold both.
Inputs and output stay int64 / float32 (`keep_io_types`), so the runtime code is the same for both
artifacts.

The manifest entry gets ``"device": "cuda"``; `TextEncoder` picks it only when the CUDA provider is active,
so CPU-only installs never load it. Parity against the torch fp32 reference is measured on held-out strings
when this onnxruntime can run the graph (a CPU build may lack fp16 kernels; the figure is then omitted).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_text_encoder as base  # noqa: E402  (same directory: the fp32 graph and corpus helpers)

#: Ops kept in fp32 besides the converter's defaults. Empty: blocking the pooling/normalisation ops
#: (ReduceSum, Div, ...) makes the converter emit graphs that are not topologically sorted (GELU's Div).
FP32_OPS: list[str] = []


def convert_fp16(src: Path, dst: Path) -> None:
    """fp32 ONNX -> fp16 weights and activations, fp32 graph inputs/outputs (onnxruntime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                     op_block_list=FP32_OPS or None)
    onnx.save(model, str(dst))
    onnx.checker.check_model(str(dst))


def parity(path: Path, module, tok, n: int) -> dict[str, float] | None:
    """Mean/min cosine to the torch fp32 reference on held-out strings; None if no provider can run it."""
    import onnxruntime as ort

    texts = base.heldout_corpus(n)
    ref = base.torch_embed(module, tok, texts)
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    try:
        sess = ort.InferenceSession(str(path), providers=providers)
        ids, mask = base.tokenize(tok, texts)
        got = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    except Exception as exc:  # noqa: BLE001 - a CPU build without fp16 kernels: report, don't fail the export
        print(f"parity not measured here ({type(exc).__name__}); measure it on a GPU", file=sys.stderr)
        return None
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {"n_strings": n, "mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
            "provider": sess.get_providers()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=base.REPO_ROOT / "models" / "onnx")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--max-seq-len", type=int, default=32)
    ap.add_argument("--parity-n", type=int, default=500)
    args = ap.parse_args()

    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    cpu = next(a for a in manifest["artifacts"] if a.get("kind", "text") == "text" and int(a["dim"]) == args.dim
               and a.get("device", "cpu") == "cpu")
    pca = np.load(args.out / cpu["pca"]["file"])
    tok = base.load_tokenizer(args.out / cpu["tokenizer"]["file"], args.max_seq_len)
    module = base.build_module(base.load_bert(), pca["mean"], pca["components"])
    name = f"text-minilm-l6-d{args.dim}.fp16.onnx"
    dst = args.out / name
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        base.export_onnx(module, fp32)
        convert_fp16(fp32, dst)
    entry = {
        **{k: cpu[k] for k in ("dim", "opset", "inputs", "output", "pipeline", "max_seq_len", "tokenizer", "pca",
                               "source") if k in cpu},
        "name": f"text-minilm-l6-d{args.dim}-fp16",
        "kind": "text",
        "device": "cuda",
        "file": name,
        "sha256": base.sha256_file(dst),
        "bytes": dst.stat().st_size,
        "precision": {"variant": "fp16",
                      "description": "fp16 weights and activations (onnxruntime float16 converter), fp32 I/O"},
        "parity": parity(dst, module, tok, args.parity_n),
        "export_command": shlex.join(["python", "export/export_gpu_fp16.py", "--dim", str(args.dim)]),
    }
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a.get("name") != entry["name"]] + [entry]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: entry[k] for k in ("file", "bytes", "parity")}, indent=2))


if __name__ == "__main__":
    main()
