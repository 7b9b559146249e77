"""Liveness, readiness and metrics (and, beside them, the /v1 API) over HTTP.

The app is Falcon (no dependencies of its own) on a bounded waitress server (`consumer.api.server`): one
port serves the probes, the metrics and the API (`consumer.api.app` adds its routes); a second, optional
port (`api.management_port`) serves only the probes and the metrics with threads of their own, so they
answer while the API is saturated.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.api.server import HttpServer, ServerLimits

__all__ = ["HealthState", "HealthServer", "DependencyStatus", "make_app", "json_response", "listeners"]

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


class _Liveness:
    def __init__(self, state: HealthState) -> None:
        self.state = state

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        ok, body = self.state.liveness()
        json_response(resp, 200 if ok else 503, body)


class _Readiness(_Liveness):
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        ok, body = self.state.readiness()
        json_response(resp, 200 if ok else 503, body)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = generate_latest(self.registry)
        resp.content_type = CONTENT_TYPE_LATEST


def json_response(resp: falcon.Response, status: int, body: Any) -> None:
    """A JSON body with a numeric status (the one encoding every endpoint here uses)."""
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body, sort_keys=True)


class _NoStore:
    """Probes, metrics and API answers describe a moment: no cache may keep them."""

    def process_response(self, _req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _req_succeeded: bool) -> None:
        resp.set_header("Cache-Control", "no-store")


class _AccessLog:
    """One DEBUG line per request: method, route template (never the path: ids in it are data), status,
    milliseconds, and the token's label when one was used."""

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        req.context.http_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _req_succeeded: bool) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        started = getattr(req.context, "http_started", None)
        log.debug("http request", extra={
            "method": req.method, "route": req.uri_template or "(none)", "status": resp.status_code,
            "ms": round((time.perf_counter() - started) * 1000, 2) if started is not None else None,
            "token": getattr(req.context, "token_label", None)})


def _error_body(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every error is JSON `{"error": code, "message": text}` whatever the client accepts (a 404 for an
    unknown path lists the paths that exist)."""
    status = str(exc.status)  # e.g. "405 Method Not Allowed" when Falcon raised it with no title of ours
    code = exc.title if exc.title and " " not in exc.title else status.partition(" ")[2].lower().replace(" ", "_")
    message = exc.description or status
    if isinstance(exc, falcon.HTTPMethodNotAllowed):
        message = f"{req.method} is not allowed here; allowed: {resp.get_header('Allow') or exc.headers.get('Allow')}"
    body: dict[str, Any] = {"error": code or "error", "message": message}
    body.update(getattr(exc, "extra", None) or {})
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body, sort_keys=True)


def _unexpected(req: falcon.Request, _resp: falcon.Response, exc: Exception, _params: dict[str, Any]) -> None:
    """A bug must still get an answer: 500 with no detail, and a log line with the exception's type and
    where it was raised, never its message (messages can quote the values being processed)."""
    if isinstance(exc, falcon.HTTPError):
        raise exc
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    log.error("http handler failed", extra={"path": req.path, "error": type(exc).__name__, "at": where})
    raise falcon.HTTPInternalServerError(title="internal_error", description="the server failed to answer; "
                                         "see its log") from None


#: Adds routes to the app and returns the URI templates it added (listed in 404 answers).
RouteAdder = Callable[[falcon.App], Iterable[str]]


def make_app(state: HealthState, registry: CollectorRegistry, routes: Sequence[RouteAdder] = ()) -> falcon.App:
    """The WSGI app: /healthz, /readyz, /metrics, plus whatever `routes` add (the /v1 API)."""
    app = falcon.App(middleware=[_NoStore(), _AccessLog()])
    app.req_options.strip_url_path_trailing_slash = True
    paths = ["/healthz", "/readyz", "/metrics"]
    app.add_route("/healthz", _Liveness(state))
    app.add_route("/readyz", _Readiness(state))
    app.add_route("/metrics", _Metrics(registry))
    for add in routes:
        paths.extend(add(app))
    app.add_error_handler(Exception, _unexpected)

    def not_found(req: falcon.Request, _resp: falcon.Response, _exc: Exception, _params: dict[str, Any]) -> None:
        err = falcon.HTTPNotFound(title="not_found", description=f"no endpoint at {req.path}")
        err.extra = {"paths": paths}  # type: ignore[attr-defined]
        raise err

    app.add_error_handler(falcon.HTTPRouteNotFound, not_found)
    app.set_error_serializer(_error_body)
    return app


class HealthServer:
    """Serves the three endpoints (plus `routes`) from background threads; `port=0` binds a free port."""

    def __init__(self, state: HealthState, registry: CollectorRegistry, host: str = "127.0.0.1",
                 port: int = 0, routes: Sequence[RouteAdder] = (), limits: ServerLimits | None = None,
                 name: str = "http") -> None:
        self.state = state
        self.registry = registry
        self.routes = list(routes)
        self.host = host
        self.requested_port = port
        self.limits = limits
        self.name = name
        self._server: HttpServer | None = None

    @property
    def port(self) -> int:
        """The bound port (only meaningful after start())."""
        if self._server is None:
            raise RuntimeError("HealthServer not started")
        return self._server.port

    @property
    def http(self) -> HttpServer | None:
        """The listener (connection counts for tests and benchmarks)."""
        return self._server

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Bind and serve in the background; raises OSError if the port is taken."""
        if self._server is not None:
            return self
        app = make_app(self.state, self.registry, self.routes)
        self._server = HttpServer(app, self.host, self.requested_port, self.limits, self.name).start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` s), release the port (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: What a probe or metrics request may send: nothing (a GET). Caps what the management listener buffers.
_MANAGEMENT_MAX_BODY = 64 * 1024


def listeners(state: HealthState, registry: CollectorRegistry, settings: Any,
              routes: Sequence[RouteAdder] = ()) -> tuple[HealthServer, HealthServer | None]:
    """The main listener (`service.http_host:http_port`: probes, metrics and `routes`) with the `api`
    settings' bounds, and the management listener (probes and metrics only, two threads of its own) when
    `api.management_port` is set. Not started."""
    svc, api = settings.service, settings.api
    # Above the API's own JSON 413 (two records at their limit plus the envelope): this one only caps what a
    # connection may buffer before the app sees it.
    max_body = 2 * settings.limits.max_record_bytes + 4096 + 1024 * 1024
    main = HealthServer(state, registry, svc.http_host, svc.http_port, routes,
                        ServerLimits.from_settings(api, max_body), "http")
    management = None
    if api.management_port:
        management = HealthServer(state, registry, svc.http_host, api.management_port, (),
                                  ServerLimits.from_settings(api, _MANAGEMENT_MAX_BODY, threads=2), "management")
    return main, management
