"""The /v1 HTTP API over real HTTP: `dedup serve` as a process, real Redis, and beside `dedup run`.

Why: the API is the product's face to other systems. A score must be the pipeline's own score (same
encoders, comparator, fuser: never a second implementation), a cluster look-up must show what the service
wrote to Redis, every answer must match the published OpenAPI document, and a client's mistake must get a
4xx that says what is wrong, never a 500, and never put a field value into a log.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import redis as hr
from harness.kafka import create_topics, free_port, produce_json, unique_topic
from harness.service import ROOT, crm_rows, running_service, service_settings, shared_text_encoder, wait_for
from jsonschema import Draft202012Validator

from consumer.api.health import HealthServer, HealthState
from consumer.cli import main as cli_main
from consumer.config import load_settings
from consumer.engine.clustering import cluster_id_for
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record, parse_record
from consumer.io.artifacts import build_pipeline
from consumer.store.redis import BatchWrite, RedisStateStore

pytestmark = pytest.mark.integration

N = 400


# ------------------------------------------------------------------------------------------------ helpers
def call(method: str, url: str, body: Any = None, *, raw: bytes | None = None,
         content_type: str | None = "application/json") -> tuple[int, Any]:
    """(status, parsed JSON body) of one request; every answer of this server is JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if content_type and data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        status, payload, ctype = err.code, err.read(), err.headers["Content-Type"]
    assert ctype == "application/json", (status, ctype, payload[:200])
    return status, json.loads(payload)


def validator(doc: dict[str, Any], component: str) -> Draft202012Validator:
    """A validator for one component schema of the OpenAPI document (3.1 schemas are JSON Schema 2020-12)."""
    return Draft202012Validator({**doc, "$ref": f"#/components/schemas/{component}"})


def conforms(doc: dict[str, Any], component: str, body: Any) -> None:
    errors = [e.message for e in validator(doc, component).iter_errors(body)]
    assert not errors, (component, errors, body)


def persist(pipe: Pipeline, decisions: list[Any], store: RedisStateStore) -> None:
    """Write a pipeline's state to Redis through the service's own atomic batch script."""
    write = BatchWrite("api-test")
    ids = pipe.store.record_ids
    for d, st in zip(decisions, pipe.snapshot([d.row for d in decisions])):
        write.add_record(st, st.cluster_id, [])
        if d.merged_cluster_ids:  # absorbed ids become forward pointers, as in the service
            write.add_merge(d.cluster_id, d.merged_cluster_ids)
    for founder, canonical in pipe.canonical.items():
        write.set_canonical(cluster_id_for(ids[founder]), ids[canonical])
    store.write_batch(write, "2026-01-01T00:00:00.000Z")


class Served:
    def __init__(self, url: str, log: Path, rows: list[dict[str, str]], records: list[Record], pipe: Pipeline,
                 prefix: str) -> None:
        self.url, self.log, self.rows, self.records, self.pipe, self.prefix = url, log, rows, records, pipe, prefix


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`dedup serve` as a child process over a Redis state written from a real pipeline run."""
    tmp = tmp_path_factory.mktemp("api")
    _path, _truth, rows = crm_rows(N, 31, tmp)
    settings = load_settings(env={})
    records = [parse_record(r, settings.profile, settings.limits) for r in rows]
    pipe = build_pipeline(settings, text_encoder=shared_text_encoder())
    decisions = pipe.process(records)
    prefix = f"dedup-test:{uuid.uuid4().hex[:12]}:"
    store = RedisStateStore(redis_url, prefix)
    persist(pipe, decisions, store)
    log = tmp / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "--log-level", "DEBUG", "serve", "--no-auth",
                                 "--host", "127.0.0.1", "--port", "0", "--redis", redis_url, "--redis-prefix", prefix],
                                stdout=subprocess.PIPE, stderr=fh, cwd=ROOT, start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until it serves (or dies: empty line)
        assert first, f"dedup serve did not start: {log.read_text()[-2000:]}"
        yield Served(json.loads(first)["url"], log, rows, records, pipe, prefix)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "dedup serve must exit 0 on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        pipe.close()
        client = redis.Redis.from_url(redis_url)
        hr.delete_prefix(client, prefix)
        client.close()
        store.close()


@pytest.fixture(scope="module")
def doc(served: Served) -> dict[str, Any]:
    status, body = call("GET", served.url + "/openapi.json")
    assert status == 200
    return body


# ------------------------------------------------------------------------------------------------ scoring
def test_score_is_the_pipelines_own_score(served: Served, doc: dict[str, Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Server, CLI and the stream agree: the score of (a, b) is the fused score `Pipeline.process` gives b's
    match with a on a two-record stream, with the same per-modality explanation."""
    by_id = {r.record_id: r for r in served.records}
    rows = {r["customer_id"]: r for r in served.rows}
    dup = next(d for d in served.pipe.assignments().items()
               if list(served.pipe.assignments().values()).count(d[1]) > 1)[1]
    a_id, b_id = [rid for rid, c in served.pipe.assignments().items() if c == dup][:2]
    status, body = call("POST", served.url + "/v1/score", {"a": rows[a_id], "b": rows[b_id], "explain": True})
    assert status == 200, body
    conforms(doc, "ScoreResponse", body)
    assert (body["a"], body["b"], body["rarity"], body["profile"]) == (a_id, b_id, "pair", "crm-signup")
    again = call("POST", served.url + "/v1/score", {"a": rows[a_id], "b": rows[b_id], "profile": "crm-signup"})[1]
    assert again["fused"] == body["fused"]
    assert body["decision"] == "match" and body["fused"] >= body["thresholds"]["match"]
    assert set(body["scores"]) == {"text", "name", "city", "behaviour", "device"} and body["features"]

    two = build_pipeline(load_settings(env={}), text_encoder=shared_text_encoder())
    decided = two.process([by_id[a_id], by_id[b_id]])[1]
    two.close()
    assert decided.matches and decided.matches[0].record_id == a_id
    assert decided.matches[0].fused == body["fused"] and decided.matches[0].scores == body["scores"]

    (tmp_path / "a.json").write_text(json.dumps(rows[a_id]))
    (tmp_path / "b.json").write_text(json.dumps(rows[b_id]))
    capsys.readouterr()
    assert cli_main(["score", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--explain"]) == 0
    assert json.loads(capsys.readouterr().out) == body


def test_unrelated_records_and_missing_modalities(served: Served, doc: dict[str, Any]) -> None:
    a = {"customer_id": "x1", "name": "Wilhelmina Okonkwo-Barrett", "city": "Tromsø"}
    b = {"customer_id": "x2", "name": "Dmitri Fairweather", "city": "Valparaíso", "browser": "Firefox"}
    status, body = call("POST", served.url + "/v1/score", {"a": a, "b": b})
    assert status == 200, body
    conforms(doc, "ScoreResponse", body)
    assert body["decision"] == "no_match" and "features" not in body
    assert body["scores"]["behaviour"] is None and body["scores"]["device"] is None  # absent, not zero


def test_rarity_from_redis_judges_pairs_as_the_stream_did(served: Served, redis_url: str, tmp_path: Path) -> None:
    """`dedup serve --rarity-from-redis` counts the stored records at start-up: its score of a pair equals
    the score against the term frequencies of the pipeline that wrote that state."""
    from consumer.api.scoring import score_pair

    proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "serve", "--no-auth", "--host", "127.0.0.1",
                             "--port", "0", "--redis", redis_url, "--redis-prefix", served.prefix,
                             "--rarity-from-redis"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        rows = {r["customer_id"]: r for r in served.rows}
        by_id = {r.record_id: r for r in served.records}
        ids = served.pipe.store.record_ids
        for a_id, b_id in [(ids[0], ids[1]), (ids[5], ids[9])] + [(ids[i], ids[i + 1]) for i in range(20, 60, 8)]:
            status, body = call("POST", url + "/v1/score", {"a": rows[a_id], "b": rows[b_id]})
            assert status == 200 and body["rarity"] == "state", body
            want = score_pair(served.pipe, by_id[a_id], by_id[b_id], served.pipe.frequencies,
                              known=served.pipe.store.row_of)
            assert (body["fused"], body["scores"]) == (want.fused, want.scores)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_rarity_from_redis_refuses_state_of_another_key(redis_url: str, redis_prefix: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = RedisStateStore(redis_url, redis_prefix)
    store.set_meta({"key_id": "0123456789abcdef"})
    store.close()
    assert cli_main(["serve", "--port", "0", "--redis", redis_url, "--redis-prefix", redis_prefix,
                     "--rarity-from-redis"]) == 2
    assert "another encoders.hash_key" in capsys.readouterr().err
    assert cli_main(["serve", "--port", "0", "--no-redis", "--rarity-from-redis"]) == 2


# --------------------------------------------------------------------------------------------- clusters
def test_cluster_lookups_show_what_redis_holds(served: Served, doc: dict[str, Any]) -> None:
    pipe = served.pipe
    ids = pipe.store.record_ids
    assignments = pipe.assignments()
    members: dict[str, list[str]] = {}
    for rid in ids:  # arrival order
        members.setdefault(assignments[rid], []).append(rid)
    canonical = {cluster_id_for(ids[f]): ids[c] for f, c in pipe.canonical.items()}
    multi = [c for c, m in members.items() if len(m) > 1]
    assert multi, "the generated data has duplicates"
    for cid in multi[:10] + [assignments[ids[0]]]:
        status, body = call("GET", f"{served.url}/v1/clusters/{cid}")
        assert status == 200, body
        conforms(doc, "Cluster", body)
        assert body["cluster_id"] == cid and body["merged_into"] is None
        assert body["members"] == members[cid] and body["size"] == len(members[cid])
        assert body["canonical_id"] == canonical[cid] and body["truncated"] is False
        rid = members[cid][-1]
        status, rec = call("GET", f"{served.url}/v1/records/{rid}/cluster")
        assert status == 200, rec
        conforms(doc, "RecordCluster", rec)
        assert rec["record_id"] == rid and rec["cluster_id"] == cid and rec["members"] == members[cid]
    big = max(multi, key=lambda c: len(members[c]))
    status, body = call("GET", f"{served.url}/v1/clusters/{big}?limit=1")
    assert status == 200 and body["members"] == members[big][:1] and body["truncated"] is True


def test_an_absorbed_cluster_id_answers_for_its_survivor(served: Served, redis_url: str) -> None:
    store = RedisStateStore(redis_url, served.prefix)
    try:
        survivor = served.pipe.assignments()[served.pipe.store.record_ids[0]]
        absorbed = cluster_id_for("api-test-absorbed")
        store.client.set(store.key("fwd", absorbed), survivor)
    finally:
        store.close()
    status, body = call("GET", f"{served.url}/v1/clusters/{absorbed}")
    assert status == 200 and body["cluster_id"] == survivor and body["merged_into"] == survivor
    assert body["requested_id"] == absorbed


# ------------------------------------------------------------------------------------------ bad requests
NAME = "Zebulon Quixotefield"  # must never reach the log


def _row(**kw: Any) -> dict[str, Any]:
    return {"customer_id": "q1", "name": NAME, "city": "Hvammstangi", **kw}


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"a": _row()}, 400, "bad_request"),                                            # no b
    ({"a": _row(), "b": _row(), "c": 1}, 400, "bad_request"),                       # unknown key
    ({"a": _row(), "b": _row(), "explain": "yes"}, 400, "bad_request"),
    ({"a": _row(), "b": _row(), "profile": "listing"}, 400, "unknown_profile"),
    ([_row(), _row()], 400, "bad_request"),                                         # not an object
    ({"a": _row(), "b": "Zebulon"}, 422, "invalid_record"),                          # a record not an object
    ({"a": _row(), "b": {"name": NAME}}, 422, "invalid_record"),                     # no id
    ({"a": _row(), "b": _row(name=[NAME])}, 400, "invalid_record"),                  # wrong type (named)
    ({"a": _row(), "b": _row(name=12345)}, 400, "invalid_record"),                   # a number for a name
    ({"a": _row(login_times="[\"Zebulon\"]"), "b": _row()}, 422, "invalid_record"),  # bad timestamps
    ({"a": _row(name="x" * 5000), "b": _row()}, 422, "invalid_record"),             # oversized field
    ({"a": _row(name="y" * 70000), "b": _row()}, 413, "oversized_record"),
    ({"a": {"customer_id": "q1"}, "b": _row()}, 422, "invalid_record"),             # no usable field
])
def test_bad_score_requests_get_a_4xx_that_says_why(served: Served, doc: dict[str, Any], body: Any, status: int,
                                                   code: str) -> None:
    got, answer = call("POST", served.url + "/v1/score", body)
    assert (got, answer["error"]) == (status, code), answer
    conforms(doc, "Error", answer)
    assert NAME not in answer["message"] and "Zebulon" not in json.dumps(answer)
    if status == 422:
        assert answer["reason"] and answer["side"] in ("a", "b") and answer["message"].startswith("record ")


def test_malformed_bodies_methods_and_paths(served: Served, doc: dict[str, Any]) -> None:
    u = served.url
    cases = [
        (call("POST", u + "/v1/score", raw=b'{"a": {'), 400, "invalid_json"),
        (call("POST", u + "/v1/score", raw=b"\xff\xfe{}"), 400, "invalid_json"),
        (call("POST", u + "/v1/score", raw=b""), 400, "empty_body"),
        (call("POST", u + "/v1/score", raw=b"a=1", content_type="application/x-www-form-urlencoded"), 415,
         "unsupported_media_type"),
        (call("POST", u + "/v1/score", raw=b"{" * 300_000), 413, "body_too_large"),
        (call("GET", u + "/v1/score"), 405, "method_not_allowed"),
        (call("DELETE", u + "/v1/clusters/cl_1"), 405, "method_not_allowed"),
        (call("GET", u + "/v1/clusters/cl_nope"), 404, "not_found"),
        (call("GET", u + "/v1/records/nobody/cluster"), 404, "not_found"),
        (call("GET", u + "/v1/records/nobody/cluster?limit=0"), 400, "bad_request"),
        (call("GET", u + "/v1/clusters/cl_1?limit=abc"), 400, "bad_request"),
        (call("GET", u + "/v1/clusters/cl_1?limit=100001"), 400, "bad_request"),
        (call("GET", u + "/v2/anything"), 404, "not_found"),
    ]
    for (status, body), want_status, want_code in cases:
        assert (status, body["error"]) == (want_status, want_code), body
        conforms(doc, "Error", body)
    assert "/v1/score" in call("GET", u + "/nope")[1]["paths"]


def test_random_bodies_never_get_a_5xx(served: Served) -> None:
    """Mutated valid requests (types swapped, keys dropped, values spliced): always a 2xx or a 4xx."""
    rng = random.Random(13)
    base = {"a": dict(served.rows[0]), "b": dict(served.rows[1])}
    junk: list[Any] = [None, True, 0, -1, 1e308, "", "Zebulon", [], {}, [1, "x"], {"k": []}, "\u0000", "\ud7ff" * 3,
                       "2024-13-45T99:99", 2**70]
    seen: set[int] = set()
    for _ in range(150):
        body: Any = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 4)):
            side = body.get(rng.choice(["a", "b"])) if isinstance(body, dict) and rng.random() < 0.9 else body
            if isinstance(side, dict) and side:
                key = rng.choice(sorted(side))
                if rng.random() < 0.2:
                    side.pop(key)
                else:
                    side[key] = rng.choice(junk)
            elif rng.random() < 0.5:
                body = rng.choice(junk)
        status, answer = call("POST", served.url + "/v1/score", body)
        assert status < 500, answer
        seen.add(status)
    assert {200, 400, 422} <= seen, seen  # the mutations reached the scorer, the shape and record checks


def test_logs_carry_no_field_values(served: Served) -> None:
    call("POST", served.url + "/v1/score", {"a": _row(), "b": _row(customer_id="q2", login_times="nonsense")})
    call("POST", served.url + "/v1/score", {"a": _row(), "b": _row(customer_id="q2")})
    text = served.log.read_text(errors="replace")
    assert "/v1/score" in text  # DEBUG request lines are there...
    for needle in (NAME, "Zebulon", "Quixotefield", "Hvammstangi"):
        assert needle not in text  # ...but no value of a field


def test_metrics_count_api_requests_by_route_and_status(served: Served) -> None:
    call("POST", served.url + "/v1/score", {"a": _row(), "b": {"name": NAME}})
    call("GET", served.url + "/v1/clusters/cl_nope")
    with urllib.request.urlopen(served.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    count = re.search(r'dedup_api_requests_total\{route="/v1/score",status="422"\} (\d+)', text)
    assert count and int(count.group(1)) >= 1, text
    assert 'dedup_api_requests_total{route="/v1/clusters/{cluster_id}",status="404"}' in text
    assert 'dedup_api_request_seconds_count{route="/v1/score"}' in text
    assert "cl_nope" not in text and "q1" not in text  # labels are templates and codes, never ids


# --------------------------------------------------------------------------------------- document, stores
def test_openapi_document_is_committed_and_describes_the_profile(served: Served, doc: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    committed = json.loads((ROOT / "docs" / "api" / "openapi.json").read_text())
    assert cli_main(["openapi", "--out", str(tmp_path / "openapi.json")]) == 0
    generated = json.loads((tmp_path / "openapi.json").read_text())
    assert generated == committed, "regenerate docs/api/openapi.json with `dedup openapi --out docs/api/openapi.json`"
    assert doc == committed  # the default profile's server serves exactly that
    assert doc["openapi"] == "3.1.0" and set(doc["paths"]) == {
        "/v1/score", "/v1/records/{record_id}/cluster", "/v1/clusters/{cluster_id}", "/openapi.json",
        "/v1/records/{record_id}"}
    assert doc["components"]["schemas"]["Record"]["required"] == ["customer_id"]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    from openapi_spec_validator import validate

    validate(doc)  # a valid OpenAPI 3.1 document, not only JSON that looks like one
    person = load_settings(env={}, profile="person")
    from consumer.api.openapi import openapi_document

    assert openapi_document(person)["components"]["schemas"]["Record"]["required"] == ["id"]
    validate(openapi_document(person))


def test_unreachable_or_missing_state_store_is_503(tmp_path: Path) -> None:
    """A scoring-only server and one whose Redis is down: look-ups say so (503), scoring still works."""
    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes

    settings = load_settings(env={"DEDUP_API__AUTH": "off"})
    pipe = build_pipeline(settings, text_encoder=shared_text_encoder())
    dead = RedisStateStore(f"redis://127.0.0.1:{free_port()}/0", "x", socket_timeout=0.5)
    health = HealthState(float("inf"))
    for store, code in ((None, "no_state_store"), (dead, "state_store_unavailable")):
        ctx = ApiContext(settings, lambda: pipe, store=store, health=health)
        with HealthServer(health, CollectorRegistry(), routes=[api_routes(ctx)]) as server:
            status, body = call("GET", server.url + "/v1/clusters/cl_1")
            assert (status, body["error"]) == (503, code)
            status, body = call("GET", server.url + "/v1/records/r/cluster")
            assert (status, body["error"]) == (503, code)
            row = {"customer_id": "1", "name": "Ann Lee"}
            assert call("POST", server.url + "/v1/score", {"a": row, "b": {**row, "customer_id": "2"}})[0] == 200
    assert re.search(r"redis: unreachable", " ".join(health.readiness()[1]["reasons"]))
    pipe.close()
    dead.close()


def test_api_beside_dedup_run(kafka_bootstrap: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """On `dedup run`'s own port: look-ups agree with what the service stored, and pairs are scored against
    the population the service has seen (`rarity: stream`)."""
    _path, _truth, rows = crm_rows(300, 32, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, rows, key="customer_id")
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix, api=True)
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings) as svc:
        statuses: list[int] = []
        stop = threading.Event()

        def score_meanwhile() -> None:  # API threads share the encoders with the stream's worker
            i = 0
            while not stop.is_set():
                statuses.append(call("POST", svc.url + "/v1/score", {"a": rows[i % 50], "b": rows[i % 50 + 1]})[0])
                i += 1

        scorer = threading.Thread(target=score_meanwhile, daemon=True)
        scorer.start()
        wait_for(lambda: store.record_count() >= len(rows), 120, "records in redis")
        stop.set()
        scorer.join(30)
        print(f"scored {len(statuses)} pairs while the stream ran: {sorted(set(statuses))}")
        assert statuses and set(statuses) <= {200, 503} and 200 in statuses, statuses  # 503: still loading
        assert store.verify() == []
        doc = call("GET", svc.url + "/openapi.json")[1]
        exported = dict(store.export_clusters())
        for rid in [r["customer_id"] for r in rows[:40]]:
            status, body = call("GET", f"{svc.url}/v1/records/{rid}/cluster")
            assert status == 200, body
            conforms(doc, "RecordCluster", body)
            assert body["cluster_id"] == exported[rid] and rid in body["members"]
            assert sorted(body["members"]) == sorted(r for r, c in exported.items() if c == exported[rid])
        status, body = call("POST", svc.url + "/v1/score", {"a": rows[0], "b": rows[1]})
        assert status == 200 and body["rarity"] == "stream", body
        conforms(doc, "ScoreResponse", body)
        assert call("GET", svc.url + "/readyz")[0] == 200
        with urllib.request.urlopen(svc.url + "/metrics", timeout=10) as resp:
            assert 'dedup_api_requests_total{route="/v1/score",status="200"}' in resp.read().decode()
    store.close()
    off = service_settings(kafka_bootstrap, redis_url, [topic], events, unique_topic("g"), redis_prefix, api=False)
    with running_service(off) as svc:
        status, body = call("GET", svc.url + "/v1/clusters/cl_1")
        assert status == 404 and "/v1/score" not in body["paths"]  # service.api = false: probes only


def test_a_handler_bug_is_a_500_that_logs_no_value(caplog: pytest.LogCaptureFixture) -> None:
    """The one 5xx a client can see for a bug: no detail in the answer, type and place in the log, never the
    exception's message (which may quote a value)."""
    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes

    def broken() -> Pipeline:
        raise ValueError(f"could not handle {NAME}")

    health = HealthState(float("inf"))
    ctx = ApiContext(load_settings(env={"DEDUP_API__AUTH": "off"}), broken)
    with caplog.at_level("DEBUG"), HealthServer(health, CollectorRegistry(), routes=[api_routes(ctx)]) as server:
        status, body = call("POST", server.url + "/v1/score", {"a": _row(), "b": _row(customer_id="q2")})
    assert (status, body["error"]) == (500, "internal_error") and NAME not in json.dumps(body)
    failed = [r for r in caplog.records if r.getMessage() == "http handler failed"]
    assert failed and failed[0].error == "ValueError" and "test_api.py" in failed[0].at
    assert NAME not in caplog.text


def test_delete_erases_a_record_and_answers_404_for_unknown_ids(served: Served, redis_url: str) -> None:
    """The API's erasure door (issue 23; last in this module: it changes the shared state). `dedup serve` has
    no member to follow the erasure, so it also drops other records' stored events that name the id."""
    rid = served.pipe.store.record_ids[-1]
    status, body = call("DELETE", f"{served.url}/v1/records/{rid}")
    assert (status, body) == (200, {"record_id": rid, "erased": True})
    assert call("GET", f"{served.url}/v1/records/{rid}/cluster")[0] == 404
    status, body = call("DELETE", f"{served.url}/v1/records/{rid}")
    assert status == 404 and body["error"] == "not_found"  # idempotent: erased already, nothing changes
    assert call("DELETE", f"{served.url}/v1/records/never-stored")[0] == 404
    store = RedisStateStore(redis_url, served.prefix)
    try:
        assert store.verify() == [] and not store.existing([rid])
        assert f"e{rid}" in store.read_log(store.log_base())  # members would forget it from here
        erased_lines = [x for x in served.log.read_text().splitlines() if '"record erased"' in x]
        assert erased_lines and rid not in erased_lines[-1]  # logged as a keyed hash only (the debug
        # access log of the HTTP server does print request paths: not this module's line)
    finally:
        store.close()
