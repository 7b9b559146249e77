"""Defects found by probing the HTTP API, each fixed with a test that failed before: deep nesting answered
500, `/v1/score` ignored listing images (the API and the stream disagreed on a pair), a latin-1 body was
decoded as UTF-8, a number where a name belongs was accepted, Pillow's bomb warning went raw to stderr, and
images were sized with stat and then read whole."""

from __future__ import annotations

import base64
import csv
import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer.cli import main
from consumer.config import load_settings
from consumer.engine.records import RejectError, parse_record
from consumer.io.listing import attach_image

ROOT = Path(__file__).resolve().parents[1]


def _post(url: str, raw: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=raw, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dedup serve --no-redis` (scoring only) as a child process; its /v1/score URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "serve", "--no-auth", "--host", "127.0.0.1",
                                 "--port", "0", "--no-redis"], stdout=subprocess.PIPE, stderr=fh, cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, log.read_text()[-2000:]
        yield json.loads(first)["url"] + "/v1/score"
    finally:
        proc.terminate()
        proc.wait(30)


A = {"customer_id": "a1", "name": "Anna Schmidt", "city": "Berlin", "browser": "Firefox", "os": "Linux",
     "login_times": ["2025-01-01T08:00:00"]}
B = {**A, "customer_id": "b1", "name": "Anna Schmid"}


def test_deep_nesting_is_a_400_not_a_500(server: str) -> None:
    deep: Any = "x"
    for _ in range(300):  # orjson parses it; re-serialising it for the size check used to raise
        deep = [deep]
    status, body = _post(server, json.dumps({"a": {**A, "extra": deep}, "b": B}).encode())
    assert status == 400 and body["error"] == "too_deep"


def test_a_body_in_another_charset_is_refused_not_misread(server: str) -> None:
    raw = json.dumps({"a": {**A, "city": "Köln"}, "b": B}, ensure_ascii=False).encode("latin-1")
    status, body = _post(server, raw, "application/json; charset=latin-1")
    assert status == 415 and body["error"] == "unsupported_charset"
    status, _ = _post(server, json.dumps({"a": A, "b": B}).encode(), "application/json; charset=UTF-8")
    assert status == 200


def test_a_number_where_a_name_belongs_is_a_400_naming_the_field(server: str) -> None:
    status, body = _post(server, json.dumps({"a": {**A, "name": 12345}, "b": B}).encode())
    assert status == 400 and body["reason"] == "wrong_type" and "'name'" in body["message"]
    settings = load_settings(env={})
    with pytest.raises(RejectError, match="field 'city' must be a string"):  # the stream rejects it too
        parse_record({**A, "city": 10115}, settings.profile, settings.limits)
    person = load_settings(env={}, profile="person")  # a postcode may still come as a number
    row = {"id": "p1", "given_name": "anna", "surname": "smith", "postcode": 2000}
    assert ("postcode", "2000") in parse_record(row, person.profile, person.limits).extra


def test_the_api_scores_listing_images_as_the_stream_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path / "l.csv"), "--profile", "listing", "-n", "40", "--seed", "5"]) == 0
    with (tmp_path / "l.truth.csv").open(newline="") as fh:
        entity = {r["listing_id"]: r["entity_id"] for r in csv.DictReader(fh)}
    with (tmp_path / "l.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["image"]]
    first = next(r for r in rows if sum(entity[o["listing_id"]] == entity[r["listing_id"]] for o in rows) > 1)
    rows = [first, next(o for o in rows if o is not first and entity[o["listing_id"]] == entity[first["listing_id"]])]
    pair = []
    for r in rows:  # the image travels as base64, as in a Kafka message or an API request
        r["image"] = base64.b64encode((tmp_path / r["image"]).read_bytes()).decode()
        pair.append(r)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(pair[0]))
    b.write_text(json.dumps(pair[1]))
    capsys.readouterr()
    assert main(["score", str(a), str(b), "--profile", "listing"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["scores"]["image"] is not None  # was null: the API never attached the image
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(json.dumps(r) for r in pair) + "\n")
    assert main(["batch", str(two), "--profile", "listing", "--fusion", "learned", "--out", str(tmp_path / "d.jsonl"),
                 "-q"]) == 0
    second = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[1])
    assert second["matches"], "two listings of one product: the stream reports the pair"
    assert second["matches"][0]["scores"]["image"] == scored["scores"]["image"]
    assert second["matches"][0]["fused"] == pytest.approx(scored["fused"], abs=1e-4)


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def test_image_reads_are_bounded_and_bomb_warnings_go_to_the_log(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import warnings

    from PIL import Image

    settings = load_settings(env={}, profile="listing")
    rec = parse_record({"listing_id": "x", "title": "Acme kettle 1.7L", "image": "big.png"}, settings.profile,
                       settings.limits)
    (tmp_path / "big.png").write_bytes(_png(64, 64) + b"\0" * 5000)
    _, warning = attach_image(rec, tmp_path, max_bytes=1000)
    assert warning == "image_oversized"
    (tmp_path / "dir.png").mkdir()
    dir_rec = parse_record({"listing_id": "y", "title": "Acme kettle", "image": "dir.png"}, settings.profile,
                           settings.limits)
    assert attach_image(dir_rec, tmp_path, 10_000)[1] == "image_unreadable"
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # a 40x40 image now counts as a bomb (1,600 pixels: a warning)
        (tmp_path / "bomb.png").write_bytes(_png(40, 40))
        bomb = parse_record({"listing_id": "z", "title": "Acme kettle", "image": "bomb.png"}, settings.profile,
                            settings.limits)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning escaping to stderr would fail here
            with caplog.at_level(logging.WARNING, logger="dedup.listing"):
                _, warning = attach_image(bomb, tmp_path, 100_000)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert warning == "image_oversized"
    assert any(getattr(r, "reason", None) == "image_oversized" for r in caplog.records)


def test_the_api_never_reads_a_server_file_named_in_a_request(tmp_path: Path) -> None:
    from consumer.api.scoring import parse_pair

    settings = load_settings(env={}, profile="listing")
    (tmp_path / "secret.png").write_bytes(_png(32, 32))
    row = {"listing_id": "l1", "title": "Acme kettle 1.7L", "image": str(tmp_path / "secret.png")}
    a, _ = parse_pair(row, {**row, "listing_id": "l2"}, settings, image_paths=False)
    assert not a.blob("image")
    a, _ = parse_pair(row, {**row, "listing_id": "l2"}, settings)  # the CLI (dedup score) reads paths
    assert a.blob("image")
