"""`RedisStateStore.verify()`: the store's invariants checked against what Redis holds (tests, operators).

Its own module because it reads everything (SCAN of every key kind) and keeps `consumer/store/redis.py`, the
write path, short. On a Redis Cluster `scan_iter` walks every master, so the check sees every key wherever
the slot map put it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import redis

from consumer.store.connect import glob_escape
from consumer.store.payloads import payload_suffix

__all__ = ["VerifyOps", "split_meta"]


class VerifyOps:
    """Mixed into `RedisStateStore` (it uses the store's client, key naming and record scan)."""

    client: redis.Redis
    prefix: str
    spread: bool  # payloads in the records' own slots (PayloadOps)
    payload_key: Callable[[str, str], str]  # provided by PayloadOps (a stub here would shadow it)
    spread_glob: Callable[[str], str]  # provided by PayloadOps

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def _scan_records(self, fields: Sequence[str], count: int = 1000,
                      payload: bool = False) -> Iterator[tuple[str, list[Any]]]:  # provided by RedisStateStore
        raise NotImplementedError

    def verify(self) -> list[str]:
        """Consistency problems (empty when fine): each record in exactly one existing cluster, member sets
        and record hashes agreeing, sizes right, each record's payload where it names it and, on a Redis
        Cluster, no payload of a record not stored (or stored with other content). For tests and operators;
        O(state); SCAN on every master."""
        problems: list[str] = []
        rec_cluster: dict[str, str] = {}
        rec_founder: dict[str, str] = {}
        named: set[bytes] = set()
        for rid, (cluster, founder, fp, token, payload) in self._scan_records(["cluster", "founder", "fp", "batch"],
                                                                              payload=True):
            rec_cluster[rid], rec_founder[rid] = cluster.decode(), founder.decode()
            if payload is None:
                problems.append(f"record {rid} has no payload")
            if self.spread:
                named.add(self.payload_key(rid, payload_suffix(fp, token)).encode())
        if self.spread:
            stray = [k for k in self.client.scan_iter(match=self.spread_glob("pl"), count=1000) if k not in named]
            problems += [f"payload {k.decode(errors='replace')} of no stored record" for k in stray[:20]]
        members: dict[str, set[str]] = {}
        metas: dict[str, dict[str, str]] = {}
        for kind in ("cl", "clmeta"):  # member sets written before issue 12; members listed in the metadata
            pattern = glob_escape(self.key(kind, "")) + "*"
            head = len(self.key(kind, ""))
            for key in self.client.scan_iter(match=pattern, count=1000):
                cid = key[head:].decode()
                if kind == "cl":
                    members.setdefault(cid, set()).update(m.decode() for m in self.client.smembers(key))
                else:
                    metas[cid], listed = split_meta(self.client.hgetall(key))
                    if listed:
                        members.setdefault(cid, set()).update(listed)
        seen: dict[str, str] = {}
        for cid, ms in members.items():
            meta = metas.get(cid) or {}
            if not meta.get("founder"):
                problems.append(f"cluster {cid} has members but no metadata")
            elif int(meta.get("size", -1)) != len(ms):
                problems.append(f"cluster {cid} size {meta.get('size')} != {len(ms)} members")
            elif meta["founder"] not in ms:
                problems.append(f"cluster {cid}: founder is not a member")
            elif any(rec_founder.get(m) != meta["founder"] for m in ms):
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


def split_meta(raw: Mapping[bytes, bytes]) -> tuple[dict[str, str], set[str]]:
    """A clmeta hash as (metadata, member ids listed in it as '.<record id>' fields since issue 12)."""
    meta: dict[str, str] = {}
    listed: set[str] = set()
    for k, v in raw.items():
        name = k.decode()
        if name.startswith("."):
            listed.add(name[1:])
        else:
            meta[name] = v.decode()
    return meta, listed
