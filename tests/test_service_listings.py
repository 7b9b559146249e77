"""Listings through `dedup run` exactly like signups: real broker, real Redis, images as base64 in the
message (or an absolute path the service can read), the same clusters as `dedup batch`, no title in Redis
or in any event."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import orjson
import pytest
import redis
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.linked import LINKED, messages, write_linked
from harness.service import (
    check_events,
    committed_offset,
    leaked,
    redis_dump,
    running_service,
    service_settings,
    wait_for,
)

from consumer.cli import main as cli_main
from consumer.config import load_settings
from consumer.evaluation.evaluate import cluster_scores, load_truth
from consumer.generate.listings import write_listings
from consumer.io.batch import run_batch
from consumer.service.state import encoder_models
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration
N = 400


def test_listings_stream_like_signups(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                      tmp_path: Path) -> None:
    data, truth_path = tmp_path / "listings.csv", tmp_path / "listings.truth.csv"
    write_listings(data, truth_path, N, seed=31)
    truth = load_truth(truth_path, "listing_id")
    batch_settings = load_settings(env={}, profile="listing")
    _summary, pipe = run_batch(data, tmp_path / "batch.jsonl", batch_settings, progress=False)
    batch_f1 = cluster_scores(pipe.assignments(), truth).f1
    pipe.close()

    rows = list(csv.DictReader(data.open(encoding="utf-8")))
    for i, row in enumerate(rows):  # most images travel in the message, some as a path the service reads
        if row["image"]:
            path = tmp_path / row["image"]
            row["image"] = str(path) if i % 5 == 0 else base64.b64encode(path.read_bytes()).decode()
    topic, events, group = unique_topic("listings"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, rows, key="listing_id")
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    settings.profile = batch_settings.profile
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings):
        wait_for(lambda: store.record_count() >= N, 300, f"{N} listings in redis")
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == N, 30, "offsets committed")

    out = tmp_path / "clusters.jsonl"
    assert cli_main(["export-clusters", "--redis", redis_url, "--redis-prefix", redis_prefix,
                     "--out", str(out)]) == 0
    stream = {e["record_id"]: e["cluster_id"] for e in map(orjson.loads, out.read_bytes().splitlines())}
    assert len(stream) == N and store.verify() == []
    # the models that made the stored vectors, for a later start to compare with its own (service/state.py)
    models = store.get_meta()["encoder_models"]
    image = next(e for e in pipe.encoders if e.name == "image")
    assert models == encoder_models(pipe) == "image:" + image.model.entry["sha256"][:12] + ",title:words-swap5"
    stream_f1 = cluster_scores(stream, truth).f1
    print(f"listings pairwise F1 batch {batch_f1:.4f} stream {stream_f1:.4f} ({N} records)")
    assert abs(stream_f1 - batch_f1) <= 0.01

    values = [m.value for m in consume_all(kafka_bootstrap, events, timeout=30, min_messages=N)]
    distinct = check_events(values)
    clustered = [e for e in distinct.values() if e["event_type"] == "record.clustered"]
    assert {e["record_id"] for e in clustered} == set(stream)
    scored = [m for e in distinct.values() for m in e.get("matches", []) if m.get("scores")]
    assert not scored or {"title", "image"} <= set(scored[0]["scores"])

    needles = {r["title"].encode() for r in rows if len(r["title"]) > 12}
    client = redis.Redis.from_url(redis_url)
    assert leaked(redis_dump(client, redis_prefix), needles) == []
    assert leaked(values, needles) == []


def _stream_linked(kafka_bootstrap: str, redis_url: str, redis_prefix: str, tmp_path: Path,
                   batch_settings) -> tuple[dict[str, str], list[bytes]]:
    """The linked listings streamed through `dedup run` with the batch's profile and fusion settings: the
    clusters it leaves in Redis (after `store.verify()` holds) and the event messages."""
    topic, events, group = unique_topic("linked"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, messages(), key="listing_id")
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    settings.profile, settings.fusion = batch_settings.profile, batch_settings.fusion
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings):
        wait_for(lambda: store.record_count() >= len(LINKED), 120, "linked listings in redis")
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(LINKED), 30, "offsets committed")
    out = tmp_path / "clusters.jsonl"
    assert cli_main(["export-clusters", "--redis", redis_url, "--redis-prefix", redis_prefix,
                     "--out", str(out)]) == 0
    assert store.verify() == []
    stream = {e["record_id"]: e["cluster_id"] for e in map(orjson.loads, out.read_bytes().splitlines())}
    return stream, [m.value for m in consume_all(kafka_bootstrap, events, timeout=30, min_messages=len(LINKED))]


def test_a_displaced_partner_streams_like_the_batch(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                                     tmp_path: Path) -> None:
    """Linking two shops: b_2 matches a_1 better than b_1, which arrived first, so it takes b_1's place
    (`ClusterState._rival`); b_7 takes the place of b_6, which founded its cluster. The service applies those
    splits in Redis as the batch does in memory: the same clusters, the `cluster.split` events, nothing lost."""
    data, cfg = write_linked(tmp_path)
    batch_settings = load_settings(cfg, env={})
    _summary, pipe = run_batch(data, tmp_path / "batch.jsonl", batch_settings, progress=False)
    batch = pipe.assignments()
    pipe.close()
    assert batch["b_2"] == batch["a_1"] != batch["b_1"]  # b_2 took the place
    assert batch["b_7"] == batch["a_4"] != batch["b_6"]  # b_7 took the place of the cluster's founder

    stream, values = _stream_linked(kafka_bootstrap, redis_url, redis_prefix, tmp_path, batch_settings)
    assert stream == batch
    splits = [e for e in check_events(values).values() if e["event_type"] == "cluster.split"]
    assert sorted(sorted(p["record_ids"]) for e in splits for p in e["pieces"]) == [["a_4", "b_7"], ["b_1"]]


def test_a_labelled_model_keeps_its_answers_in_the_stream(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                                          tmp_path: Path) -> None:
    """`dedup run --model` with a model from `dedup train --labels`: the answered pairs stay as answered in
    the stream as in the batch (the same core path, `consumer.engine.answers`): b_1 stays with a_1 although
    b_2 matches a_1 better, because the user said b_2 is not a_1's partner."""
    from consumer.io.labels import Label, LabelFile, file_sha256

    data, cfg = write_linked(tmp_path)
    labels = LabelFile(tmp_path / "labels.csv", file_sha256(data), "listing", [r[0] for r in LINKED])
    for a, b, answer in [("a_1", "b_1", "yes"), ("b_2", "a_1", "no")]:
        labels.add(Label(a, b, answer))
    model = tmp_path / "m.pkl"
    assert cli_main(["train", str(data), "--config", str(cfg), "--labels", str(labels.path),
                     "--model-out", str(model)]) == 0
    batch_settings = load_settings(cfg, env={})
    batch_settings.fusion.learned_model = str(model)
    _summary, pipe = run_batch(data, tmp_path / "batch.jsonl", batch_settings, progress=False)
    batch = pipe.assignments()
    pipe.close()
    assert batch["b_1"] == batch["a_1"] != batch["b_2"]
    stream, _ = _stream_linked(kafka_bootstrap, redis_url, redis_prefix, tmp_path, batch_settings)
    assert stream == batch
