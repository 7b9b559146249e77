"""Erasure and changelog trimming in Redis: the store side of GDPR Art. 17 and of a bounded changelog.

Erasure (`erase`): one Lua script per chunk of ids deletes a record's hash, payload and stored events,
takes it out of its cluster (when it founded the cluster, the rest is re-founded under its earliest
remaining record: cluster ids derive from founding records), drops it as the keeper, appends `e<record id>`
to the changelog (every member then forgets it in its replica; one member re-checks the cluster) and an
audit entry without personal data (keyed id hash, time, door, what was removed). Then the stored events of
*other* records that name it (a candidate, a split piece) are deleted: they are only re-sent on a replay,
and a replay past them re-sends nothing, as after their expiry. Unknown ids change nothing. Idempotent:
an erased id is unknown the second time.

Trimming (`publish_position`, `trim_log`): every member publishes the changelog position it has applied
and every snapshot the position it holds; the log is cut up to the oldest of those (stale entries, of a
member or snapshot that stopped publishing, no longer hold it). Positions stay absolute: `logbase` counts
the entries cut so far, so a member whose position was cut (`ChangelogTrimmed`) rebuilds from a snapshot
or Redis instead of reading the wrong entries. Erased ids in old changelog entries (`r<id>`, merges,
splits, the `e<id>` itself) leave with the trim, once every member and snapshot passed the erasure: the
snapshot bound (`service.erasure_bound_seconds`) is what bounds this (docs/security.md, *Erasure*).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis

from consumer.store.connect import glob_escape
from consumer.store.event_codec import events_json
from consumer.store.lua import MEMBERS, RESOLVE_FWD
from consumer.store.record_state import cluster_id_for

__all__ = ["ChangelogTrimmed", "ErasureOps", "id_hash", "ERASE", "LOG_PAGE", "READ_LOG", "TRIM_LOG"]

#: Audit entries kept (newest last); an entry is ~150 bytes.
AUDIT_KEEP = 100_000
#: Changelog entries one `read_log` returns at most: a shorter page reached the log's end.
LOG_PAGE = 5000


class ChangelogTrimmed(Exception):
    """The position asked for was trimmed away: rebuild the replica (snapshot or Redis) instead."""


def id_hash(key: str, record_id: str) -> str:
    """The audit trail's record handle: HMAC-SHA256 under the hash key, 32 hex digits. An operator holding
    the key can check whether an id was erased; without it the trail gives no id back (ids may be
    guessable, an e-mail address say, so a plain hash would not do)."""
    return hmac.new(key.encode(), b"erasure\x1f" + record_id.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()[:32]


READ_LOG = r"""
-- ARGV[1] prefix, ARGV[2] absolute start, ARGV[3] limit. Returns {base, entries...}, or {-1, base} when
-- start was trimmed away. Positions are absolute: list index = position - logbase.
local p = ARGV[1]
local start, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local base = tonumber(redis.call('GET', p .. 'logbase') or '0')
if start < base then return {-1, base} end
local out = redis.call('LRANGE', p .. 'log', start - base, start - base + limit - 1)
table.insert(out, 1, base)
return out
"""

TRIM_LOG = r"""
-- ARGV[1] prefix, ARGV[2] now (ms), ARGV[3] member liveness (ms), ARGV[4] snapshot freshness (ms).
-- Cuts the changelog up to the oldest position a live member or a fresh snapshot still needs; drops the
-- stale ones. Returns {base before, base after, head}.
local p = ARGV[1]
local now, live, fresh = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local base = tonumber(redis.call('GET', p .. 'logbase') or '0')
local head = base + redis.call('LLEN', p .. 'log')
local low = head
for _, spec in ipairs({{'members', live}, {'snapshots', fresh}}) do
  local h = p .. spec[1]
  local kv = redis.call('HGETALL', h)
  for i = 1, #kv, 2 do
    local pos, ts = string.match(kv[i + 1], '^(%d+):(%d+)$')
    if not pos or now - tonumber(ts) > spec[2] then
      redis.call('HDEL', h, kv[i])
    elseif tonumber(pos) < low then
      low = tonumber(pos)
    end
  end
end
if low > base then
  redis.call('LTRIM', p .. 'log', low - base, -1)
  redis.call('SET', p .. 'logbase', low)
end
return {base, math.max(base, low), head}
"""

ERASE = r"""
-- ARGV[1] prefix, ARGV[2] now (ISO), ARGV[3] JSON {"door", "ids": [{"id", "cluster", "cids", "h"}]}:
-- "cluster" = where the caller found the record's cluster (resolved), "cids" = cluster id of each member
-- (Lua has no sha256: a re-founded cluster's id is computed by the caller), "h" = the audit hash.
-- Returns one status per id: 1 erased, 0 not stored, -1 its cluster changed meanwhile (read again, retry).
local p = ARGV[1]
local now = ARGV[2]
local ops = cjson.decode(ARGV[3])
""" + RESOLVE_FWD + MEMBERS + r"""local out = {}
for i, e in ipairs(ops.ids) do
  local rid = e.id
  local key = p .. 'rec:' .. rid
  local cur = redis.call('HGET', key, 'cluster')
  if not cur then
    out[i] = 0
  elseif resolve(cur) ~= e.cluster then
    out[i] = -1
  else
    local c = e.cluster
    local meta = p .. 'clmeta:' .. c
    local founder = redis.call('HGET', meta, 'founder')
    local canonical = redis.call('HGET', meta, 'canonical')
    local rest = {}
    for _, m in ipairs(members(c)) do
      if m ~= rid then table.insert(rest, m) end
    end
    local best, bseq = nil, nil
    if founder == rid then
      for _, m in ipairs(rest) do
        local s = tonumber(redis.call('HGET', p .. 'rec:' .. m, 'seq') or '0')
        if not bseq or s < bseq then best, bseq = m, s end
      end
    end
    if best and not e.cids[best] then
      out[i] = -1
    else
      local removed = {'record', 'payload', 'events', 'membership'}
      redis.call('DEL', key, p .. 'pl:' .. rid, p .. 'ev:' .. rid)
      redis.call('SREM', p .. 'cl:' .. c, rid)
      redis.call('HDEL', meta, '.' .. rid)
      redis.call('RPUSH', p .. 'log', 'e' .. rid)
      if founder == rid and not best then
        redis.call('DEL', meta, p .. 'cl:' .. c)
        table.insert(removed, 'cluster')
      elseif best then
        -- The earliest remaining record founds the rest; the old id (a hash of the erased id) ends.
        local ncid = e.cids[best]
        local nmeta = p .. 'clmeta:' .. ncid
        redis.call('DEL', p .. 'fwd:' .. ncid)
        redis.call('HSET', nmeta, 'founder', best, 'created', now)
        for _, m in ipairs(rest) do
          redis.call('HSET', p .. 'rec:' .. m, 'cluster', ncid, 'founder', best)
          redis.call('HSET', nmeta, '.' .. m, '')
        end
        if canonical and canonical ~= rid and canonical ~= best then
          redis.call('HSET', nmeta, 'canonical', canonical)
        end
        redis.call('HSET', nmeta, 'size', #rest, 'updated', now)
        redis.call('DEL', meta, p .. 'cl:' .. c)
        redis.call('RPUSH', p .. 'log', 's' .. cjson.encode({best, rest}))
        table.insert(removed, 'founder')
      else
        if canonical == rid then
          redis.call('HDEL', meta, 'canonical')  -- the founder keeps it until a member re-checks
          table.insert(removed, 'keeper')
        end
        redis.call('HSET', meta, 'size', #rest, 'updated', now)
      end
      redis.call('HINCRBY', p .. 'generations', e.h, 1)  -- the id sent again is a new record (new event ids)
      redis.call('RPUSH', p .. 'erasures', cjson.encode({h = e.h, t = now, door = ops.door, removed = removed}))
      out[i] = 1
    end
  end
end
redis.call('LTRIM', p .. 'erasures', -tonumber(ops.keep), -1)
return out
"""


class ErasureOps:
    """Mixed into `RedisStateStore` (it uses the store's client and key naming)."""

    client: redis.Redis  # or a RedisCluster: the scripts name KEYS[1] (the log) so the cluster can route them
    prefix: str
    _on_slot: Callable[[Any, list[str], list[Any]], Any]  # provided by InFlightOps
    erase_payloads: Callable[[Sequence[str]], dict[str, list[str]]]  # provided by PayloadOps
    erased_payloads_gone: Callable[[dict[str, list[str]]], None]  # provided by PayloadOps
    spread_glob: Callable[[str], str]  # provided by PayloadOps

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def _scripts(self) -> dict[str, Any]:
        scripts = self.__dict__.get("_erasure_scripts")
        if scripts is None:
            scripts = {name: self.client.register_script(src)
                       for name, src in (("erase", ERASE), ("read", READ_LOG), ("trim", TRIM_LOG))}
            self.__dict__["_erasure_scripts"] = scripts
        return scripts

    # -- the changelog, with absolute positions ---------------------------------------------------------
    def log_length(self) -> int:
        """The changelog's head position (entries ever appended, trimmed ones included)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.key("logbase"))
        pipe.llen(self.key("log"))
        base, n = pipe.execute()
        return int(base or 0) + int(n)

    def log_base(self) -> int:
        """The oldest position still in the changelog (entries before it were trimmed)."""
        return int(self.client.get(self.key("logbase")) or 0)

    def read_log(self, start: int, limit: int = LOG_PAGE) -> list[str]:
        """Changelog entries from absolute position `start`, at most `limit`; `ChangelogTrimmed` when
        `start` was cut away."""
        raw = self._on_slot(self._scripts()["read"], [self.key("log")], [self.prefix, start, limit])
        if int(raw[0]) < 0:
            raise ChangelogTrimmed(f"position {start} was trimmed (log starts at {int(raw[1])})")
        return [x.decode() for x in raw[1:]]

    def publish_position(self, kind: str, name: str, position: int, now_ms: int) -> None:
        """`kind` "members" (a live member's applied position) or "snapshots" (what a snapshot needs)."""
        self.client.hset(self.key(kind), name, f"{int(position)}:{int(now_ms)}")

    def withdraw_position(self, kind: str, name: str) -> None:
        self.client.hdel(self.key(kind), name)

    def trim_log(self, now_ms: int, live_ms: int, fresh_ms: int) -> tuple[int, int, int]:
        """Cut the changelog up to the oldest position still needed: (base before, base after, head)."""
        out = self._scripts()["trim"](keys=[self.key("log")], args=[self.prefix, now_ms, live_ms, fresh_ms])
        return int(out[0]), int(out[1]), int(out[2])

    # -- erasure ---------------------------------------------------------------------------------------
    def erase(self, record_ids: Sequence[str], *, door: str, hash_key: str, now_iso: str,
              chunk: int = 500, scrub: bool = True) -> dict[str, bool]:
        """Erase records everywhere in Redis; record id -> True (erased) / False (not stored). Ids are
        de-duplicated; a chunk whose clusters moved meanwhile (another writer) is read again and retried.
        `scrub`: also delete other records' stored events naming them now (one pass over `ev:*`); a running
        member's doors leave it to the member that re-checks the erasure, which batches it."""
        ids = list(dict.fromkeys(record_ids))
        result: dict[str, bool] = {}
        for lo in range(0, len(ids), chunk):
            todo = ids[lo: lo + chunk]
            for _ in range(20):
                plan = self._plan(todo, hash_key)
                # Payload and events in the record's own slot (a Redis Cluster, consumer/store/payloads.py) go
                # first: the script cannot reach them, and a record must never be gone while they stay.
                spread = self.erase_payloads([e["id"] for e in plan])
                status = self._scripts()["erase"](keys=[self.key("log")], args=[
                    self.prefix, now_iso, orjson.dumps({"door": door, "ids": plan, "keep": AUDIT_KEEP})])
                self.erased_payloads_gone(spread)
                got = {e["id"]: int(s) for e, s in zip(plan, status)}
                for rid in todo:
                    if rid not in got:
                        result[rid] = False  # not stored: never planned
                    elif got[rid] >= 0:
                        result[rid] = got[rid] == 1
                todo = [rid for rid in todo if rid not in result]
                if not todo:
                    break
        erased = [rid for rid, ok in result.items() if ok]
        if erased and scrub:
            self.scrub_events(erased)
        return result

    def _plan(self, ids: Sequence[str], hash_key: str) -> list[dict[str, Any]]:
        """Where each stored record's cluster is now and its members' would-be cluster ids (a few round
        trips per chunk, not per id: the topic door erases hundreds of ids a poll)."""
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(self.key("rec", rid), "cluster")
        found = [(rid, raw.decode()) for rid, raw in zip(ids, pipe.execute()) if raw is not None]
        where = {c: c for _, c in found}
        todo = list(where)
        for _ in range(64):  # follow merge forward pointers, all clusters at once
            if not todo:
                break
            pipe = self.client.pipeline(transaction=False)
            for c in todo:
                pipe.get(self.key("fwd", where[c]))
            nxt = []
            for c, raw in zip(todo, pipe.execute()):
                if raw is not None:
                    where[c] = raw.decode()
                    nxt.append(c)
            todo = nxt
        clusters = list(dict.fromkeys(where.values()))
        pipe = self.client.pipeline(transaction=False)
        for c in clusters:
            pipe.hkeys(self.key("clmeta", c))
            pipe.smembers(self.key("cl", c))
        res = pipe.execute()
        members = {c: {f.decode()[1:] for f in res[2 * i] if f.startswith(b".")} | {m.decode() for m in res[2 * i + 1]}
                   for i, c in enumerate(clusters)}
        return [{"id": rid, "cluster": where[c], "h": id_hash(hash_key, rid),
                 "cids": {m: cluster_id_for(m) for m in members[where[c]] if m != rid}} for rid, c in found]

    def scrub_events(self, record_ids: Iterable[str], count: int = 500, keys: Sequence[str] | None = None) -> int:
        """Delete the stored events of other records that name an erased id (as a candidate or in a split
        piece); returns how many. One pass over `ev:*` (bounded by the stored-events retention), or over
        `keys` only (a batch that raced an erasure checks its own records)."""
        needles = [orjson.dumps(r)[1:-1] for r in record_ids]
        head = len(self.key("ev", ""))
        doomed: list[bytes] = []
        batch: list[bytes] = []

        def check() -> None:
            pipe = self.client.pipeline(transaction=False)
            for k in batch:
                pipe.get(k)
            for k, raw in zip(batch, pipe.execute()):
                if raw is None:
                    continue
                try:
                    body = events_json(raw)
                except Exception:  # noqa: BLE001 - an unreadable blob cannot be checked: drop it to be safe
                    doomed.append(k)
                    continue
                if any(n in body for n in needles):
                    doomed.append(k)
            batch.clear()

        # A Redis Cluster store keeps events in their records' own slots (consumer/store/payloads.py).
        patterns = [glob_escape(self.key("ev", "")) + "*", self.spread_glob("e[va]")]
        scan = ([k.encode() for k in keys] if keys is not None
                else (k for pattern in patterns for k in self.client.scan_iter(match=pattern, count=count)))
        for key in scan:
            if len(key) > head:
                batch.append(key)
            if len(batch) >= count:
                check()
        if batch:
            check()
        for lo in range(0, len(doomed), 500):
            self.client.delete(*doomed[lo: lo + 500])
        return len(doomed)

    def generations(self, record_ids: Sequence[str], hash_key: str) -> dict[str, int]:
        """How often each id was erased before (ids never erased are left out). One HMGET per batch."""
        ids = list(dict.fromkeys(record_ids))
        if not ids or not self.client.exists(self.key("generations")):
            return {}
        raw = self.client.hmget(self.key("generations"), [id_hash(hash_key, r) for r in ids])
        return {rid: int(v) for rid, v in zip(ids, raw) if v is not None}

    def audit_trail(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest erasure audit entries: {"h", "t", "door", "removed"} (no id, no value)."""
        return [orjson.loads(x) for x in self.client.lrange(self.key("erasures"), -limit, -1)]

    def claim(self, positions: Sequence[int], member: str, ttl: int) -> list[int]:
        """Claim the re-check of erasure log entries (one member re-checks each); returns those won."""
        pipe = self.client.pipeline(transaction=False)
        for pos in positions:
            pipe.set(self.key("eclaim", str(pos)), member, nx=True, ex=max(1, ttl))
        return [pos for pos, ok in zip(positions, pipe.execute()) if ok]

    def audit(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append audit entries (a member's replica removal, a snapshot rewrite)."""
        if entries:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(self.key("erasures"), *[orjson.dumps(e) for e in entries])
            pipe.ltrim(self.key("erasures"), -AUDIT_KEEP, -1)
            pipe.execute()
