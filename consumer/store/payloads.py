"""Where a record's payload lives: beside the record in the store's slot, or on a Redis Cluster in a slot of
its own, so that the largest part of the state spreads over the cluster's masters (issue 39).

Why: on a cluster every key built from the store's prefix shares one hash tag (`{dedup}:`), so one master
holds the whole store. Everything the changelog must agree with (record hashes, memberships, forward
pointers, the log itself) stays in that slot, because one script applies it atomically. A payload is the
largest thing a record stores (~800 of ~1,400 bytes once its events expire, docs/scale-out.md) and the
simplest: written once, never changed, read by id. So on a cluster it goes to a key tagged with the record's
own id, `{<record id>}:{dedup}:pl:<suffix>`, which Redis Cluster spreads over every slot.

Order and replays (at-least-once input: every step may run twice, or a writer may die between steps):

1. Before the batch's script, the payloads are written with `SET ... NX`. Nothing reads them yet: a reader
   finds a record through the changelog or the record hash, which only the script writes.
2. The script claims the records (first writer wins) and appends them to the log.

The suffix is the record's content fingerprint (the write token's first 16 hex digits where a writer has no
fingerprint), which the script stores in the record hash (`fp`, `batch`), so a reader knows the key. A batch
retried after a lost reply, or replayed by another member after a crash between steps 1 and 2, carries the
same content and so the same key: `NX` keeps the first bytes and nothing is left behind. A writer whose
record id turns out to be claimed already with *other* content (an id conflict) wrote under another
suffix, nobody will read that key, and it deletes it after the script (`drop_unclaimed`); a writer that dies
before doing so leaves its batch uncommitted, and the replay deletes it. Erasure deletes the payload
*before* its script takes the record out (`erase_payloads`): a record is never gone while its payload
stays; a record whose erasure stopped between the two is read as having no payload (readers skip it) until
the erasure is retried.

A single Redis keeps the payload beside the record (`pl:<record id>`), written by the script: there is one
master and nothing to spread, and the script saves a command per record. Payloads written before this
layout (`{dedup}:pl:<record id>` on a cluster) are still read where a record names no spread payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
    #: Payloads in the records' own slots (a Redis Cluster store); else beside the record in the script.
    spread: bool

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def payload_key(self, record_id: str, suffix: str) -> str:
        """`{<record id>}:<prefix>pl:<suffix>`: the record id is the key's hash tag (Redis hashes the text
        between the first "{" and the next "}", so an id holding braces still lands in one fixed slot)."""
        return f"{{{record_id}}}:{self.prefix}pl:{suffix}"

    def put_payloads(self, recs: Sequence[Sequence[Any]], blobs: Sequence[bytes], token: str) -> None:
        """Step 1 of a spread batch write: each new record's payload into its own slot (`SET NX`), one
        pipeline that the cluster client splits by node. `recs`/`blobs`: a `BatchWrite`'s."""
        pipe = self.client.pipeline(transaction=False)
        for r in recs:
            pipe.set(self.payload_key(r[0], payload_suffix(r[5], token)), blobs[r[3] - 1], nx=True)
        pipe.execute()

    def drop_unclaimed(self, recs: Sequence[Sequence[Any]], token: str, conflicts: Sequence[str]) -> None:
        """After the script: delete the payloads this batch wrote for records another writer had claimed with
        other content (another suffix); the same content is the same key, the claimed record's own."""
        if not conflicts:
            return
        mine = {r[0]: payload_suffix(r[5], token) for r in recs}
        ids = [rid for rid in dict.fromkeys(conflicts) if rid in mine]
        stored = self.payload_suffixes(ids)
        stale = [self.payload_key(rid, mine[rid]) for rid in ids if stored.get(rid) != mine[rid]]
        self._delete(stale)

    def payload_suffixes(self, record_ids: Sequence[str]) -> dict[str, str]:
        """record id -> the suffix of its spread payload key (stored records only)."""
        pipe = self.client.pipeline(transaction=False)
        for rid in record_ids:
            pipe.hmget(self.key("rec", rid), ["fp", "batch"])
        return {rid: payload_suffix(fp, batch) for rid, (fp, batch) in zip(record_ids, pipe.execute())
                if fp is not None or batch is not None}

    def spread_payloads(self, suffixes: Mapping[str, str]) -> dict[str, bytes]:
        """The spread payloads of these records (record id -> suffix); absent ones left out."""
        ids = list(suffixes)
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.get(self.payload_key(rid, suffixes[rid]))
        return {rid: raw for rid, raw in zip(ids, pipe.execute()) if raw is not None}

    def erase_payloads(self, record_ids: Sequence[str]) -> dict[str, str]:
        """Delete the spread payloads of these records (before the erasure script takes them out); returns
        record id -> the key deleted, for `erased_payloads_gone`."""
        if not self.spread or not record_ids:
            return {}
        keys = {rid: self.payload_key(rid, sfx) for rid, sfx in self.payload_suffixes(list(record_ids)).items()}
        self._delete(keys.values())
        return keys

    def erased_payloads_gone(self, keys: Mapping[str, str]) -> None:
        """After the erasure script: delete again the payloads of records no longer stored. Why: a twin of
        the record written by another member between `erase_payloads` and the script (its batch claimed
        nothing, the id being stored still) wrote the same key again; a record stored meanwhile keeps its."""
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for rid in keys:
            pipe.exists(self.key("rec", rid))
        self._delete([k for (_rid, k), n in zip(keys.items(), pipe.execute()) if not n])

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
