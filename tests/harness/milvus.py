"""Milvus side of the harness: a real standalone Milvus server for the Milvus index tests.

`milvus_uri()` order: $MILVUS_URI (a server someone runs, e.g. the Milvus Helm chart or docker image); else
a throw-away server started here from the `milvus` wheel (the real Milvus 2.3 standalone binary with
embedded etcd and local storage, Linux x86_64; ~7-12 s to start), in its own data dir on free ports, and
stopped at the end of the session. Never milvus-lite alone: the index's consistency, delete and compaction
behaviour is the server's. Tests share the server and isolate themselves by collection name.

Why not skip silently: `OwnedMilvus.start` raises with the server's log tail, and the fixture turns that
into a skip with that message, so a machine without the wheel says why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .kafka import free_port, port_open

__all__ = ["ENV_MILVUS_URI", "OwnedMilvus", "RECOMMENDED_CONFIG", "milvus_uri", "stop_fallback_milvus"]

ENV_MILVUS_URI = "MILVUS_URI"
#: The server settings docs/deployment.md recommends (the interim index of growing segments searched wider:
#: with the default nprobe 16 a member's stream lost 0.016 F1 at 100k records), applied to every server
#: started here unless overridden.
RECOMMENDED_CONFIG: dict[str, Any] = {"queryNode.segcore.interimIndex.nprobe": 64}

_fallback: OwnedMilvus | None = None
_fallback_lock = threading.Lock()


class OwnedMilvus:
    """A Milvus standalone process this test session owns (the `milvus` wheel's bundled server)."""

    def __init__(self, data_dir: str | Path | None = None, startup_timeout: float = 120.0,
                 config: dict[str, Any] | None = None) -> None:
        """`config`: server settings by dotted milvus.yaml key, over `RECOMMENDED_CONFIG`, e.g.
        {"queryNode.segcore.interimIndex.enableIndex": False}."""
        self.config = {**RECOMMENDED_CONFIG, **(config or {})}
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="milvus-"))
        self.startup_timeout = startup_timeout
        self.port = 0
        self._server: Any = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def start(self) -> OwnedMilvus:
        """Start and wait until the proxy answers (the wheel polls /healthz, then we check the port)."""
        try:
            from milvus import MilvusServer
        except ImportError as exc:
            raise RuntimeError("the `milvus` wheel is not installed (pip install 'dedup-stream[milvus]')") from exc
        last: Exception | None = None
        for _attempt in range(2):  # a free port may be taken between picking and binding it
            server = MilvusServer()
            server.set_base_dir(str(self.data_dir))
            self.port = free_port()
            server.listen_port = self.port
            for key, value in self.config.items():
                server.config.set(key, str(value).lower() if isinstance(value, bool) else value)
            self._server = server
            try:
                server.start()
                deadline = time.monotonic() + self.startup_timeout
                while not port_open("127.0.0.1", self.port):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Milvus proxy not listening on {self.port}")
                    time.sleep(0.1)
                return self
            except (RuntimeError, TimeoutError, OSError) as exc:
                last = exc
                self.stop()
        raise RuntimeError(f"Milvus did not start: {last}\n{self.logs_tail()}")

    def stop(self) -> None:
        """Terminate the server (the wheel kills it after 1 s) and wait for it; then remove the marker file
        the binary writes outside its data dir (/tmp/milvus/server_id_<pid>), ours only."""
        server, self._server = self._server, None
        if server is None:
            return
        pid = server.server_proc.pid if server.server_proc is not None else None
        server.stop()
        if pid is not None:
            Path(tempfile.gettempdir(), "milvus", f"server_id_{pid}").unlink(missing_ok=True)

    def logs_tail(self, lines: int = 30) -> str:
        """Last lines of the server's stderr log, for failure messages."""
        path = self.data_dir / "logs" / "milvus-stderr.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop and remove the data dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> OwnedMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def milvus_uri() -> str:
    """$MILVUS_URI, else a server started once per process (stopped by `stop_fallback_milvus`/atexit)."""
    global _fallback
    explicit = os.environ.get(ENV_MILVUS_URI, "").strip()
    if explicit:
        return explicit
    with _fallback_lock:
        if _fallback is None or not _fallback.running:
            _fallback = OwnedMilvus().start()
            atexit.register(stop_fallback_milvus)
        return _fallback.uri


def stop_fallback_milvus() -> None:
    """Stop the server `milvus_uri()` started, if any (idempotent)."""
    global _fallback
    with _fallback_lock:
        server, _fallback = _fallback, None
    if server is not None:
        server.close()
