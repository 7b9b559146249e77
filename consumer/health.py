"""Liveness, readiness and metrics over a tiny stdlib HTTP server (no web framework in the image).

- `/healthz` (liveness): 200 while the poll loop made progress within `stall_seconds`. A wedged loop (a
  deadlock, a native call that never returns) keeps the process alive but useless; failing liveness lets
  Kubernetes restart it. Slow dependencies must NOT fail liveness: restarting does not fix Redis.
- `/readyz` (readiness): 200 when partitions are assigned, the index is loaded and every dependency the
  service reported is reachable. A replica without partitions (more replicas than partitions, or during
  a rebalance) is alive but not ready.
- `/metrics`: Prometheus text format of the service's registry.

Bodies are small JSON documents built only from flags, durations, dependency names and the short detail
strings the service passes in (error codes, never record contents).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthState", "HealthServer", "DependencyStatus"]

log = logging.getLogger(__name__)
_MAX_DETAIL_CHARS = 200


class _GaugeLike(Protocol):
    def set(self, value: float) -> None: ...


@dataclass(frozen=True)
class DependencyStatus:
    """Last reported reachability of one dependency (e.g. "redis", "kafka")."""

    ok: bool
    detail: str
    since: float


class HealthState:
    """Thread-safe flags the poll loop updates and the HTTP threads read.

    `required_dependencies` must each have been reported ok before the service is ready (so a service
    that never managed to talk to Redis is not ready); any other reported dependency blocks readiness
    only while it is reported down.
    """

    def __init__(
        self,
        stall_seconds: float = 30.0,
        *,
        required_dependencies: Iterable[str] = (),
        ready_gauge: _GaugeLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_seconds = stall_seconds
        self.required = tuple(required_dependencies)
        self._gauge = ready_gauge
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()  # start-up counts as progress: the first poll may take a while
        self._beats = 0
        self._assigned = False
        self._index_loaded = False
        self._deps: dict[str, DependencyStatus] = {}

    def beat(self) -> None:
        """Call once per poll-loop iteration (also when the poll returned nothing)."""
        with self._lock:
            self._last_beat = self._clock()
            self._beats += 1

    def set_assigned(self, assigned: bool) -> None:
        """Whether this member currently owns at least one partition."""
        with self._lock:
            self._assigned = assigned
        self._publish()

    def set_index_loaded(self, loaded: bool) -> None:
        """Whether the candidate index/cluster state has been restored and can answer queries."""
        with self._lock:
            self._index_loaded = loaded
        self._publish()

    def set_dependency(self, name: str, ok: bool, detail: str = "") -> None:
        """Report a dependency's reachability; `detail` is an error code/class name, never record data."""
        with self._lock:
            previous = self._deps.get(name)
            since = previous.since if previous is not None and previous.ok == ok else self._clock()
            self._deps[name] = DependencyStatus(ok, detail[:_MAX_DETAIL_CHARS], since)
        self._publish()

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(alive, body): alive while the last beat is younger than stall_seconds."""
        with self._lock:
            age = self._clock() - self._last_beat
            beats = self._beats
        alive = age <= self.stall_seconds
        body: dict[str, Any] = {"status": "ok" if alive else "stalled", "beats": beats,
                                "seconds_since_progress": round(age, 3), "stall_seconds": self.stall_seconds}
        if not alive:
            body["reason"] = f"poll loop made no progress for {age:.1f}s (limit {self.stall_seconds:g}s)"
        return alive, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) with one human-readable reason per unmet condition."""
        with self._lock:
            assigned, loaded, deps = self._assigned, self._index_loaded, dict(self._deps)
            now = self._clock()
        reasons: list[str] = []
        if not assigned:
            reasons.append("no partitions assigned")
        if not loaded:
            reasons.append("index not loaded")
        for name in self.required:
            if name not in deps:
                reasons.append(f"{name}: not checked yet")
        for name, dep in sorted(deps.items()):
            if not dep.ok:
                detail = f" ({dep.detail})" if dep.detail else ""
                reasons.append(f"{name}: unreachable for {now - dep.since:.1f}s{detail}")
        ready = not reasons
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "reasons": reasons,
            "assigned": assigned,
            "index_loaded": loaded,
            "dependencies": {n: {"ok": d.ok, "detail": d.detail} for n, d in sorted(deps.items())},
        }
        if self._gauge is not None:
            self._gauge.set(1.0 if ready else 0.0)
        return ready, body

    def _publish(self) -> None:
        if self._gauge is not None:
            self.readiness()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, body = self.server.state.liveness()
                self._json(200 if ok else 503, body)
            elif path == "/readyz":
                ok, body = self.server.state.readiness()
                self._json(200 if ok else 503, body)
            else:
                self._json(404, {"status": "not found", "paths": ["/healthz", "/readyz", "/metrics"]})
        except Exception:  # a probe must get an answer; the traceback goes to the log, not the body
            log.exception("health endpoint %s failed", path)
            self._json(500, {"status": "error"})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._send(code, json.dumps(body, sort_keys=True).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: HealthState, registry: CollectorRegistry) -> None:
        self.state = state
        self.registry = registry
        super().__init__(address, _Handler)


class HealthServer:
    """Serves the three endpoints from a daemon thread; `port=0` binds a free port (see `.port`)."""

    def __init__(self, state: HealthState, registry: CollectorRegistry, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state
        self.registry = registry
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (only meaningful after start())."""
        if self._server is None:
            raise RuntimeError("HealthServer not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Bind and serve in the background; raises OSError if the port is taken."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.requested_port), self.state, self.registry)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="health-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
