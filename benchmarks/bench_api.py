"""Benchmark the HTTP API: `POST /v1/score` throughput and latency, old server vs new, and slow clients.

    python benchmarks/bench_api.py                    # both servers, 300 requests, 500 half-open connections
    python benchmarks/bench_api.py --server new --half-open 0

Starts the API in-process on a free port (the same Falcon app `dedup serve` builds, scoring-only: no Redis,
with bearer tokens on) and prints one JSON object:

- `throughput`: for each server, generated CRM pairs (true duplicates and random pairs alike) scored
  sequentially and by `--clients` concurrent clients; each request opens a connection, which is part of
  what is measured. `old` is the standard library's threaded WSGI server the API ran on before (a thread
  per connection, reproduced here since the product no longer ships it); `new` is `consumer.api.server`
  (waitress). The two rounds alternate (old, new, old, new) so that drift on a shared machine hits both.
- `half_open` (new server, and the old one for contrast): `--half-open` connections each send half a
  request head and then nothing. Reported: the server's threads while they hang (the new server should stay
  at `api.threads` + its loop), how long the server takes to close them (bounded by
  `--request-timeout`), and a normal client's `/v1/score` latency meanwhile (p99 target: < 100 ms).

Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import platform
import random
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-" + "0123456789abcdef" * 2


class _OldServer(ThreadingMixIn, WSGIServer):
    """The server `consumer.api.health` used before: a daemon thread per connection, no timeouts."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def old_server(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_OldServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def new_server(app: Any, limits: Any) -> Iterator[str]:
    from consumer.api.server import HttpServer

    server = HttpServer(app, "127.0.0.1", 0, limits, "bench").start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop(grace=1)


def score_once(url: str, body: bytes) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/v1/score", data=body, headers={"Content-Type": "application/json",
                                                                        "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter() - t0


def summary(lat: list[float], wall: float | None = None) -> dict[str, float]:
    lat = sorted(lat)
    out = {"p50_ms": round(statistics.median(lat) * 1000, 2),
           "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2),
           "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 2), "max_ms": round(lat[-1] * 1000, 2)}
    if wall is not None:
        out = {"requests_per_s": round(len(lat) / wall, 1), **out}
    return out


def throughput(url: str, bodies: list[bytes], clients: int) -> dict[str, Any]:
    for body in bodies[:10]:  # warm-up: caches, OpenMP pools
        score_once(url, body)
    out: dict[str, Any] = {}
    for label, n in (("sequential", 1), (f"concurrent_{clients}", clients)):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            lat = list(pool.map(lambda b: score_once(url, b), bodies))
        out[label] = summary(lat, time.perf_counter() - t0)
    return out


def half_open(url: str, connections: int, bodies: list[bytes], threads_before: int,
              wait_close: float) -> dict[str, Any]:
    """Open `connections` sockets that send half a request head, score meanwhile, time their closing."""
    port = int(url.rsplit(":", 1)[1])
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    refused = 0
    for _ in range(connections):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n")
        except OSError:
            refused += 1
            continue
        s.setblocking(False)
        opened[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    time.sleep(0.5)
    threads_holding = threading.active_count() - threads_before
    lat = [score_once(url, b) for b in bodies]
    closed_after: list[float] = []
    deadline = time.monotonic() + wait_close
    while opened and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data or b"\r\n\r\n" in data:  # closed, or an error answer then closed
                closed_after.append(time.monotonic() - opened.pop(s))
                sel.unregister(s)
                s.close()
    for s in list(opened):
        sel.unregister(s)
        s.close()
    return {"connections": connections, "connect_failed": refused, "server_threads_while_held": threads_holding,
            "closed_by_server": len(closed_after), "still_open_after_s": {str(wait_close): len(opened)},
            "close_after_s": {"min": round(min(closed_after), 2), "max": round(max(closed_after), 2)}
            if closed_after else None,
            "score_meanwhile": summary(lat)}


def cpu_model() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
        flags = next((ln for ln in out.splitlines() if ln.startswith("Flags")), "")
        return f"{model}; avx512f={'avx512f' in flags}; avx512_vnni={'avx512_vnni' in flags}"
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients in the second round")
    ap.add_argument("--server", choices=["old", "new", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per server")
    ap.add_argument("--half-open", type=int, default=500, help="half-open connections (0: skip)")
    ap.add_argument("--threads", type=int, default=8, help="api.threads of the new server")
    ap.add_argument("--request-timeout", type=int, default=5, help="api.request_timeout_seconds (new server)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes
    from consumer.api.health import HealthState, make_app
    from consumer.api.server import ServerLimits
    from consumer.config import load_settings
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crm.csv"
        write_crm(path, Path(tmp) / "truth.csv", 1000, args.seed)
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"read {TOKEN} bench\n")
        rng = random.Random(args.seed)
        bodies = [json.dumps({"a": rng.choice(rows), "b": rng.choice(rows)}).encode()
                  for _ in range(args.requests)]
        settings = load_settings(env={"DEDUP_API__AUTH": "tokens", "DEDUP_API__TOKENS_FILE": str(tokens)})
        pipe = build_pipeline(settings)
        health = HealthState(float("inf"))
        app = make_app(health, CollectorRegistry(), [api_routes(ApiContext(settings, lambda: pipe))])
        limits = ServerLimits(threads=args.threads, request_timeout_seconds=args.request_timeout)
        servers: dict[str, Callable[[], Any]] = {"old": lambda: old_server(app),
                                                 "new": lambda: new_server(app, limits)}
        names = ["old", "new"] if args.server == "both" else [args.server]
        out: dict[str, Any] = {"cpu": cpu_model(), "requests": args.requests, "clients": args.clients,
                               "new_server_threads": args.threads, "throughput": {n: [] for n in names}}
        for _ in range(args.rounds):
            for name in names:
                with servers[name]() as url:
                    out["throughput"][name].append(throughput(url, bodies, args.clients))
        if args.half_open:
            out["half_open"] = {}
            for name in names:
                before = threading.active_count()
                # the old server never closes them: give it 2 s to show that, the new one its timeout + 3 s
                wait = 2.0 if name == "old" else args.request_timeout + 3.0
                with servers[name]() as url:
                    out["half_open"][name] = half_open(url, args.half_open, bodies[:200], before, wait)
        pipe.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
