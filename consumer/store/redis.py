"""Durable state in Redis: record -> cluster, cluster -> members, canonical, metadata, rebuild payloads.

Keys (prefix `p`, e.g. `dedup:`):

    p rec:<record id>      hash  seq, founder, cluster, payload (vectors/keyed hashes), events (JSON list
                                 of the exact event bytes sent for it), batch (write token), written,
                                 fp (keyed content fingerprint: tells a replay from an id conflict)
    p cl:<cluster id>      set   member record ids
    p clmeta:<cluster id>  hash  founder, canonical, size, created, updated
    p fwd:<cluster id>     str   survivor of a merge that absorbed this cluster
    p seq                  int   records written so far (the global arrival sequence)
    p offsets              hash  "topic:partition" -> next offset written (diagnostics; Kafka has the commits)
    p meta                 hash  model_version, config_version of the last writer

Why one Lua script per batch instead of MULTI/WATCH: the script runs atomically on the server and can resolve
clusters that another consumer merged meanwhile (forward pointers), so concurrent writers never need a retry
loop and never leave a record in two clusters or in a deleted one. Re-applying a batch whose reply was lost
is a no-op (each record carries its batch token). No raw field value is ever written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import redis

from consumer.store.lua import APPLY_BATCH
from consumer.store.record_state import RecordState

__all__ = ["RedisStateStore", "BatchWrite", "RETRYABLE", "AUTH_ERRORS"]

#: Errors after which the same call can simply be retried later (server down, restarting, loading its AOF).
RETRYABLE: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError,
                                              redis.BusyLoadingError, redis.ReadOnlyError, OSError)
#: Subclasses of ConnectionError (so also in RETRYABLE) that retrying cannot fix: wrong password or user.
AUTH_ERRORS: tuple[type[BaseException], ...] = (redis.AuthenticationError,)


class BatchWrite:
    """Everything one micro-batch changes, in decision order (built by the service, applied in one script)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.recs: list[list[Any]] = []
        self.merges: list[list[Any]] = []
        self.canon: dict[str, str] = {}
        self.offsets: dict[str, int] = {}
        self.blobs: list[bytes] = []

    def add_record(self, state: RecordState, cluster_id: str, events: Sequence[bytes], fp: str = "") -> None:
        self.blobs.append(state.payload)
        self.blobs.append(b"[" + b",".join(events) + b"]")
        n = len(self.blobs)
        self.recs.append([state.record_id, cluster_id, state.founder_id, n - 1, n, fp])

    def add_merge(self, surviving: str, absorbed: Sequence[str]) -> None:
        self.merges.append([surviving, list(absorbed)])

    def add_split(self, split_cluster: str, pieces: Sequence[tuple[str, str, Sequence[str]]]) -> None:
        """Pieces (cluster id, founder id, record ids) split off `split_cluster`; applied in decision order
        with the merges (the same ordered list), so a merge and a split in one batch replay as decided."""
        self.merges.append({"split": split_cluster,
                            "pieces": [[cid, founder, list(rids)] for cid, founder, rids in pieces]})

    def set_canonical(self, cluster_id: str, canonical_id: str) -> None:
        self.canon[cluster_id] = canonical_id

    def set_offset(self, topic: str, partition: int, next_offset: int) -> None:
        key = f"{topic}:{partition}"
        self.offsets[key] = max(next_offset, self.offsets.get(key, -1))

    def ops_json(self) -> bytes:
        # cjson decodes {} and [] alike; an empty mapping must still iterate as a table in Lua.
        return orjson.dumps({"recs": self.recs, "merges": self.merges, "canon": self.canon or {},
                             "offsets": self.offsets or {}})


class RedisStateStore:
    """The service's view of Redis. Methods raise `RETRYABLE` errors; the caller decides how long to retry."""

    def __init__(self, url: str, prefix: str = "dedup", *, socket_timeout: float = 5.0,
                 client: redis.Redis | None = None) -> None:
        self.prefix = prefix if prefix.endswith(":") else prefix + ":"
        self.client = client or redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                                     socket_connect_timeout=min(socket_timeout, 2.0))
        self._apply = self.client.register_script(APPLY_BATCH)

    def key(self, kind: str, ident: str | None = None) -> str:
        """`key("rec", rid)` -> "<prefix>rec:<rid>"; `key("rec", "")` -> the "<prefix>rec:" namespace."""
        return f"{self.prefix}{kind}" if ident is None else f"{self.prefix}{kind}:{ident}"

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()

    # -- writes ------------------------------------------------------------------------------------------
    def write_batch(self, batch: BatchWrite, now_iso: str) -> tuple[int, list[str]]:
        """Apply a batch atomically; returns (records written, ids that already existed from another batch).

        A conflicting record (written by another consumer, or before this consumer's last reload) keeps its
        stored assignment: the caller re-sends the stored events instead of its own and reloads its state.
        """
        args: list[Any] = [self.prefix, batch.token, now_iso, batch.ops_json(), *batch.blobs]
        out = self._apply(keys=[], args=args)
        return int(out[0]), [x.decode() if isinstance(x, bytes) else str(x) for x in out[1:]]

    def set_meta(self, mapping: Mapping[str, str]) -> None:
        self.client.hset(self.key("meta"), mapping=dict(mapping))

    def get_meta(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.key("meta")).items()}

    # -- reads -------------------------------------------------------------------------------------------
    def stored_events(self, record_ids: Iterable[str]) -> dict[str, list[bytes]]:
        """The exact event bytes each record produced when it was first decided (missing ids left out)."""
        ids = list(dict.fromkeys(record_ids))
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(self.key("rec", rid), "events")
        out: dict[str, list[bytes]] = {}
        for rid, raw in zip(ids, pipe.execute()):
            if raw is not None:
                out[rid] = [orjson.dumps(e) for e in orjson.loads(raw)]
        return out

    def stored_fingerprints(self, record_ids: Iterable[str]) -> dict[str, str]:
        """Content fingerprint of each stored record (records written before fingerprints existed: left out)."""
        ids = list(dict.fromkeys(record_ids))
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(self.key("rec", rid), "fp")
        return {rid: raw.decode() for rid, raw in zip(ids, pipe.execute()) if raw}

    def record_count(self) -> int:
        """Records written so far (the global sequence counter)."""
        return int(self.client.get(self.key("seq")) or 0)

    def _scan_records(self, fields: Sequence[str], count: int = 1000) -> Iterator[tuple[str, list[Any]]]:
        head = len(self.key("rec", ""))
        pattern = _glob_escape(self.key("rec", "")) + "*"
        batch: list[bytes] = []

        def flush() -> Iterator[tuple[str, list[Any]]]:
            pipe = self.client.pipeline(transaction=False)
            for k in batch:
                pipe.hmget(k, list(fields))
            for k, values in zip(batch, pipe.execute()):
                if values[0] is not None:
                    yield k[head:].decode(), values
            batch.clear()

        for key in self.client.scan_iter(match=pattern, count=count):
            batch.append(key)
            if len(batch) >= count:
                yield from flush()
        if batch:
            yield from flush()

    def load_states(self) -> list[RecordState]:
        """Every persisted record, for `Pipeline.restore` at start-up (any order; restore sorts)."""
        return [RecordState(rid, int(seq), founder.decode(), payload)
                for rid, (seq, founder, payload) in self._scan_records(["seq", "founder", "payload"])]

    def export_clusters(self) -> Iterator[tuple[str, str]]:
        """(record id, cluster id) for every record (`dedup export-clusters`)."""
        for rid, (cluster,) in self._scan_records(["cluster"]):
            yield rid, cluster.decode()

    def verify(self) -> list[str]:
        """Consistency problems (empty when fine): each record in exactly one existing cluster, member sets
        and record hashes agreeing, sizes right. For tests and operators; O(state)."""
        problems: list[str] = []
        rec_cluster: dict[str, str] = {}
        rec_founder: dict[str, str] = {}
        for rid, (cluster, founder) in self._scan_records(["cluster", "founder"]):
            rec_cluster[rid], rec_founder[rid] = cluster.decode(), founder.decode()
        members: dict[str, set[str]] = {}
        pattern = _glob_escape(self.key("cl", "")) + "*"
        head = len(self.key("cl", ""))
        for key in self.client.scan_iter(match=pattern, count=1000):
            members[key[head:].decode()] = {m.decode() for m in self.client.smembers(key)}
        seen: dict[str, str] = {}
        for cid, ms in members.items():
            meta = self.client.hgetall(self.key("clmeta", cid))
            if not meta:
                problems.append(f"cluster {cid} has members but no metadata")
            elif int(meta.get(b"size", -1)) != len(ms):
                problems.append(f"cluster {cid} size {meta.get(b'size')} != {len(ms)} members")
            elif meta.get(b"founder", b"").decode() not in ms:
                problems.append(f"cluster {cid}: founder is not a member")
            elif any(rec_founder.get(m) != meta[b"founder"].decode() for m in ms):
                problems.append(f"cluster {cid}: a member names another founder")
            for m in ms:
                if m in seen:
                    problems.append(f"record {m} in clusters {seen[m]} and {cid}")
                seen[m] = cid
                if rec_cluster.get(m) != cid:
                    problems.append(f"record {m} listed in {cid} but points to {rec_cluster.get(m)}")
        for rid, cid in rec_cluster.items():
            if rid not in seen:
                problems.append(f"record {rid} (cluster {cid}) is in no member set")
        return problems


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
