"""Where a record's payload and stored events live: beside the record in the store's slot, or on a Redis
Cluster in a slot of their own, so that most of the state spreads over the cluster's masters (issue 39).

Why: on a cluster every key built from the store's prefix shares one hash tag (`{dedup}:`), so one master
holds the whole store. Everything the changelog must agree with (record hashes, memberships, forward
pointers, the log itself) stays in that slot, because one script applies it atomically. The payload (~800
bytes) and the stored events (~330 bytes while kept) are most of what a record stores, and the simplest:
written once with the record, read by id. So on a cluster they go to keys tagged with the record's own id,
which Redis Cluster spreads over every slot:

    {<record id>}:{dedup}:pl:<fingerprint>   the payload (the write token's first 16 hex digits where a
                                             writer has no content fingerprint)
    {<record id>}:{dedup}:ev:<token>         the events the claiming batch sent (token: its first 16 digits)
    {<record id>}:{dedup}:ea:<token>         its alternative events, read where the script demoted it

Order and replays (at-least-once input: every step may run twice, or a writer may die between steps):

1. Before the batch's script, one pipeline writes them: the payload with `SET NX`, the events with `SET`
   (a batch named again after `MergesMoved` keeps its token and rebuilds its events; alternative events it
   no longer has are never read, `dm` being set only with them, and expire). Nothing reads them
   yet: a reader finds a record through the changelog or the record hash, which only the script writes.
2. The script claims the records and appends them to the log; the record hash keeps `fp` and `batch`, so a
   reader knows the keys, and `dm` where the script demoted the record (instead of rewriting its events).

A batch retried after a lost reply writes the same keys. One replayed by another member after its writer
died between the steps writes the same payload key (same content) and events under its own token, which is
what its claim names; the dead writer's events are left to expire (`service.replay_events_ttl_seconds`) and,
since they name the record, to the scrub of an erasure. A writer that finds the id claimed by another batch
deletes its events, and its payload where the content differs (`drop_unclaimed`); dying first, its batch
stays uncommitted and the replay does it. Erasure deletes payload and events *before* its script takes the
record out (`erase_payloads`), and the payload again after it where the record is gone
(`erased_payloads_gone`: a twin written meanwhile by another member keeps the stored record's key): a
record is never gone while they stay; a record whose erasure stopped between the two is read as having no
payload (readers skip it) until the erasure is retried.

A single Redis keeps both beside the record (`pl:<record id>`, `ev:<record id>`), written by the script:
there is one master and nothing to spread, and the script saves commands per record. What was written
before this layout (`{dedup}:pl:<record id>`, `{dedup}:ev:<record id>` on a cluster) is still read where a
record names nothing spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from consumer.store.connect import glob_escape

__all__ = ["PayloadOps", "payload_suffix"]


def payload_suffix(fp: str | bytes | None, token: str | bytes | None) -> str:
    """The suffix of a record's spread payload key: its fingerprint, else its write token's first 16 hex
    digits (what the record hash keeps as `fp` and `batch`)."""
    fp = fp.decode() if isinstance(fp, bytes) else (fp or "")
    token = token.decode() if isinstance(token, bytes) else (token or "")
    return fp or token[:16]


class PayloadOps:
    """Mixed into `RedisStateStore` (it uses the store's client, prefix and key naming)."""

    client: Any
    prefix: str
    #: Payloads and events in the records' own slots (a Redis Cluster store); else beside the record, by the
    #: batch script.
    spread: bool

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def payload_key(self, record_id: str, suffix: str) -> str:
        """`{<record id>}:<prefix>pl:<suffix>`: the record id is the key's hash tag (Redis hashes the text
        between the first "{" and the next "}", so an id holding braces still lands in one fixed slot)."""
        return f"{{{record_id}}}:{self.prefix}pl:{suffix}"

    def event_key(self, record_id: str, token: str, alt: bool = False) -> str:
        """`{<record id>}:<prefix>ev:<token>`: the events a batch (its token's first 16 hex digits) sent for
        the record; `ea:` the alternative events it stores should its merges turn out done (demoted)."""
        return f"{{{record_id}}}:{self.prefix}{'ea' if alt else 'ev'}:{token[:16]}"

    def spread_glob(self, kind: str) -> str:
        """SCAN MATCH pattern of this store's keys of `kind` (`pl`, `ev`, `e[va]`) in the records' own slots."""
        return "{*}:" + glob_escape(self.prefix) + kind + ":*"

    def put_payloads(self, recs: Sequence[Sequence[Any]], blobs: Sequence[bytes], token: str,
                     events_ttl: int = 0) -> None:
        """Step 1 of a spread batch write: each new record's payload (`SET NX`), events and alternative
        events into its own slot, one pipeline that the cluster client splits by node. `recs`/`blobs`: a
        `BatchWrite`'s; `events_ttl`: seconds the events are kept (0 = forever). The events are set, not
        `NX`: a batch named again after `MergesMoved` keeps its token and rebuilds them."""
        pipe = self.client.pipeline(transaction=False)
        ex = events_ttl if events_ttl > 0 else None
        for r in recs:
            pipe.set(self.payload_key(r[0], payload_suffix(r[5], token)), blobs[r[3] - 1], nx=True)
            pipe.set(self.event_key(r[0], token), blobs[r[4] - 1], ex=ex)
            if r[6]:
                pipe.set(self.event_key(r[0], token, alt=True), blobs[r[6] - 1], ex=ex)
        pipe.execute()

    def drop_unclaimed(self, recs: Sequence[Sequence[Any]], token: str, conflicts: Sequence[str]) -> None:
        """After the script: delete what this batch wrote for records another writer had claimed: its
        events, and its payloads where the content differs (another suffix; the same content is the same
        key, the claimed record's own)."""
        if not conflicts:
            return
        mine = {r[0]: payload_suffix(r[5], token) for r in recs}
        ids = [rid for rid in dict.fromkeys(conflicts) if rid in mine]
        stored = self.payload_suffixes(ids)  # one round trip, on conflicts only
        self._delete([self.payload_key(rid, mine[rid]) for rid in ids if stored.get(rid) != mine[rid]]
                     + [self.event_key(rid, token, alt) for rid in ids for alt in (False, True)])

    def _rec_fields(self, record_ids: Sequence[str], fields: Sequence[str]) -> list[list[bytes | None]]:
        """`fields` of each record's hash (None where absent), one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for rid in record_ids:
            pipe.hmget(self.key("rec", rid), list(fields))
        return pipe.execute()

    def payload_suffixes(self, record_ids: Sequence[str]) -> dict[str, str]:
        """record id -> the suffix of its spread payload key (stored records only)."""
        return {rid: payload_suffix(fp, batch) for rid, (fp, batch) in zip(record_ids,
                self._rec_fields(record_ids, ["fp", "batch"])) if fp is not None or batch is not None}

    def with_spread_payloads(self, rows: Sequence[tuple[str, bytes | None, Any, Any]]) -> list[bytes | None]:
        """Each row's payload: the one found beside the record, else (on a cluster) the one in its own slot.
        `rows`: (record id, payload found or None, its hash's `fp`, `batch`); one round trip, split by node."""
        if not self.spread:
            return [pl for _rid, pl, _fp, _token in rows]
        spread = self.spread_payloads({rid: payload_suffix(fp, token) for rid, pl, fp, token in rows
                                       if pl is None and (fp or token)})
        return [pl if pl is not None else spread.get(rid) for rid, pl, _fp, _token in rows]

    def spread_events(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored events of these records kept in their own slots: those of the batch that claimed each
        (`batch` in its hash), its alternative ones where the script demoted it (`dm`); absent ones left out."""
        keys = {rid: self.event_key(rid, token.decode(), alt=dm is not None)
                for rid, (token, dm) in zip(record_ids, self._rec_fields(record_ids, ["batch", "dm"]))
                if token is not None}
        pipe = self.client.pipeline(transaction=False)
        for k in keys.values():
            pipe.get(k)
        return {rid: raw for rid, raw in zip(keys, pipe.execute()) if raw is not None}

    def spread_event_keys(self, recs: Sequence[Sequence[Any]], token: str) -> list[str]:
        """The event keys a batch wrote for its records (`recs`: a `BatchWrite`'s)."""
        return [self.event_key(r[0], token, alt) for r in recs for alt in (False, True)]

    def spread_payloads(self, suffixes: Mapping[str, str]) -> dict[str, bytes]:
        """The spread payloads of these records (record id -> suffix); absent ones left out."""
        ids = list(suffixes)
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.get(self.payload_key(rid, suffixes[rid]))
        return {rid: raw for rid, raw in zip(ids, pipe.execute()) if raw is not None}

    def erase_payloads(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Delete the spread payloads and events of these records (before the erasure script takes them
        out); returns record id -> the keys deleted, for `erased_payloads_gone`."""
        if not self.spread or not record_ids:
            return {}
        ids = list(record_ids)
        keys = {rid: [self.payload_key(rid, payload_suffix(fp, token)),
                      *(self.event_key(rid, token.decode(), alt) for alt in (False, True))]
                for rid, (fp, token) in zip(ids, self._rec_fields(ids, ["fp", "batch"])) if token is not None}
        self._delete(k for ks in keys.values() for k in ks)
        return keys

    def erased_payloads_gone(self, keys: Mapping[str, Sequence[str]]) -> None:
        """After the erasure script: delete again the payloads of records no longer stored. Why: a twin of
        the record written by another member between `erase_payloads` and the script (its batch claimed
        nothing, the id being stored still) wrote the same payload key again; a record stored meanwhile
        keeps its. (The twin's events carry its own token: its batch deletes them, `drop_unclaimed`.)"""
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for rid in keys:
            pipe.exists(self.key("rec", rid))
        self._delete([ks[0] for ks, n in zip(keys.values(), pipe.execute()) if not n])

    def _delete(self, keys: Iterable[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for k in keys:
            pipe.delete(k)
            n += 1
        if n:
            pipe.execute()

    def stored_payload(self, record_id: str) -> bytes | None:
        """A record's payload where it is kept (its own slot, else beside it, else the hash of an older
        writer); None when the record has none."""
        if self.spread:
            sfx = self.payload_suffixes([record_id]).get(record_id)
            if sfx is not None:
                raw = self.spread_payloads({record_id: sfx}).get(record_id)
                if raw is not None:
                    return raw
        raw = self.client.get(self.key("pl", record_id))
        return raw if raw is not None else self.client.hget(self.key("rec", record_id), "payload")
