"""The API on an open network: bearer tokens with scopes, bounded connections and threads, and a probe suite.

Why: anyone who reaches the port could score pairs and read every cluster (no authentication), and 200
half-open connections held 203 threads of the old server until the clients went away. These tests run a
real server on loopback and attack it as a careless client or an attacker would: every answer is a 4xx or
a closed connection, never a 500; `/healthz` answers within a second throughout; threads stay at the
configured bound; a slow request finishes when the server is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.service import shared_text_encoder, wait_for
from prometheus_client import CollectorRegistry

from consumer.api.app import ApiContext, api_routes
from consumer.api.auth import TokenStore, parse_tokens, required_scope
from consumer.api.health import HealthServer, HealthState, listeners
from consumer.api.server import ServerLimits
from consumer.cli import main as cli_main
from consumer.config import ConfigError, Settings, load_settings
from consumer.engine.pipeline import Pipeline
from consumer.io.artifacts import build_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from fuzz_http import PAIR, READ, SEED_CASES, WRITE, exchange, rss_mb  # noqa: E402  (one copy of the probe corpus)


# ------------------------------------------------------------------------------------------------ helpers
def request(method: str, url: str, body: Any = None, token: str | None = None, *, raw: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Any, bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                         **(headers or {})})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def error_code(payload: bytes) -> str:
    return str(json.loads(payload)["error"])


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    return exchange(port, data, timeout, half_close=False)


@pytest.fixture(scope="module")
def pipe() -> Iterator[Pipeline]:
    p = build_pipeline(load_settings(env={}), text_encoder=shared_text_encoder())
    yield p
    p.close()


def settings_with(tokens: Path | None, **api: Any) -> Settings:
    s = load_settings(env={})
    s.api.auth, s.api.tokens_file = ("tokens", str(tokens)) if tokens else ("off", "")
    for key, value in api.items():
        setattr(s.api, key, value)
    return s


@contextlib.contextmanager
def serving(s: Settings,
            pipeline: Callable[[], Pipeline | None]) -> Iterator[tuple[HealthServer, HealthServer | None]]:
    health = HealthState(float("inf"))
    health.set_assigned(True)
    health.set_index_loaded(True)
    s.service.http_host, s.service.http_port = "127.0.0.1", 0
    main, management = listeners(health, CollectorRegistry(), s, routes=[api_routes(ApiContext(s, pipeline))])
    main.start()
    if management is not None:
        management.start()
    try:
        yield main, management
    finally:
        main.stop(grace=2)
        if management is not None:
            management.stop(grace=1)


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# scope token label\nread {READ} crm-lookups\nwrite {WRITE} erasure-job\n")
    return path


# --------------------------------------------------------------------------------------------------- auth
def test_v1_needs_a_token_and_writes_need_the_write_scope(tokens: Path, pipe: Pipeline) -> None:
    with serving(settings_with(tokens), lambda: pipe) as (server, _):
        url = server.url
        status, headers, payload = request("POST", url + "/v1/score", PAIR)
        assert (status, error_code(payload)) == (401, "unauthorized")
        assert headers["WWW-Authenticate"].startswith("Bearer")  # case-insensitive look-up
        status, _, payload = request("POST", url + "/v1/score", PAIR, token="not-a-token-at-all-000")
        assert (status, error_code(payload)) == (401, "invalid_token")
        status, _, payload = request("POST", url + "/v1/score", PAIR, headers={"Authorization": f"Basic {READ}"})
        assert status == 401
        for token in (READ, WRITE):  # write implies read
            status, _, payload = request("POST", url + "/v1/score", PAIR, token=token)
            assert status == 200 and "fused" in json.loads(payload)
        status, _, payload = request("GET", url + "/v1/clusters/cl_1", token=READ)
        assert status == 503  # no state store here: past the auth check
        # A read token may not write (any non-read method under /v1, erasure included).
        status, _, payload = request("DELETE", url + "/v1/records/a1", token=READ)
        assert (status, error_code(payload)) == (403, "forbidden")
        status, _, payload = request("DELETE", url + "/v1/records/a1", token=WRITE)
        assert status == 503, payload  # authorised: the erasure reaches the (here missing) state store
        # The probes, /metrics and the OpenAPI document stay open: they carry no record data.
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert request("GET", url + path)[0] == 200, path


def test_tokens_rotate_without_restart_and_a_broken_file_keeps_the_last_good_set(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"read {READ}\n")
    now = [0.0]
    store = TokenStore(path, clock=lambda: now[0])
    assert store.match(READ) is not None and store.match(WRITE) is None
    path.write_text(f"read {READ}\nwrite {WRITE} new-writer\n")  # step 1 of a rotation: both valid
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    now[0] += 1.5
    assert store.match(WRITE) is not None and store.match(READ) is not None
    path.write_text(f"write {WRITE} new-writer\n")  # step 3: the old one removed
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    now[0] += 1.5
    assert store.match(READ) is None and store.match(WRITE).label == "new-writer"  # type: ignore[union-attr]
    path.write_text("write short\n")  # a typo mid-rotation must not lock everyone out
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))
    now[0] += 1.5
    assert store.match(WRITE) is not None


@pytest.mark.parametrize(("text", "message"), [
    ("read abc\n", "line 1: a token needs at least 16"),
    (f"# comment\nadmin {READ}\n", "line 2: scope must be read or write"),
    (f"read {READ} label extra\n", "line 1: expected"),
    (f"read {READ}\nwrite {READ}\n", "line 2: the same token appears twice"),
    ("# nothing\n", "holds no token"),
])
def test_a_bad_tokens_file_names_the_line_never_the_token(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_tokens(text)
    assert READ not in str(err.value) and "abc" not in str(err.value)


def test_serving_without_tokens_is_refused_unless_explicitly_off(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--port", "0", "--no-redis"]) == 2
    assert "api.tokens_file" in capsys.readouterr().err
    assert cli_main(["serve", "--port", "0", "--no-redis", "--tokens-file", str(tmp_path / "absent")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_scopes_of_requests() -> None:
    assert required_scope("GET", "/v1/clusters/x") == "read"
    assert required_scope("POST", "/v1/score") == "read"
    assert required_scope("POST", "/v1/records") == "write"
    assert required_scope("DELETE", "/v1/records/x") == "write"


# -------------------------------------------------------------------------------------------- probe suite
def test_probe_suite_answers_4xx_or_cuts_off_and_healthz_stays_fast(tokens: Path, pipe: Pipeline) -> None:
    """Slowloris, trickling clients, oversized and deep bodies, wrong types and charsets, random bytes,
    missing and wrong tokens: no 500, /healthz within 1 s throughout, threads and memory bounded."""
    limits = {"threads": 4, "idle_timeout_seconds": 2, "request_timeout_seconds": 2}
    with serving(settings_with(tokens, **limits), lambda: pipe) as (server, _):
        url, port = server.url, server.port
        threads_before, rss_before = threading.active_count(), rss_mb()
        slow: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                status, _, _ = request("GET", url + "/healthz", timeout=5)
                assert status == 200
                slow.append(time.perf_counter() - t0)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # 1. Slowloris: 200 connections that send half a request head, then nothing.
        half_open = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
        for s in half_open:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        wait_for(lambda: server.http is not None and server.http.open_connections >= 200, 10,
                 "200 connections open")
        assert threading.active_count() <= threads_before + 1, "idle connections must not hold threads"
        # 2. A client trickling a byte every 0.5 s is cut off by the request timeout (2 s) though never idle.
        trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        cut = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                trickle.sendall(bytes([byte]))
                time.sleep(0.5)
            except OSError:
                cut = True
                break
            if time.monotonic() - t0 > 8:
                break
        assert cut, "a trickling client must be cut off"
        assert time.monotonic() - t0 < 2 + 1 + 2  # timeout + maintenance interval + slack
        trickle.close()
        # Every half-open connection was closed by the server within its timeouts.
        wait_for(lambda: server.http is not None and server.http.open_connections <= 1, 6,
                 "half-open connections closed by the server")
        for s in half_open:
            s.settimeout(1)
            with contextlib.suppress(OSError):
                assert s.recv(1) == b""
            s.close()
        # 3. Bodies and heads a careless client or an attacker sends.
        cases = SEED_CASES  # the HTTP fuzzer starts from the same corpus (benchmarks/fuzz_http.py)
        for name, headers, raw, expected in cases:
            status, _, payload = request("POST", url + "/v1/score", token=READ, raw=raw, headers=headers)
            assert status in expected, (name, status, payload[:200])
            assert error_code(payload)
        # A Content-Length far above the limit is refused before the body is read (nothing is sent).
        answer = raw_exchange(port, b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Authorization: Bearer " + READ.encode()
                                    + b"\r\nContent-Length: 999999999\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        # A head larger than max_header_bytes.
        answer = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:80]
        # Random bytes: an error answer or a closed connection, never a 500.
        rng = random.Random(7)
        for _ in range(30):
            answer = raw_exchange(port, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))) + b"\r\n\r\n",
                                  timeout=4)
            assert not answer.startswith(b"HTTP/1.1 5"), answer[:80]
        # Tokens: missing, wrong, a read token writing.
        assert request("GET", url + "/v1/clusters/c", raw=None)[0] == 401
        assert request("GET", url + "/v1/clusters/c", token="x" * 40)[0] == 401
        assert request("PUT", url + "/v1/records/a1", PAIR["a"], token=READ)[0] == 403
        stop.set()
        watcher.join(10)
        assert slow and max(slow) < 1.0, f"/healthz took {max(slow):.2f}s at worst"
        assert threading.active_count() <= threads_before + 1
        assert rss_mb() - rss_before < 100, "memory must stay bounded"


def test_probes_answer_on_the_management_port_while_the_api_is_saturated(tokens: Path, pipe: Pipeline) -> None:
    release = threading.Event()

    def slow_pipeline() -> Pipeline:
        release.wait(20)
        return pipe

    port = _free_port()
    s = settings_with(tokens, threads=2, management_port=port)
    with serving(s, slow_pipeline) as (server, management):
        assert management is not None
        busy = [threading.Thread(target=request, args=("POST", server.url + "/v1/score", PAIR, READ),
                                 kwargs={"timeout": 30}, daemon=True) for _ in range(4)]
        for t in busy:
            t.start()
        time.sleep(0.5)  # both API threads are now blocked, two requests queued
        t0 = time.perf_counter()
        assert request("GET", management.url + "/healthz", timeout=2)[0] == 200
        assert request("GET", management.url + "/metrics", timeout=2)[0] == 200
        assert time.perf_counter() - t0 < 1.0
        assert request("GET", management.url + "/v1/score", timeout=2)[0] == 404  # the API is not served there
        release.set()
        for t in busy:
            t.join(30)


def test_stop_lets_an_in_flight_request_finish_and_refuses_new_ones(pipe: Pipeline) -> None:
    started = threading.Event()

    def slow_pipeline() -> Pipeline:
        started.set()
        time.sleep(1.0)
        return pipe

    s = settings_with(None)
    s.service.http_host, s.service.http_port = "127.0.0.1", 0
    health = HealthState(float("inf"))
    server, _ = listeners(health, CollectorRegistry(), s, routes=[api_routes(ApiContext(s, slow_pipeline))])
    server.start()
    url, port = server.url, server.port
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(request("POST", url + "/v1/score", PAIR)[0]), daemon=True)
    t.start()
    assert started.wait(10)
    server.stop(grace=5)
    t.join(10)
    assert result == [200], "the in-flight request must finish"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_limits_come_from_settings() -> None:
    s = load_settings(env={"DEDUP_API__THREADS": "3", "DEDUP_API__REQUEST_TIMEOUT_SECONDS": "4",
                           "DEDUP_API__AUTH": "off"})
    limits = ServerLimits.from_settings(s.api, 1000)
    assert (limits.threads, limits.request_timeout_seconds, limits.max_body_bytes) == (3, 4, 1000)
    with pytest.raises(ConfigError, match="api.threads"):
        load_settings(env={"DEDUP_API__THREADS": "0"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_bounded_http_fuzz_run_finds_no_5xx(tmp_path: Path) -> None:
    """`benchmarks/fuzz_http.py`: mutants of the probe corpus and of valid requests (flipped bytes, cut
    requests, odd lengths, methods, paths and headers) never get a 5xx; /healthz stays under 1 s."""
    import subprocess

    run = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_http.py"),
                          "--cases", "300", "--seconds", "60", "--keep", str(tmp_path / "failures")],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["cases"] >= 100 and summary["failures"] == 0, summary
