"""One way to reach Redis: a single server (`redis://`, `rediss://`) or a Redis Cluster (`redis+cluster://`).

Why a URL scheme rather than a separate setting: every place that names Redis already takes one URL
(`service.redis`, `--redis` of `dedup export-clusters`/`dedup erase`, the chart's `redis.url`), so a cluster
is reachable from all of them without a second knob that could disagree with the first:

    redis+cluster://[user:password@]host1:port1,host2:port2,host3:port3[/0]
    rediss+cluster://...   (TLS)

The hosts are *seed* nodes: the client asks any of them for the slot map (CLUSTER SLOTS) and then talks to
every master directly, following MOVED/ASK redirections during resharding and failover. Only database 0
exists on a cluster, so a path other than `/` or `/0` is refused.

On a cluster every key of one store carries the same hash tag (`cluster_prefix`), so each Lua script and
each multi-key pipeline step touches a single slot (docs/scale-out.md, "Redis Cluster").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

import redis
from redis.cluster import ClusterNode, RedisCluster

__all__ = ["CLUSTER_SCHEMES", "ClusterURL", "is_cluster_url", "parse_cluster_url", "connect", "cluster_prefix",
           "glob_escape"]

#: URL schemes that select a Redis Cluster client.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterURL:
    """A parsed `redis+cluster://` URL: seed nodes and credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`)."""
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterURL:
    """Parse `redis+cluster://[user:pass@]h1:p1,h2:p2[/0]`; ValueError (without the password) when malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (want {' or '.join(s + '://' for s in CLUSTER_SCHEMES)})")
    rest = rest.split("?", 1)[0]
    auth, at, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    username = password = None
    if at:
        user, colon, pw = auth.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    nodes: list[tuple[str, int]] = []
    for part in filter(None, (h.strip() for h in hosts.split(","))):
        host, colon, port = part.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(f"Redis Cluster seed node {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("a Redis Cluster URL needs at least one seed node host:port")
    return ClusterURL(tuple(nodes), username, password, scheme.lower().startswith("rediss"))


def connect(url: str, *, socket_timeout: float = 5.0) -> redis.Redis | RedisCluster:
    """A client for `url`: `RedisCluster` for a cluster URL, the plain client otherwise. Both offer the
    commands, scripts and pipelines the store uses; the cluster client routes each by its key's slot."""
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": min(socket_timeout, 2.0)}
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **timeouts)
    spec = parse_cluster_url(url)
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in spec.nodes], username=spec.username,
                        password=spec.password, ssl=spec.tls, **timeouts)


def cluster_prefix(prefix: str) -> str:
    """The key prefix as a hash tag: "dedup" -> "{dedup}:", so every key of the store hashes to one slot
    (a prefix that already holds a non-empty `{tag}` is kept as it is: the operator chose the tag)."""
    head = prefix if prefix.endswith(":") else prefix + ":"
    lo = head.find("{")
    if lo >= 0 and head.find("}", lo + 1) > lo + 1:  # Redis hashes the text up to the first "}" after "{"
        return head
    return "{" + head[:-1] + "}:"


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern (a prefix may hold `[`, `*`, ...)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
