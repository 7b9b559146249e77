"""The HTTP server under the probes, /metrics and the /v1 API: waitress, with every resource bounded.

Why waitress: it is maintained, pure Python (no compiler, no second process), and its event loop buffers a
request until it has fully arrived before a worker thread sees it. A slow or idle client therefore costs a
socket, not a thread: the standard library's server this replaces held one thread per connection, so 200
half-open connections held 203 threads, and a handful of slow clients could stall a pod until its
liveness probe killed it. A process-per-worker server (gunicorn) does not fit either: `dedup run`
serves the API from the process that holds the pipeline and its index.

Bounds (`ApiSettings`): worker threads, open connections, header size, body size (checked against
Content-Length before the body is read), an idle timeout, and a request timeout that waitress lacks
(a client trickling one byte a second would otherwise keep a connection for ever): here a request's
head and body must arrive within `request_timeout_seconds` of its first byte.

`stop()` is graceful: it stops accepting, lets in-flight requests finish (up to `grace` seconds), then
closes every connection.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

__all__ = ["ServerLimits", "HttpServer"]

log = logging.getLogger("dedup.http")


@dataclass(frozen=True)
class ServerLimits:
    """What one listener may use (see `consumer.config.ApiSettings` for the meaning of each)."""

    threads: int = 8
    connection_limit: int = 1000
    idle_timeout_seconds: int = 30
    request_timeout_seconds: int = 10
    max_header_bytes: int = 16384
    #: Bodies larger than this are refused (413) before they are read; the app's own limits are smaller
    #: and answer in JSON, this one caps what a connection may buffer.
    max_body_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_settings(cls, api: Any, max_body_bytes: int, threads: int | None = None) -> ServerLimits:
        return cls(threads=threads or api.threads, connection_limit=api.connection_limit,
                   idle_timeout_seconds=api.idle_timeout_seconds,
                   request_timeout_seconds=api.request_timeout_seconds,
                   max_header_bytes=api.max_header_bytes, max_body_bytes=max_body_bytes)


class _Channel(HTTPChannel):
    """Remembers when the request now arriving sent its first byte (for the request timeout)."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return bool(super().received(data))


class _Server(TcpWSGIServer):
    channel_class = _Channel
    request_timeout = 10.0
    timed_out = 0

    def maintenance(self, now: float) -> None:
        """Waitress closes idle connections; this also closes those whose request is too slow to arrive."""
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in list(self.active_channels.values()):
            if channel.request is not None and not channel.requests and channel.request_started < cutoff \
                    and not channel.will_close:
                channel.will_close = True
                self.timed_out += 1
                log.debug("http request timed out before it arrived")


class HttpServer:
    """One listener serving a WSGI app from a background thread; `port=0` binds a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, name: str = "http") -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.limits = limits or ServerLimits()
        self.name = name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpServer not started")
        return int(self._server.effective_port)

    @property
    def open_connections(self) -> int:
        """Client connections open now (the listener and the loop's wake-up socket are not counted)."""
        return 0 if self._server is None else len(self._server.active_channels)

    @property
    def timed_out_requests(self) -> int:
        """Connections closed because their request did not arrive within the request timeout."""
        return 0 if self._server is None else self._server.timed_out

    def start(self) -> HttpServer:
        """Bind and serve in the background; OSError if the port is taken."""
        if self._server is not None:
            return self
        lim = self.limits
        adj = Adjustments(host=self.host, port=self.requested_port, threads=lim.threads,
                          connection_limit=lim.connection_limit, channel_timeout=lim.idle_timeout_seconds,
                          cleanup_interval=1, max_request_header_size=lim.max_header_bytes,
                          max_request_body_size=lim.max_body_bytes, asyncore_use_poll=True,
                          asyncore_loop_timeout=1, backlog=1024, ident="dedup-stream", expose_tracebacks=False,
                          log_socket_errors=False, clear_untrusted_proxy_headers=True)
        self._sockets: dict[int, Any] = {}  # waitress's socket map: every socket its loop serves
        server = _Server(self.app, map=self._sockets, adj=adj)
        server.request_timeout = float(lim.request_timeout_seconds)
        self._server = server
        self._thread = threading.Thread(target=self._run, args=(server,), name=f"{self.name}-loop", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _run(server: _Server) -> None:
        try:
            server.run()
        except Exception as exc:  # noqa: BLE001 - the loop's end is logged, never raised into a thread
            log.debug("http loop ended", extra={"error": type(exc).__name__})

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` s), close everything (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.accepting = False  # the loop stops calling accept() on its next pass
        dispatcher = server.task_dispatcher
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (dispatcher.active_count or dispatcher.queue):
            time.sleep(0.02)
        time.sleep(0.05)  # let the loop flush the responses those requests wrote
        previous = server.logger.level
        server.logger.setLevel(logging.CRITICAL)  # closing live sockets from here makes waitress chatty
        try:
            for _ in range(3):  # a closed object leaves the map; three passes catch late arrivals
                for fd, obj in list(self._sockets.items()):
                    try:
                        obj.handle_close()
                    except Exception:  # noqa: BLE001 - a socket already gone
                        self._sockets.pop(fd, None)
            dispatcher.shutdown(timeout=1)
        finally:
            server.logger.setLevel(previous)
            wasyncore.close_all(self._sockets)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
