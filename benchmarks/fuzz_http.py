"""Bounded fuzz run over HTTP requests to the /v1 API: never a 5xx, /healthz always within 1 s.

    python benchmarks/fuzz_http.py --cases 3000 --seconds 300

Starts the API in-process on a free port (tokens on, the same app and server `dedup serve` runs), then
sends `--cases` requests, each a mutant of one of `SEED_CASES` (the probe suite's cases: deep nesting,
wrong content types and charsets, oversized bodies, wrong field types, random bytes, missing, wrong and
under-scoped tokens) or of a valid scoring request: byte flips, truncation, duplicated or dropped header
lines, another method or path, another Content-Length, another token. Checked for every case:

- the answer is a 2xx/4xx (or the server closes the connection), never a 5xx or a hang past the timeout;
- a watcher's `GET /healthz` answers within 1 s throughout;
- the server's threads stay at its bound and its memory grows by less than 100 MB.

Prints one JSON object with the counts per status; exits 1 if any check failed (failing requests are
written under --keep).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READ = "r" * 8 + "0123456789abcdef"
WRITE = "w" * 8 + "fedcba9876543210"
PAIR = {"a": {"customer_id": "a1", "name": "Ann Lee", "city": "Lisbon"},
        "b": {"customer_id": "b1", "name": "Anne Lee", "city": "Lisbon"}}

#: (name, extra headers, body, the statuses a correct server answers) for `POST /v1/score` with a read token.
SEED_CASES: list[tuple[str, dict[str, str], bytes, set[int]]] = [
    ("deep", {}, b'{"a":' + b"[" * 300 + b"]" * 300 + b',"b":{}}', {400}),
    ("deep-256", {}, b'{"a":' + b"[" * 256 + b"]" * 256 + b',"b":{}}', {400}),
    ("not json", {}, b"\xff\xfe not json", {400}),
    ("empty", {}, b"", {400}),
    ("form", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", {415}),
    ("text", {"Content-Type": "text/plain"}, b"{}", {415}),
    ("latin-1", {"Content-Type": "application/json; charset=latin-1"}, b'{"a":{}}', {415}),
    ("numbers", {}, json.dumps({"a": {"customer_id": "1", "name": 7, "city": "x"}, "b": PAIR["b"]}).encode(),
     {400}),
    ("huge", {}, b"{" * 300_000, {413}),
]


def http_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def seed_requests() -> list[bytes]:
    """The probe suite's cases, a valid request with each kind of token, and the methods/paths of /v1."""
    json_ct = {"Content-Type": "application/json"}
    out = [http_request("POST", "/v1/score", body, {**json_ct, "Authorization": f"Bearer {READ}", **extra})
           for _name, extra, body, _ok in SEED_CASES]
    valid = json.dumps(PAIR).encode()
    for auth in ("", f"Bearer {READ}", f"Bearer {WRITE}", "Bearer " + "x" * 40, "Basic dXNlcjpwYXNz", "Bearer"):
        headers = {**json_ct, **({"Authorization": auth} if auth else {})}
        out.append(http_request("POST", "/v1/score", valid, headers))
        out.append(http_request("GET", "/v1/clusters/cl_1", b"", headers))
        out.append(http_request("GET", "/v1/records/a1/cluster?limit=3", b"", headers))
        out.append(http_request("PUT", "/v1/records/a1", valid, headers))
        out.append(http_request("DELETE", "/v1/records/a1", b"", headers))
    out.append(http_request("GET", "/healthz", b"", {}))
    out.append(http_request("GET", "/openapi.json", b"", {}))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of a few edits a careless client or an attacker makes to a request's bytes."""
    kind = rng.randrange(8)
    if kind == 0 and data:  # flip bytes anywhere (head or body)
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if kind == 1:  # truncate: the server waits for the rest, then times out
        return data[:rng.randrange(len(data) + 1)]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if kind == 2 and len(lines) > 1:  # drop a header line
        del lines[rng.randrange(1, len(lines))]
    elif kind == 3 and len(lines) > 1:  # repeat one
        lines.insert(rng.randrange(1, len(lines)), lines[rng.randrange(1, len(lines))])
    elif kind == 4:  # another Content-Length (shorter, longer, negative, junk)
        value = rng.choice([b"0", b"-1", b"abc", b"99999999999", str(len(body) + rng.randint(-5, 50)).encode()])
        lines = [ln for ln in lines if not ln.lower().startswith(b"content-length")] + [b"Content-Length: " + value]
    elif kind == 5:  # another method or path
        method = rng.choice([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"BREW"])
        path = rng.choice([b"/v1/score", b"/v1/clusters/" + b"%" * rng.randint(1, 5), b"/v1/records//cluster",
                           b"/../etc/passwd", b"/v1/score?" + b"a=1&" * 200, b"*", b"/" + b"a" * 5000])
        lines[0] = b" ".join([method, path, b"HTTP/1.1"])
    elif kind == 6:  # a long or binary header
        lines.insert(1, b"X-Fuzz: " + bytes(rng.randrange(32, 256) for _ in range(rng.randrange(1, 20000))))
    else:  # random bytes in place of the body
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(port: int, data: bytes, timeout: float = 5, half_close: bool = True) -> bytes:
    """Send bytes on a fresh connection, read until the server closes it (or the timeout). `half_close`
    also ends the sending side, so a cut request ends at once instead of waiting for the request timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", type=Path, default=Path("fuzz-http-failures"))
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes
    from consumer.api.health import HealthState, listeners
    from consumer.config import load_settings
    from consumer.io.artifacts import build_pipeline

    rng = random.Random(args.seed)
    seeds = seed_requests()
    failures: list[tuple[str, bytes]] = []
    statuses: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"read {READ} fuzz-read\nwrite {WRITE} fuzz-write\n")
        s = load_settings(env={"DEDUP_API__AUTH": "tokens", "DEDUP_API__TOKENS_FILE": str(tokens),
                               "DEDUP_API__THREADS": "4", "DEDUP_API__REQUEST_TIMEOUT_SECONDS": "2",
                               "DEDUP_API__IDLE_TIMEOUT_SECONDS": "2"})
        s.service.http_host, s.service.http_port = "127.0.0.1", 0
        pipe = build_pipeline(s)
        health = HealthState(float("inf"))
        health.set_assigned(True)
        health.set_index_loaded(True)
        server, _ = listeners(health, CollectorRegistry(), s, routes=[api_routes(ApiContext(s, lambda: pipe))])
        server.start()
        threads_before, rss_before = threading.active_count(), rss_mb()
        probe_worst = [0.0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                answer = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 5)
                elapsed = time.perf_counter() - t0
                probe_worst[0] = max(probe_worst[0], elapsed)
                if not answer.startswith(b"HTTP/1.1 200"):
                    failures.append(("healthz", answer[:200]))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        deadline = time.monotonic() + args.seconds
        sent = 0
        try:
            while sent < args.cases and time.monotonic() < deadline:
                data = rng.choice(seeds)
                if rng.random() < 0.85:
                    data = mutate(rng, data)
                answer = exchange(server.port, data, timeout=6)
                sent += 1
                status = answer[9:12].decode("latin-1") if answer.startswith(b"HTTP/1.") else "closed"
                statuses[status] += 1
                if status.startswith("5") and status != "503":
                    failures.append((f"status {status}", data))
        finally:
            stop.set()
            watcher.join(10)
            threads_after, rss_after = threading.active_count(), rss_mb()
            server.stop(grace=1)
            pipe.close()
    if probe_worst[0] >= 1.0:
        failures.append((f"/healthz took {probe_worst[0]:.2f}s", b""))
    if threads_after > threads_before + 1:  # the watcher may be between requests
        failures.append((f"threads grew {threads_before} -> {threads_after}", b""))
    if rss_after - rss_before >= 100:
        failures.append((f"memory grew {rss_after - rss_before:.0f} MB", b""))
    if failures:
        args.keep.mkdir(parents=True, exist_ok=True)
        for i, (_why, data) in enumerate(failures[:50]):
            (args.keep / f"case-{i}.bin").write_bytes(data)
    print(json.dumps({"cases": sent, "statuses": dict(sorted(statuses.items())), "failures": len(failures),
                      "failure_reasons": sorted({why for why, _ in failures})[:10],
                      "healthz_worst_ms": round(probe_worst[0] * 1000, 1),
                      "threads_before_after": [threads_before, threads_after],
                      "rss_growth_mb": round(rss_after - rss_before, 1)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
