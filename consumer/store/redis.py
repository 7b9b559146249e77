"""Durable state in Redis: record -> cluster, cluster -> members, canonical, metadata, rebuild payloads.

Keys (prefix `p`, e.g. `dedup:`; on a Redis Cluster a hash tag, `{dedup}:`, so all of them share one slot,
but for payloads and events):

    p rec:<record id>      hash  seq, founder, cluster, batch (write token: its first 16 hex digits),
                                 written (epoch ms; ISO in records written before issue 12's leaner layout),
                                 fp (keyed content fingerprint: tells a replay from an id conflict), dm (its
                                 alternative events stand: a cluster store's demotion, below)
                                 (small values only: Redis keeps the hash in its compact encoding)
    p pl:<record id>       str   payload (vectors/keyed hashes; record_state format 2)
    p ev:<record id>       str   the exact event bytes sent for it (deflate JSON list with a preset dictionary;
                                 `pack_events`), expiring after service.replay_events_ttl_seconds (0 = never)
                                 (before issue 12 payload and events were fields of rec:<id>: still read)
                                 (on a Redis Cluster both in the record's own slot: consumer/store/payloads.py)
    p clmeta:<cluster id>  hash  founder, canonical, size, created, updated (canonical absent = the founder,
                                 updated absent = created: most clusters are singletons, kept small), and
                                 one field '.<record id>' (empty value) per member: one listpack per cluster
    p cl:<cluster id>      set   member record ids of clusters written before issue 12's leaner layout
                                 (still read and merged; members = this set + the '.' fields above)
    p fwd:<cluster id>     str   survivor of a merge that absorbed this cluster
    p seq                  int   records written so far (the global arrival sequence)
    p log                  list  changelog: 'r<record id>' per new record, 'm<n>:<founder><founder>' per
                                 applied merge (founder record ids), 's[...]' per split piece, 'e<record id>'
                                 per erasure, in write order (tailed by every consumer's replica); trimmed
    p logbase              int   entries trimmed off the log's head (positions are absolute)
    p members, snapshots   hash  changelog position each live member / snapshot needs ("<pos>:<epoch ms>")
    p erasures             list  erasure audit trail (keyed id hash, time, door, what was removed)
    p generations          hash  keyed id hash -> times erased (an id sent again gets new event ids)
    p eclaim:<position>    str   which member re-checks the cluster of an erasure (expires)
    p offsets              hash  "topic:partition" -> next offset written (diagnostics; Kafka has the commits)
    p inflight             hash  batch token -> epoch ms, while a polled batch is not yet written
                                 (consumer/store/inflight.py: how twins on two members meet at decision)
    p written              stream  tokens deregistered lately (capped): what a waiting member blocks on
    p meta                 hash  model_version, config_version of the last writer
    p layouts              hash  payload layout id -> column layout JSON (consumer/store/record_state.py)

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
from redis.cluster import RedisCluster

from consumer.store import record_state
from consumer.store.connect import cluster_prefix, connect, glob_escape
from consumer.store.erasure import ChangelogTrimmed, ErasureOps
from consumer.store.event_codec import EVENTS_ZDICT_1, pack_events, unpack_events
from consumer.store.inflight import InFlightOps
from consumer.store.lua import APPLY_BATCH, FETCH_STATES, RESOLVE_CLUSTERS
from consumer.store.payloads import PayloadOps
from consumer.store.record_state import LAYOUTS, RecordState, cluster_id_for, layout_of, register_layout
from consumer.store.verify import VerifyOps, split_meta

__all__ = ["RedisStateStore", "BatchWrite", "RETRYABLE", "AUTH_ERRORS", "pack_events", "unpack_events",
           "EVENTS_ZDICT_1", "ChangelogTrimmed", "MergesMoved"]

#: Errors after which the same call can simply be retried later (server down, restarting, loading its AOF).
#: On a Redis Cluster also a failover or resharding in progress (cluster down, TRYAGAIN, a slot not covered).
RETRYABLE: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError,
                                              redis.BusyLoadingError, redis.ReadOnlyError, OSError,
                                              redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                                              redis.exceptions.SlotNotCoveredError)
#: Records read by one `fetch_states` script: bounds how long one call holds the server.
FETCH_CHUNK = 500
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
        #: Payload layouts the batch's records use (layout id -> JSON), stored once in `layouts`.
        self.layouts: dict[str, str] = {}
        #: Set by `write_batch`: how many of `merges` changed anything (the rest were already applied).
        self.applied_merges = 0
        #: Set by `write_batch`: records whose alternative events were stored (their merges were no-ops).
        self.demoted: list[str] = []
        #: The changelog position the decisions saw (the member's replica position); None = not checked.
        #: Erasures past it *raced* the batch: see `write_batch`.
        self.seen: int | None = None
        #: Set by `write_batch`: ids erased after `seen` (their mentions in this batch's stored events are
        #: deleted) and split pieces dropped because their founder was erased (the caller reloads).
        self.raced: list[str] = []
        self.dropped_pieces = 0
        #: Refuse the write (`MergesMoved`) when a decision's merges were partly done already (the service
        #: sets it, and names the clusters again when refused).
        self.check_merges = False

    def add_record(self, state: RecordState, cluster_id: str, events: Sequence[bytes], fp: str = "",
                   alt_events: Sequence[bytes] | None = None) -> None:
        """`alt_events`: what to store instead when every merge this record's decision makes (added next
        with `add_merge`) turns out to be done already (see the script's *demoted*)."""
        lid = layout_of(state.payload)
        if lid is not None and lid not in self.layouts:
            self.layouts[str(lid)] = LAYOUTS[lid].decode()
        self.blobs.append(state.payload)
        self.blobs.append(pack_events(events))
        n = len(self.blobs)
        alt = 0
        if alt_events is not None:
            self.blobs.append(pack_events(alt_events))
            alt = len(self.blobs)
        self.recs.append([state.record_id, cluster_id, state.founder_id, n - 1, n, fp, alt,
                          cluster_id_for(state.record_id)])

    def add_merge(self, surviving: str, absorbed: Sequence[str], of_last_record: bool = False) -> None:
        """`of_last_record`: the merge is the decision of the record added last (it may be demoted)."""
        self.merges.append([surviving, list(absorbed), len(self.recs) if of_last_record else 0])

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

    def ops_json(self, events_ttl: int = 0, now_ms: str = "", spread: bool = False) -> bytes:
        """`events_ttl`: seconds the stored events are kept (0 = forever; see the script's `ev_ttl`);
        `now_ms`: the write time as epoch milliseconds, kept in each new record hash (shorter than ISO);
        `spread`: the payloads are written into the records' own slots beforehand (a Redis Cluster)."""
        # cjson decodes {} and [] alike; an empty mapping must still iterate as a table in Lua.
        ops: dict[str, Any] = {"recs": self.recs, "merges": self.merges, "canon": self.canon or {},
                               "offsets": self.offsets or {}, "layouts": self.layouts or {},
                               "ev_ttl": max(0, int(events_ttl))}
        if now_ms:
            ops["now_ms"] = now_ms
        if self.seen is not None:
            ops["seen"] = int(self.seen)
        if self.check_merges:
            ops["check"] = True
        if spread:
            ops["spread"] = True
        return orjson.dumps(ops)


class MergesMoved(Exception):
    """Nothing was written: a decision bridges a cluster another member merged after this one named the
    clusters, and one nobody merged; written as it is, its event would announce the first one again. Name
    the clusters again (`resolve_clusters`), rebuild the events and write again."""


class RedisStateStore(ErasureOps, VerifyOps, InFlightOps, PayloadOps):
    """The service's view of Redis. Methods raise `RETRYABLE` errors; the caller decides how long to retry.
    Erasure, the changelog reads (absolute positions) and its trimming: `consumer.store.erasure`;
    `verify()`: `consumer.store.verify`; batches in flight across the group: `consumer.store.inflight`."""

    def __init__(self, url: str, prefix: str = "dedup", *, socket_timeout: float = 5.0,
                 client: redis.Redis | RedisCluster | None = None, events_ttl: int = 0) -> None:
        """`events_ttl`: seconds stored events are kept (service.replay_events_ttl_seconds; 0 = forever).
        `url`: one server or `redis+cluster://` seeds (`consumer.store.connect`; there the prefix is a hash
        tag, "{dedup}:", so every script and transaction of the store stays in one slot, as a cluster needs)."""
        self.client = client or connect(url, socket_timeout=socket_timeout)
        #: Whether the client talks to a Redis Cluster (same scripts and keys; prefix as a hash tag).
        self.cluster = isinstance(self.client, RedisCluster)
        self.prefix = cluster_prefix(prefix) if self.cluster else (prefix if prefix.endswith(":") else prefix + ":")
        self.spread = self.cluster
        self.events_ttl = events_ttl
        self._apply = self.client.register_script(APPLY_BATCH)
        self._resolve = self.client.register_script(RESOLVE_CLUSTERS)
        self._fetch = self.client.register_script(FETCH_STATES)

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
        ops = batch.ops_json(self.events_ttl, record_state.epoch_ms(now_iso), self.spread)
        blobs = batch.blobs
        if self.spread and batch.recs:
            self.put_payloads(batch.recs, blobs, batch.token, self.events_ttl)
            blobs = [b""] * len(blobs)  # not sent twice: the script leaves payloads and events alone
        args: list[Any] = [self.prefix, batch.token, now_iso, ops, *blobs]
        # KEYS[1] only routes the script: every key it builds from the prefix shares this key's slot.
        out = self._apply(keys=[self.key("seq")], args=args)
        if int(out[0]) < 0:
            raise MergesMoved("a decision's merges were partly done by another writer since it was named")
        batch.applied_merges = int(out[1])
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in out[5:]]
        n_conflicts, n_raced = int(out[2]), int(out[3])
        batch.dropped_pieces = int(out[4])
        batch.raced = ids[n_conflicts: n_conflicts + n_raced]
        batch.demoted = ids[n_conflicts + n_raced:]
        if self.spread:
            self.drop_unclaimed(batch.recs, batch.token, ids[:n_conflicts])
        if batch.raced:
            # Decided on a view that still held these records: this batch's stored events must not keep
            # naming them (the re-checking member's scrub may have passed). An erased id sent again in this
            # very batch is a new record: its own events stay.
            again = set(batch.raced)
            mine = [r for r in batch.recs if r[0] not in again]
            self.scrub_events(batch.raced, keys=self.spread_event_keys(mine, batch.token) if self.spread
                              else [self.key("ev", r[0]) for r in mine])
        return int(out[0]), ids[:n_conflicts]

    def resolve_clusters(self, cluster_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """cluster id -> (where it lives now, its founder's seq; -1 = not in Redis yet)."""
        ids = list(dict.fromkeys(cluster_ids))
        if not ids:
            return {}
        out = self._resolve(keys=[self.key("seq")], args=[self.prefix, *ids])
        return {cid: ((out[2 * i].decode() if isinstance(out[2 * i], bytes) else str(out[2 * i])), int(out[2 * i + 1]))
                for i, cid in enumerate(ids)}

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
            pipe.get(self.key("ev", rid))
            pipe.hget(self.key("rec", rid), "events")  # where records written before issue 12 keep them
        res = pipe.execute()
        spread = self.spread_events([r for r, raw, old in zip(ids, res[0::2], res[1::2]) if raw is None and old is None]
                                    ) if self.spread else {}
        out: dict[str, list[bytes]] = {}
        for rid, raw, old in zip(ids, res[0::2], res[1::2]):
            raw = raw if raw is not None else old if old is not None else spread.get(rid)
            if raw is not None:
                out[rid] = [orjson.dumps(e) for e in unpack_events(raw)]
        return out

    def existing(self, record_ids: Iterable[str]) -> set[str]:
        """The ids that are stored records (whether or not their stored events have expired)."""
        ids = list(dict.fromkeys(record_ids))
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.exists(self.key("rec", rid))
        return {rid for rid, n in zip(ids, pipe.execute()) if n}

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

    def load_layouts(self) -> None:
        """Register every payload layout stored (so payloads written by other members can be decoded)."""
        for lid, layout in self.client.hgetall(self.key("layouts")).items():
            register_layout(int(lid), layout)

    def fetch_states(self, record_ids: Sequence[str]) -> tuple[dict[str, RecordState], dict[str, str]]:
        """The stored state of these records (founder as of now: merges applied since are included), and
        when each was written (the writer's ISO time: the replica's consistency window is measured on it)."""
        # One script per FETCH_CHUNK records (every key of a store is in one slot, a cluster's too): a
        # pipeline of two commands per record cost a replica ~10% of its CPU in redis-py's per-command work.
        res: list[Any] = []
        for lo in range(0, len(record_ids), FETCH_CHUNK):
            keys = [k for rid in record_ids[lo:lo + FETCH_CHUNK] for k in (self.key("rec", rid), self.key("pl", rid))]
            res.extend(self._on_slot(self._fetch, keys, []))
        payloads = self.with_spread_payloads(list(zip(record_ids, res[2::6], res[4::6], res[5::6])))
        # A payload's layout is stored by the script that stored the payload: the table is read again only
        # when a payload names a layout this process has not seen (a round trip per changelog sync before).
        if any(lid is not None and lid not in LAYOUTS for lid in map(layout_of, filter(None, payloads))):
            self.load_layouts()
        out: dict[str, RecordState] = {}
        written: dict[str, str] = {}
        for rid, seq, founder, when, payload in zip(record_ids, res[0::6], res[1::6], res[3::6], payloads):
            if payload is not None and seq is not None:
                out[rid] = RecordState(rid, int(seq), founder.decode(), payload)
                written[rid] = record_state.iso_of((when or b"").decode())
        return out, written

    def _scan_records(self, fields: Sequence[str], count: int = 1000,
                      payload: bool = False) -> Iterator[tuple[str, list[Any]]]:
        """(record id, values of `fields`) per record; `payload`: the payload appended (its own key since
        issue 12; the hash's `payload` field before)."""
        head = len(self.key("rec", ""))
        pattern = glob_escape(self.key("rec", "")) + "*"
        batch: list[bytes] = []
        n = len(fields)
        names = [*fields, "payload", "fp", "batch"] if payload else list(fields)

        def flush() -> Iterator[tuple[str, list[Any]]]:
            pipe = self.client.pipeline(transaction=False)
            for k in batch:
                pipe.hmget(k, names)
                if payload:
                    pipe.get(self.key("pl", k[head:].decode()))
            res = pipe.execute()
            step = 2 if payload else 1
            rows = [(k[head:].decode(), res[i * step], res[i * step + 1] if payload else None)
                    for i, k in enumerate(batch) if res[i * step][0] is not None]
            batch.clear()
            if not payload:
                yield from ((rid, values) for rid, values, _ in rows)
                return
            found = self.with_spread_payloads([(rid, pl if pl is not None else v[n], v[n + 1], v[n + 2])
                                               for rid, v, pl in rows])
            for (rid, values, _), pl in zip(rows, found):
                yield rid, [*values[:n], pl]

        for key in self.client.scan_iter(match=pattern, count=count):
            batch.append(key)
            if len(batch) >= count:
                yield from flush()
        if batch:
            yield from flush()

    # -- lookups (the HTTP API) ---------------------------------------------------------------------------
    def resolve_cluster(self, cluster_id: str) -> str:
        """Follow merge forward pointers (fwd:<absorbed> -> survivor) to the cluster that exists now."""
        for _ in range(64):  # the Lua script bounds chains the same way
            nxt = self.client.get(self.key("fwd", cluster_id))
            if nxt is None:
                return cluster_id
            cluster_id = nxt.decode()
        return cluster_id

    def record_cluster(self, record_id: str) -> str | None:
        """The cluster a stored record is in now (None: no such record)."""
        raw = self.client.hget(self.key("rec", record_id), "cluster")
        return None if raw is None else self.resolve_cluster(raw.decode())

    def cluster_info(self, cluster_id: str, max_members: int) -> dict[str, Any] | None:
        """A cluster's metadata and members in arrival order (at most `max_members`), or None when it never
        existed. An id absorbed by a merge answers for its survivor (`merged_into` says so). Ids, counts and
        timestamps only: no field value is stored, so none can be returned."""
        current = self.resolve_cluster(cluster_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.key("clmeta", current))
        pipe.smembers(self.key("cl", current))
        meta_raw, members_raw = pipe.execute()
        if not meta_raw:
            return None
        meta, listed = split_meta(meta_raw)
        members = sorted({m.decode() for m in members_raw} | listed)
        seq_pipe = self.client.pipeline(transaction=False)
        for rid in members:
            seq_pipe.hget(self.key("rec", rid), "seq")
        seqs = [int(s) if s is not None else 0 for s in seq_pipe.execute()]
        ordered = [rid for _, rid in sorted(zip(seqs, members))]
        return {"cluster_id": current, "merged_into": current if current != cluster_id else None,
                "founder_id": meta.get("founder"), "canonical_id": meta.get("canonical") or meta.get("founder"),
                "size": len(ordered), "members": ordered[:max_members], "truncated": len(ordered) > max_members,
                "created": meta.get("created"), "updated": meta.get("updated") or meta.get("created")}

    def load_states(self) -> list[RecordState]:
        """Every persisted record, for `Pipeline.restore` at start-up (any order; restore sorts)."""
        self.load_layouts()
        return [RecordState(rid, int(seq), founder.decode(), payload)
                for rid, (seq, founder, payload) in self._scan_records(["seq", "founder"], payload=True)
                if payload is not None]

    def export_clusters(self) -> Iterator[tuple[str, str]]:
        """(record id, cluster id) for every record (`dedup export-clusters`)."""
        for rid, (cluster,) in self._scan_records(["cluster"]):
            yield rid, cluster.decode()
