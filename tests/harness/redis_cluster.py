"""A real Redis Cluster of three masters on free loopback ports, for the cluster store tests.

Why real servers: what breaks on a cluster (CROSSSLOT refusals, scripts routed to the wrong master, SCAN
seeing one master only) is the server's behaviour, which no fake reproduces.

With `replicas=1` each master gets a replica, and `kill(port)` crashes a node so a test can watch the
replica take over (failover).

`redis_cluster_url()`: `redis+cluster://` URL of $REDIS_CLUSTER_NODES ("h1:p1,h2:p2,...") when set, else of a
cluster started here: three `redis-server --cluster-enabled yes` processes, joined by `redis-cli --cluster
create` (or, without redis-cli, by CLUSTER ADDSLOTSRANGE + CLUSTER MEET from redis-py), ready once every node
says `cluster_state:ok`. No persistence (`--appendonly no --save ''`): the tests need no restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .kafka import free_port, wait_for_port
from .redis import redis_server_binary

__all__ = ["ENV_CLUSTER_NODES", "OwnedRedisCluster", "cluster_url_of"]

ENV_CLUSTER_NODES = "REDIS_CLUSTER_NODES"
SLOTS = 16384


def cluster_url_of(nodes: str) -> str:
    """"h1:p1,h2:p2" -> "redis+cluster://h1:p1,h2:p2" (the store's cluster URL)."""
    return "redis+cluster://" + ",".join(n.strip() for n in nodes.split(",") if n.strip())


class OwnedRedisCluster:
    """`masters` redis-server processes in cluster mode (plus `replicas` replicas of each), joined into one
    cluster; `kill(port)` crashes one node (a failover test); `close()` stops them all."""

    def __init__(self, masters: int = 3, *, replicas: int = 0, host: str = "127.0.0.1",
                 startup_timeout: float = 30.0, node_timeout_ms: int = 5000) -> None:
        self.host = host
        #: cluster-node-timeout: how long a silent master takes to be failed over (tests shorten it).
        self.node_timeout_ms = node_timeout_ms
        self.masters = masters
        self.replicas = replicas
        self.startup_timeout = startup_timeout
        self.binary = redis_server_binary()
        self.data_dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> list[str]:
        """host:port of every master."""
        return [f"{self.host}:{p}" for p in self.ports]

    @property
    def url(self) -> str:
        """The store's URL for this cluster (`redis+cluster://` with every master as a seed)."""
        return cluster_url_of(",".join(self.nodes))

    def start(self) -> OwnedRedisCluster:
        """Start the servers, form the cluster, wait for `cluster_state:ok`; RuntimeError (servers stopped)
        when any step fails, FileNotFoundError when there is no redis-server."""
        if not self.binary:
            raise FileNotFoundError("no redis-server (install Debian's redis-server or set REDIS_SERVER_BIN)")
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                self._start_node()
            self._form()
            self._wait_ok()
        except Exception as exc:
            logs = self.logs_tail()
            self.close()
            raise RuntimeError(f"Redis Cluster did not start: {exc}\n{logs}") from exc
        return self

    def _start_node(self) -> None:
        port, bus = free_port(self.host), free_port(self.host)
        # The bus port is given, not left at port + 10000: an ephemeral port plus 10000 may pass 65535.
        argv = [self.binary, "--port", str(port), "--bind", self.host, "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
                "--appendonly", "no", "--save", "", "--dir", str(self.data_dir), "--daemonize", "no",
                "--logfile", str(self.data_dir / f"redis-{port}.log")]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        self.ports.append(port)
        self.bus_ports.append(bus)
        wait_for_port(self.host, port, self.startup_timeout, proc)

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=port, socket_timeout=5, socket_connect_timeout=2)

    def _form(self) -> None:
        cli = shutil.which("redis-cli", path=str(Path(self.binary).parent) + os.pathsep + os.environ.get("PATH", ""))
        if cli:
            out = subprocess.run([cli, "--cluster", "create", *self.nodes, "--cluster-replicas", str(self.replicas),
                                  "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
            return
        # No redis-cli: what `--cluster create` does, by hand. Slots in equal ranges, then one MEET each.
        step = SLOTS // self.masters
        for i, port in enumerate(self.ports[: self.masters]):
            hi = SLOTS - 1 if i == self.masters - 1 else (i + 1) * step - 1
            with self._client(port) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, hi)
        with self._client(self.ports[0]) as c:
            for port, bus in zip(self.ports[1:], self.bus_ports[1:]):
                c.execute_command("CLUSTER", "MEET", self.host, port, bus)
        for i, port in enumerate(self.ports[self.masters:]):  # replicas, once they know their master
            with self._client(self.ports[i % self.masters]) as m:
                master_id = m.execute_command("CLUSTER", "MYID")
            self._retry(lambda p=port, mid=master_id: self._client(p).execute_command("CLUSTER", "REPLICATE", mid))

    def _retry(self, call: Callable[[], object]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                call()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                states = []
                for port in self.ports:
                    with self._client(port) as c:
                        info = c.execute_command("CLUSTER", "INFO")
                        text = info.decode() if isinstance(info, bytes) else str(info)
                        states.append("cluster_state:ok" in text
                                      and f"cluster_known_nodes:{len(self.ports)}" in text)
                        role = c.execute_command("ROLE")
                        if role[0] in (b"slave", "slave"):  # a replica counts once it is in sync
                            states.append(role[3] in (b"connected", "connected"))
                if all(states):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"cluster_state not ok on every node after {self.startup_timeout:.0f}s")

    def master_clients(self) -> list[redis.Redis]:
        """A plain client per live master, as of now (for checks that must look at each one, e.g. SCAN every
        master, or memory summed without counting replicas twice)."""
        out = []
        for port, proc in zip(self.ports, self._procs):
            if proc.poll() is None:
                c = self._client(port)
                role = c.execute_command("ROLE")
                if role[0] in (b"master", "master"):
                    out.append(c)
                else:
                    c.close()
        return out

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: its replica is promoted after cluster-node-timeout)."""
        proc = self._procs[self.ports.index(port)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def logs_tail(self, lines: int = 10) -> str:
        """The last lines of each node's log, for failure messages."""
        out = []
        for port in self.ports:
            try:
                text = (self.data_dir / f"redis-{port}.log").read_text(errors="replace").splitlines()[-lines:]
                out.append(f"-- node {port}\n" + "\n".join(text))
            except OSError:
                pass
        return "\n".join(out)

    def close(self) -> None:
        """SIGTERM every node, wait for it, remove the data dir."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> OwnedRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
