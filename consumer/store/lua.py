"""The Lua script that applies one micro-batch to Redis atomically (see `consumer.store.redis`).

Kept as a Python string (not a .lua file) so it ships with the package without package-data rules.
"""

from consumer.store.inflight import DEREGISTER

#: Follows forward pointers (fwd:<id> -> survivor) from an absorbed cluster to the one that holds it now;
#: shared by the batch script and the erasure script (`consumer.store.erasure`). Needs `p` (the prefix).
RESOLVE_FWD = r"""
local function resolve(cid)
  for _ = 1, 64 do
    local nxt = redis.call('GET', p .. 'fwd:' .. cid)
    if not nxt then return cid end
    cid = nxt
  end
  return cid
end
"""

#: A cluster's members: the '.<record id>' fields of its clmeta hash plus a legacy 'cl:<id>' set (see the
#: batch script's membership note); shared by the batch and erasure scripts. Needs `p` (the prefix).
MEMBERS = r"""
local function members(c)
  local out = redis.call('SMEMBERS', p .. 'cl:' .. c)
  for _, f in ipairs(redis.call('HKEYS', p .. 'clmeta:' .. c)) do
    if string.sub(f, 1, 1) == '.' then table.insert(out, string.sub(f, 2)) end
  end
  return out
end
"""

APPLY_BATCH = r"""
-- Apply one micro-batch to the dedup state, atomically (a Lua script runs alone on the server).
--
-- ARGV[1] prefix, ARGV[2] batch token, ARGV[3] now (ISO), ARGV[4] JSON ops, ARGV[5..] payloads and events
-- (binary-safe, referenced by index from the ops). Ops:
--   recs:    [[record_id, cluster_id, founder_id, payload_index, events_index, fp, alt_events_index,
--             own_cluster_id], ...] (decision order; alt_events_index 0 = none; own_cluster_id: the
--             record's cluster id were it to found one, used when its founder was erased meanwhile)
--   merges:  [[surviving_cluster_id, [absorbed_cluster_id, ...], record_number], ...] (decision order;
--            record_number: 1-based position in recs of the record whose decision bridged, 0 = none)
--            or, in the same ordered list, a split:
--            {"split": cluster_id, "pieces": [[new_cluster_id, founder_id, [record_id, ...]], ...]}
--            (each piece is logged as 's' .. JSON [founder_id, [record_id, ...]], so replicas split too)
--   canon:   {cluster_id: canonical_record_id}
--   offsets: {"topic:partition": next_offset}
--   layouts: {layout_id: layout JSON} of the batch's payloads (kept once, HSETNX)
--   ev_ttl:  seconds the stored events (ev:<id>) are kept, 0 or absent = forever (replays only need them
--            until the batch is committed in Kafka, plus a rewind margin)
--   seen:    the changelog position the decisions saw (the member's replica position; absent = not checked)
--   check:   refuse a batch whose decision's merges were partly done already (below): returns {-1}
--   spread:  payloads, events and alternative events are in the records' own slots already (a Redis Cluster
--            store): not written here; a demoted record is marked 'dm' in its hash instead
-- Returns {new_records, merges applied (not already done), #conflicts, #raced, split pieces dropped,
-- conflicting record ids..., raced ids..., demoted record ids...}. *Raced* ids were erased after `seen`
-- (an `e` entry past it): the batch was decided on a view that still held them, so the caller deletes
-- this batch's stored events that name them; a split piece whose founder is no longer stored is dropped
-- (never write an erased id back as a founder) and the caller reloads (its replica applied the split).
-- A record whose bridging merges were all done already (another member merged the
-- same clusters a moment before) is *demoted*: its alternative events (no clusters.merged) are stored instead;
-- one whose merges were partly done is refused with ops.check (below), so no absorbed cluster is ever
-- announced by two merge events.
--
-- Every new record appends 'r<record id>', every applied merge 'm<len>:<survivor founder><absorbed founder>'
-- (founder record ids) and every split piece 's[<founder id>, [<record id>, ...]]' (JSON) to the list
-- p log: the changelog every consumer tails to keep its replica of the whole state current
-- (consumer/service/changelog.py). Appended in the same script as the state itself, so the log can never miss a
-- write or show one that did not happen; position i (1-based) of an 'r' entry is that record's seq.
--
-- Why server-side resolution: several consumers may decide on stale views of the same clusters. A cluster
-- absorbed by a merge leaves a forward pointer (fwd:<id> -> survivor), and every write first resolves its
-- cluster through those pointers, so a record never lands in a deleted cluster and a record is always in
-- exactly one member set. When two existing clusters merge, the one whose founder arrived first (lower
-- seq) survives, which is what the pipeline itself does; re-applying the same batch (same token, e.g. after
-- a reply was lost) is a no-op.
local p = ARGV[1]
local token = ARGV[2]
local now = ARGV[3]
local ops = cjson.decode(ARGV[4])

""" + RESOLVE_FWD + r"""
local function founder_seq(cid)
  local f = redis.call('HGET', p .. 'clmeta:' .. cid, 'founder')
  if not f then return nil end
  return tonumber(redis.call('HGET', p .. 'rec:' .. f, 'seq'))
end

local touched = {}

-- Erasures the deciding member had not read yet (see `seen` above); ids only, for the caller.
local raced = {}
if ops.seen then
  local base = tonumber(redis.call('GET', p .. 'logbase') or '0')
  for _, x in ipairs(redis.call('LRANGE', p .. 'log', math.max(0, tonumber(ops.seen) - base), -1)) do
    if string.sub(x, 1, 1) == 'e' then table.insert(raced, string.sub(x, 2)) end
  end
end
local dropped = 0

-- Cluster membership: since issue 12 a cluster's members are fields '.<record id>' (empty values) of its
-- clmeta hash, which Redis keeps in its compact listpack encoding (a one-member hashtable set cost 248
-- bytes beside the 200 of its metadata); clusters written before keep a 'cl:<id>' set, still read, so
-- members are the union of both. Every membership access goes through these helpers.
local META_FIELDS = {'founder', 'canonical', 'size', 'created', 'updated'}
""" + MEMBERS + r"""local function add_member(c, rid)
  if redis.call('SISMEMBER', p .. 'cl:' .. c, rid) == 0 then
    redis.call('HSET', p .. 'clmeta:' .. c, '.' .. rid, '')
  end
end
local function member_count(c)
  local meta = p .. 'clmeta:' .. c
  local n = redis.call('HLEN', meta)
  for _, v in ipairs(redis.call('HMGET', meta, unpack(META_FIELDS))) do
    if v then n = n - 1 end
  end
  return n + redis.call('SCARD', p .. 'cl:' .. c)
end

local ev_ttl = tonumber(ops.ev_ttl or 0) or 0
local function set_events(rid, blob)
  if ev_ttl > 0 then
    redis.call('SET', p .. 'ev:' .. rid, blob, 'EX', ev_ttl)
  else
    redis.call('SET', p .. 'ev:' .. rid, blob)
  end
end

local function merge(survivor, absorbed)
  local s, a = resolve(survivor), resolve(absorbed)
  if s == a then return 0 end
  local ss, sa = founder_seq(s), founder_seq(a)
  if ss and sa and sa < ss then s, a = a, s end
  local founder = redis.call('HGET', p .. 'clmeta:' .. s, 'founder')
  local afounder = redis.call('HGET', p .. 'clmeta:' .. a, 'founder') or ''
  for _, rid in ipairs(members(a)) do
    redis.call('HSET', p .. 'rec:' .. rid, 'cluster', s, 'founder', founder or '')
    add_member(s, rid)
  end
  redis.call('DEL', p .. 'cl:' .. a, p .. 'clmeta:' .. a)
  redis.call('SET', p .. 'fwd:' .. a, s)
  if founder and afounder ~= '' then
    redis.call('RPUSH', p .. 'log', 'm' .. #founder .. ':' .. founder .. afounder)
  end
  touched[a] = nil
  touched[s] = true
  return 1
end

local function remove_member(c, rid)
  redis.call('SREM', p .. 'cl:' .. c, rid)  -- a cluster written before the member fields
  redis.call('HDEL', p .. 'clmeta:' .. c, '.' .. rid)
end

-- A split moves every record of each piece into its new cluster (the split cluster keeps the rest and its
-- id). A piece's id may be that of a cluster absorbed long ago (ids derive from founding records): its
-- forward pointer is dropped, so the id names the new cluster again.
local function split_piece(cid, founder, rids)
  if redis.call('EXISTS', p .. 'rec:' .. founder) == 0 then
    dropped = dropped + 1  -- founded by a record erased since the decision: not written back
    return
  end
  redis.call('DEL', p .. 'fwd:' .. cid)
  local meta = p .. 'clmeta:' .. cid
  if redis.call('EXISTS', meta) == 0 then
    redis.call('HSET', meta, 'founder', founder, 'created', now)
  end
  local moved = false
  local stored = {}
  for _, rid in ipairs(rids) do
    local cur = redis.call('HGET', p .. 'rec:' .. rid, 'cluster')
    if cur then
      table.insert(stored, rid)
      cur = resolve(cur)
      if cur ~= cid then remove_member(cur, rid) end
      redis.call('HSET', p .. 'rec:' .. rid, 'cluster', cid, 'founder', founder)
      add_member(cid, rid)
      if cur ~= cid then
        touched[cur] = true
        moved = true
      end
    end
  end
  touched[cid] = true
  -- Logged only when it moved someone: a replayed batch (same token) re-applies it as a no-op. Only
  -- stored records are named (one erased since the decision is not written back into the log).
  if moved then redis.call('RPUSH', p .. 'log', 's' .. cjson.encode({founder, stored})) end
end

local function split(m)
  local old = resolve(m.split)
  for _, piece in ipairs(m.pieces) do
    split_piece(piece[1], piece[2], piece[3])
  end
  touched[old] = true
end

-- A decision (or a late link) whose merges were *partly* done already (another member merged one of its
-- clusters after this member named them, before this write) would announce that cluster a second time:
-- with ops.check the batch is refused before anything is written ({-1}); the member names the clusters
-- again, rebuilds its events and writes again. Merges are replayed on a scratch union of the resolved ids;
-- a record already stored (the same batch again) is not judged; a batch with a split is not checked.
if ops.check then
  local has_split = false
  for _, m in ipairs(ops.merges) do if m.split then has_split = true end end
  if not has_split then
    local rep, done, todo = {}, {}, {}
    local function find(c)
      c = resolve(c)
      while rep[c] do c = rep[c] end
      return c
    end
    for j, m in ipairs(ops.merges) do
      local i = m[3] or 0
      local owner = -j
      if i > 0 then
        owner = i
        if redis.call('EXISTS', p .. 'rec:' .. ops.recs[i][1]) == 1 then owner = nil end
      end
      for _, a in ipairs(m[2]) do
        local s, x = find(m[1]), find(a)
        if s == x then
          if owner then done[owner] = true end
        else
          rep[x] = s
          if owner then todo[owner] = true end
        end
      end
    end
    for owner, _ in pairs(done) do
      if todo[owner] then return {-1} end
    end
  end
end

-- The record hash keeps the token's first 16 hex digits and the write time as epoch ms (ops.now_ms): with
-- both the hash fits the next jemalloc size class down (328 -> 296 bytes). Records written before hold the
-- full token and the ISO time; both are still recognised (consumer/store/redis.py reads either time).
local short_token = string.sub(token, 1, 16)
local n_new = 0
local conflicts = {}
local fresh = {}
for ri, r in ipairs(ops.recs) do
  local rid, cid, founder = r[1], r[2], r[3]
  local key = p .. 'rec:' .. rid
  local prev = redis.call('HGET', key, 'batch')
  if prev then
    if prev ~= token and prev ~= short_token then table.insert(conflicts, rid) end
  else
    -- A record founding its own cluster names it after itself: never forwarded (an id erased earlier, sent
    -- again, is a new record; the pointer left by its old cluster must not capture it).
    local c = cid
    if founder == rid then redis.call('DEL', p .. 'fwd:' .. cid) else c = resolve(cid) end
    local meta = p .. 'clmeta:' .. c
    if founder ~= rid and r[8] and redis.call('EXISTS', meta) == 0
        and redis.call('EXISTS', p .. 'rec:' .. founder) == 0 then
      -- Decided into a cluster whose founder was erased a moment ago: the record founds its own
      -- (r[8] = its own cluster id) rather than write the erased id back as a founder.
      founder, c = rid, r[8]
      meta = p .. 'clmeta:' .. c
    end
    if redis.call('EXISTS', meta) == 0 then
      redis.call('HSET', meta, 'founder', founder, 'created', now)
    else
      founder = redis.call('HGET', meta, 'founder')
    end
    local seq = redis.call('INCR', p .. 'seq')
    -- Small fields only in the hash, so Redis keeps it in its compact listpack encoding (a hash with one
    -- value over hash-max-listpack-value, 64 bytes by default, becomes a hashtable: ~800 bytes more);
    -- the payload and the stored events are plain strings beside it.
    redis.call('HSET', key, 'seq', seq, 'founder', founder, 'cluster', c, 'batch', short_token,
               'written', ops.now_ms or now, 'fp', r[6] or '')
    -- ops.spread (a Redis Cluster store): payload and events were written into the record's own slot
    -- before this script ran (consumer/store/payloads.py); this script's slot keeps what the log agrees with.
    if not ops.spread then
      redis.call('SET', p .. 'pl:' .. rid, ARGV[4 + r[4]])
      set_events(rid, ARGV[4 + r[5]])
    end
    add_member(c, rid)
    redis.call('RPUSH', p .. 'log', 'r' .. rid)
    touched[c] = true
    n_new = n_new + 1
    fresh[ri] = true
  end
end
local applied = 0
local bridged = {}
for _, m in ipairs(ops.merges) do
  if m.split then
    split(m)
  else
    local n = 0
    for _, a in ipairs(m[2]) do n = n + merge(m[1], a) end
    applied = applied + n
    local i = m[3] or 0
    if i > 0 then bridged[i] = (bridged[i] or 0) + n end
  end
end
local demoted = {}
for i, n in pairs(bridged) do
  local r = ops.recs[i]
  if n == 0 and fresh[i] and (r[7] or 0) > 0 then
    if ops.spread then
      redis.call('HSET', p .. 'rec:' .. r[1], 'dm', '1')  -- its alternative events, written beforehand
    else
      set_events(r[1], ARGV[4 + r[7]])
    end
    table.insert(demoted, r[1])
  end
end
-- clmeta leaves out what readers default (consumer/store/redis.py, cluster_info): 'canonical' while it is the
-- founder, 'updated' while it is 'created'. Most clusters are singletons: it keeps their hash small (the
-- next jemalloc size class down, ~60 bytes per cluster).
for cid, canonical in pairs(ops.canon) do
  local c = resolve(cid)
  local meta = p .. 'clmeta:' .. c
  -- (a keeper erased since the batch was decided is not written back: the founder stands in)
  if redis.call('EXISTS', meta) == 1 and redis.call('EXISTS', p .. 'rec:' .. canonical) == 1 then
    if canonical == redis.call('HGET', meta, 'founder') then
      redis.call('HDEL', meta, 'canonical')
    else
      redis.call('HSET', meta, 'canonical', canonical)
    end
    touched[c] = true
  end
end
for c, _ in pairs(touched) do
  local meta = p .. 'clmeta:' .. c
  redis.call('HSET', meta, 'size', member_count(c))
  if redis.call('HGET', meta, 'created') ~= now then redis.call('HSET', meta, 'updated', now) end
end
for lid, layout in pairs(ops.layouts or {}) do
  redis.call('HSETNX', p .. 'layouts', lid, layout)
end
for tp, off in pairs(ops.offsets) do
  local cur = tonumber(redis.call('HGET', p .. 'offsets', tp) or '-1')
  if off > cur then redis.call('HSET', p .. 'offsets', tp, off) end
end
-- A batch registered in flight when it was polled (consumer/store/inflight.py) is written now: it leaves the
-- hash here, atomically with its state, and a member blocked on it learns so from the stream (one round
-- trip fewer per batch than deregistering after the reply). Tokens never registered (late links, erasures)
-- are not in the hash: nothing is appended.
do
  local hash, stream = p .. 'inflight', p .. 'written'
""" + DEREGISTER + r"""
end
local out = {n_new, applied, #conflicts, #raced, dropped}
for _, rid in ipairs(conflicts) do table.insert(out, rid) end
for _, rid in ipairs(raced) do table.insert(out, rid) end
for _, rid in ipairs(demoted) do table.insert(out, rid) end
return out
"""

RESOLVE_CLUSTERS = r"""
-- ARGV[1] prefix, ARGV[2..] cluster ids. Returns {resolved id, founder seq or -1, ...} per id: where each
-- cluster lives now (after merges elsewhere: forward pointers) and how old its founder is (the merge rule:
-- the older founder survives). Read-only.
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local c = ARGV[i]
  for _ = 1, 64 do
    local nxt = redis.call('GET', p .. 'fwd:' .. c)
    if not nxt then break end
    c = nxt
  end
  local seq = -1
  local f = redis.call('HGET', p .. 'clmeta:' .. c, 'founder')
  if f then seq = tonumber(redis.call('HGET', p .. 'rec:' .. f, 'seq') or '-1') end
  table.insert(out, c)
  table.insert(out, seq)
end
return out
"""

FETCH_STATES = r"""
-- KEYS: each record's hash and its payload key, in pairs. Returns {seq, founder, payload, written, fp, batch}
-- per record (nil where absent): one command for a changelog sync's records instead of two per record (the
-- payload in its own key, else in the hash's `payload` field, written before issue 12). fp and batch name a
-- payload kept in the record's own slot on a Redis Cluster (consumer/store/payloads.py). Read-only.
local out = {}
for i = 1, #KEYS, 2 do
  local f = redis.call('HMGET', KEYS[i], 'seq', 'founder', 'payload', 'written', 'fp', 'batch')
  local pl = redis.call('GET', KEYS[i + 1])
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = pl or f[3]
  out[#out + 1] = f[4]
  out[#out + 1] = f[5]
  out[#out + 1] = f[6]
end
return out
"""
