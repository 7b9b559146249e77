"""Batches in flight across the group: what lets twins decided a moment apart on two members meet at decision.

Why: each member decides a batch on its replica, then writes it. Two twins polled by two members a few
milliseconds apart are decided before either write reaches the other replica, and only the late-link rule
joins them afterwards (a second event, tens of milliseconds later; docs/scale-out.md). So every member
registers each batch it polled (`register_batch`, one script: atomic with every other registration) and
gets back the batches that were registered and not yet written at that moment; before deciding, it waits
until those are written (`still_in_flight`), then tails the changelog. For any two batches one of them was
registered first: the later one either sees the earlier in flight and waits for it, or the earlier was
already written and is in the changelog. Either way the later decides with the earlier's records, so two
twins meet in one decision, whichever member polled first. Waits point only to earlier registrations, so
they cannot form a cycle; the wait is bounded (`service.freshness_wait_ms`) and the late link stays the
safety net for a member that stalls or dies with a batch registered.

    p inflight       hash  batch token -> registration time (epoch ms), until the batch's Redis write returns
                           (entries older than `stale_ms`, of a member that died mid-batch, are dropped by
                           the next registration)

No record id or field value is written: a batch token is a random hex string.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

__all__ = ["InFlightOps", "REGISTER_BATCH"]

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


class InFlightOps:
    """Mixed into `RedisStateStore` (it uses the store's client and key naming)."""

    client: redis.Redis

    def key(self, kind: str, ident: str | None = None) -> str:  # provided by RedisStateStore
        raise NotImplementedError

    def register_batch(self, token: str, now_ms: int, stale_ms: int = 60_000) -> list[str]:
        """Register a polled batch; returns the tokens of the batches registered before it and not yet
        written (this member's own earlier ones included: they are written before this one is decided)."""
        script = self.__dict__.get("_register_script")
        if script is None:
            script = self.__dict__["_register_script"] = self.client.register_script(REGISTER_BATCH)
        out = script(keys=[self.key("inflight")], args=[token, int(now_ms), int(stale_ms)])
        tokens = [t.decode() if isinstance(t, bytes) else str(t) for t in out]
        return [t for t in tokens if t != token]

    def still_in_flight(self, tokens: Sequence[str]) -> list[str]:
        """Those of `tokens` whose batch is not written yet."""
        if not tokens:
            return []
        return [t for t, v in zip(tokens, self.client.hmget(self.key("inflight"), list(tokens))) if v is not None]

    def batch_written(self, token: str) -> None:
        """The batch's Redis write returned (or it was dropped): nobody waits for it any longer."""
        self.client.hdel(self.key("inflight"), token)
