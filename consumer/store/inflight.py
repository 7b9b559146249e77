"""Batches in flight across the group: what lets twins decided a moment apart on two members meet at decision.

Why: each member decides a batch on its replica, then writes it. Two twins polled by two members a few
milliseconds apart are decided before either write reaches the other replica, and only the late-link rule
joins them afterwards (a second event, tens of milliseconds later; docs/scale-out.md). So every member
registers each batch it polled (`register_batch`, one script: atomic with every other registration) and
gets back the batches that were registered and not yet written at that moment; before deciding, it waits
until those are written (`wait_written`), then tails the changelog. For any two batches one of them was
registered first: the later one either sees the earlier in flight and waits for it, or the earlier was
already written and is in the changelog. Either way the later decides with the earlier's records, so two
twins meet in one decision, whichever member polled first. Waits point only to earlier registrations, so
they cannot form a cycle; the wait is bounded (`service.freshness_wait_ms`) and the late link stays the
safety net for a member that stalls or dies with a batch registered.

    p inflight       hash  batch token -> registration time (epoch ms), until the batch script writing the
                           batch removes it (`batch_written` for a batch dropped unwritten; entries older than
                           `stale_ms`, of a member that died mid-batch, are dropped by the next registration)
    p written        stream  the tokens deregistered lately (capped at ~WRITTEN_KEEP entries): a waiting
                           member blocks on it (`XREAD BLOCK`) instead of asking the hash every millisecond
                           (three members' CPU per record x0.90; docs/scale-out.md, *Costs and limits*)

No record id or field value is written: a batch token is a random hex string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

__all__ = ["DEREGISTER", "InFlightOps", "REGISTER_BATCH", "WAIT_SLICE_MS", "WRITTEN_KEEP"]

#: Deregistrations kept in the stream; a waiter reads it from the position it took a moment before.
WRITTEN_KEEP = 1024
#: The longest one blocking read lasts before the hash is asked again: a member of an older version
#: deregisters without telling the stream, and its batches must still end a wait within a slice.
WAIT_SLICE_MS = 25

REGISTER_BATCH = r"""
-- KEYS[1] the in-flight hash; ARGV[1] this batch's token, ARGV[2] now (epoch ms), ARGV[3] stale after (ms).
-- Returns the tokens of the batches in flight before this one (stale ones dropped), then registers it.
local h = KEYS[1]
local all = redis.call('HGETALL', h)
local oldest = tonumber(ARGV[2]) - tonumber(ARGV[3])
local out = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < oldest then
    redis.call('HDEL', h, all[i])
  else
    out[#out + 1] = all[i]
  end
end
redis.call('HSET', h, ARGV[1], ARGV[2])
return out
"""

STILL_WAITING = r"""
-- KEYS[1] the in-flight hash, KEYS[2] the stream of deregistrations; ARGV the tokens waited for.
-- Returns the stream's last id ('0-0' when empty), then those tokens still in flight: read in one step, so a
-- token missing from the answer was deregistered after that id and its stream entry is read next.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local out = {last[1] and last[1][1] or '0-0'}
local vals = redis.call('HMGET', KEYS[1], unpack(ARGV))
for i = 1, #ARGV do
  if vals[i] then out[#out + 1] = ARGV[i] end
end
return out
"""

#: Deregisters a batch token and tells the members blocked on it; shared by `BATCH_WRITTEN` and the batch
#: script (`consumer.store.lua`), which deregisters the batch it writes. Needs `hash`, `stream`, `token`.
DEREGISTER = r"""
if redis.call('HDEL', hash, token) == 1 then
  redis.call('XADD', stream, 'MAXLEN', '~', """ + str(WRITTEN_KEEP) + r""", '*', 't', token)
end
"""

BATCH_WRITTEN = r"""
-- KEYS[1] the in-flight hash, KEYS[2] the stream of deregistrations; ARGV[1] the token.
local hash, stream, token = KEYS[1], KEYS[2], ARGV[1]
""" + DEREGISTER + r"""
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InFlightOps:
    """Mixed into `RedisStateStore` (it uses the store's client and key naming)."""

    client: redis.Redis

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def _script(self, name: str, source: str) -> Any:
        script = self.__dict__.get(name)
        if script is None:
            script = self.__dict__[name] = self.client.register_script(source)
        return script

    def register_batch(self, token: str, now_ms: int, stale_ms: int = 60_000) -> list[str]:
        """Register a polled batch; returns the tokens of the batches registered before it and not yet
        written (this member's own earlier ones included: they are written before this one is decided)."""
        out = self._on_slot(self._script("_register_script", REGISTER_BATCH),
                            [self.key("inflight")], [token, int(now_ms), int(stale_ms)])
        return [t for t in map(_text, out) if t != token]

    def still_in_flight(self, tokens: Sequence[str]) -> list[str]:
        """Those of `tokens` whose batch is not written yet."""
        return self._still_waiting(tokens)[1]

    def _still_waiting(self, tokens: Sequence[str]) -> tuple[str, list[str]]:
        if not tokens:
            return "0-0", []
        out = self._on_slot(self._script("_waiting_script", STILL_WAITING),
                            [self.key("inflight"), self.key("written")], list(tokens))
        return _text(out[0]), [_text(t) for t in out[1:]]

    def wait_written(self, tokens: Sequence[str], seconds: float) -> list[str]:
        """Wait until the batches of `tokens` are written, at most `seconds`; returns those still in flight.

        Blocks on the stream of deregistrations rather than polling the hash: a wait costs a few round trips
        whatever its length. Each blocking read lasts at most WAIT_SLICE_MS before the hash is asked again."""
        deadline = time.monotonic() + seconds
        last, waiting = self._still_waiting(tokens)
        stream = self.key("written")
        while waiting:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            got = self._read_stream(stream, last, min(left_ms, WAIT_SLICE_MS))
            entries = [entry for _name, items in (got or []) for entry in items]
            if not entries:  # a slice without news: ask the hash (a writer that does not tell the stream)
                last, waiting = self._still_waiting(waiting)
                continue
            last = _text(entries[-1][0])
            done = {_text(fields.get(b"t", fields.get("t", b""))) for _id, fields in entries}
            waiting = [t for t in waiting if t not in done]
        return waiting

    def _slot_client(self, key: str) -> redis.Redis | None:
        """On a Redis Cluster, the plain client of the node that owns `key`'s slot (every key of a store is in
        one slot); None on a single Redis. Why: the cluster client's dispatch of one command (its slot, node
        and connection; for a command whose keys move, such as XREAD, a `COMMAND GETKEYS` round trip to a
        server first) cost a member more Python CPU than the call itself, several times per batch."""
        client = self.client
        if not isinstance(client, RedisCluster):
            return None
        return client.get_redis_connection(client.get_node_from_key(key))

    def _slot_call(self, key: str, call: Callable[[Any], Any]) -> Any:
        """`call(client)` for an idempotent per-batch call, on the node of `key`'s slot directly
        (`_slot_client`). A redirect (the slot moved) or a node that does not answer (a failover under way)
        sends it once more through the cluster client, which follows the redirect and refreshes its map of
        the cluster; a lost reply re-sent changes nothing (registration, reads)."""
        node = self._slot_client(key)
        if node is not None:
            try:
                return call(node)
            except (redis.exceptions.ResponseError, redis.ConnectionError, redis.TimeoutError):
                pass
        return call(self.client)

    def _on_slot(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """`script(keys, args)` through `_slot_call` (the keys' slot: every key of a store has the same)."""
        return self._slot_call(keys[0], lambda client: script(keys=keys, args=args, client=client))

    def _read_stream(self, stream: str, last: str, block_ms: int) -> Any:
        """`XREAD BLOCK block_ms STREAMS stream last` through `_slot_call` (before, a third of the CPU of
        waiting went to the cluster client's key lookup for XREAD)."""
        return self._slot_call(stream, lambda client: client.xread({stream: last}, block=block_ms))

    def batch_written(self, token: str) -> None:
        """The batch's Redis write returned (or it was dropped): nobody waits for it any longer; a member
        blocked on it learns so from the stream at once."""
        self._script("_written_script", BATCH_WRITTEN)(keys=[self.key("inflight"), self.key("written")], args=[token])
