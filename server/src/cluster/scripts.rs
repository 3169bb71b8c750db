//! The Lua scripts that make each cluster operation one atomic step in Redis (run with
//! `EVALSHA`, loaded on `NOSCRIPT`). Seqs are formatted with `%d`: Lua 5.1 numbers are
//! doubles, exact below 2^53, but `tostring` would print 16-digit seqs in exponent form.
//!
//! Keys of user U (prefix P): `P:{U}:m` (hash: `s` last seq, `a` ack cursor), `P:{U}:h`
//! (Stream, entry id `<seq>-0`, fields `p` payload, `t` publish ms, `r` priority digit;
//! `m`'s `hb` holds the Stream's size in bytes),
//! `P:{U}:n` (hash: node id → U's connections there). Cluster keys: `P:floor` (every new
//! or stale user state starts at or above it), `P:inst` (the `run_id` of the Redis server
//! the floor was last checked against), `P:node:<id>` (a node's lease), `P:i:<key>`
//! (idempotency: `h` request hash, `s` seq, `c` connections). See `docs/cluster.md`.
//!
//! # Merged deltas
//!
//! As the embedded history does, the Stream keeps a message's consecutive `message_delta`
//! events as one entry, so a long answer counts as a few entries against `history_len`, not
//! one per token. Every delta entry carries `mk` (its merge key: run and message, computed by
//! the node, so the script parses no JSON) and `d` (its own escaped text). A publish whose
//! previous event (seq `s`) is the newest entry, a delta with the same `mk`, replaces it: the
//! new entry (id `<s + 1>-0`) keeps the new piece's payload in `p` and adds `sf` (the first
//! seq covered), `x` (the earlier pieces' escaped text, concatenated), `l` (their lengths,
//! comma-separated), `k` (how many) and `b` (its size for `hb`: the newest piece's entry
//! size, plus `x`, plus 16 bytes per earlier piece); `r` is the pieces' highest priority and
//! `t` the newest's time. Readers rebuild the run with its cuts (`wire::StoredEntry`).
//!
//! **Why a cap ([`MAX_STORED_MERGE_BYTES`]).** Replacing the newest entry copies it: Lua reads
//! it (`XREVRANGE`), concatenates `x`, and `XADD` writes it again, so each token costs
//! O(the entry's text), and a run of n bytes O(n²) in total. Redis runs scripts one at a
//! time, so that cost stalls every user's publishes. At 4 KiB a token copies at most ~4 KiB
//! (~2 KiB on average; measured in `docs/cluster.md`), and a message is one entry per 4 KiB
//! of text; the node merges those entries again when it reads them (the engine's own bound,
//! `MAX_MERGED_BYTES`, is 64 KiB), so a replay is still one delta.

use redis::Script;

/// The most escaped text one merged delta entry in the Stream holds (see the
/// [module docs](self)).
pub(crate) const MAX_STORED_MERGE_BYTES: usize = 4 * 1024;

/// The merge key of a delta of `message_id` (its raw JSON) in run `run_id`: two deltas merge
/// only with equal keys. `<run id length>:<run id><message id>`, the same on every node.
pub(crate) fn merge_key(run_id: Option<&str>, message_id: &[u8]) -> Vec<u8> {
    let run = run_id.unwrap_or("");
    let mut k = format!("{}:{run}", run.len()).into_bytes();
    if run_id.is_none() {
        // No run and an empty run differ.
        k = b"-:".to_vec();
    }
    k.extend_from_slice(message_id);
    k
}

/// The user's state, normalized: a new incarnation (no `m`) starts at `max(now × 1000,
/// floor)`, a stale one (below the floor: written before a suspected loss) is raised to it.
/// Defines `now`, `s`, `a` and `hb` (the Stream's bytes). KEYS[1] = m, KEYS[2] = h,
/// KEYS[3] = floor. One `HMGET` reads the state.
const NORMALIZE: &str = r"
local function fmt(x) return string.format('%d', x) end
local function entry_size(p)
  local len = string.len(p)
  local header = 2
  if len > 65535 then header = 10 elseif len > 125 then header = 4 end
  return len + header + tonumber(ARGV[15] or '0')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local floor = tonumber(redis.call('GET', KEYS[3]) or '0')
local state = redis.call('HMGET', KEYS[1], 's', 'a', 'hb')
local s = tonumber(state[1] or '-1')
local a
local hb = tonumber(state[3] or '0')
if s < 0 then
  s = math.max(now * 1000, floor)
  a = s
  hb = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 's', fmt(s), 'a', fmt(a), 'hb', '0')
else
  a = tonumber(state[2] or '0')
  if s < floor then
    s = floor
    redis.call('HSET', KEYS[1], 's', fmt(s))
  end
  if a > s then a = s end
end
";

/// Publish to a user. KEYS: m h floor n idem dl. ARGV: 1 head, 2 tail, 3 priority digit,
/// 4 history length, 5 state TTL ms, 6 request hash ('' without a key), 7 idempotency
/// window ms, 8 the user's channel, 9 the node-lease key prefix, 10 kind index,
/// 11 coalesce run ('' for none), 12 ack deadline ms (0: none), 13 the user id, 14 the
/// history byte bound (`max_history_bytes_per_user`; sizes as `HistoryRing` counts them:
/// frame length + `ENTRY_OVERHEAD`, kept in `m`'s `hb`), 15 `ENTRY_OVERHEAD`, 16 the merge
/// key of a `message_delta` (`''` for any other event: see [`merge_key`]), 17 its escaped
/// text, 18 [`MAX_STORED_MERGE_BYTES`]. A critical
/// event's deadline goes into `dl` (member `<seq>|<user>`, score the due ms). Returns `{0, seq, connections}`, or `{1, seq,
/// connections}` for a repeat of a keyed request, or `{2}` for a key reused with another
/// request.
///
/// A delta whose previous event is the Stream's newest entry, a delta with the same merge
/// key, replaces that entry (`XDEL`, then `XADD` at the new seq: greater than the deleted
/// top, so valid) while the merged text stays within ARGV 18; see the [module docs](self).
const PUBLISH_USER: &str = r"
local hash = ARGV[6]
if hash ~= '' then
  local prev = redis.call('HMGET', KEYS[5], 'h', 's', 'c')
  if prev[1] then
    if prev[1] == hash then return {1, prev[2], prev[3]} end
    return {2, '0', '0'}
  end
end
-- NORMALIZE
local prio = ARGV[3]
local seq = fmt(s + 1)
local payload = ARGV[1] .. seq .. ARGV[2]
local hl = tonumber(ARGV[4])
local maxb = tonumber(ARGV[14])
local size = entry_size(payload)
local n = redis.call('XLEN', KEYS[2])
-- A delta (merge key ARGV[16]) continues the newest entry when that is the previous event
-- (id `<s>-0`) and a delta of the same message, and the text stays within ARGV[18] bytes:
-- the entry is replaced by one that also covers this seq.
local mk = ARGV[16] or ''
local extra = {}
if mk ~= '' then
  extra = {'mk', mk, 'd', ARGV[17]}
  if hl > 0 and n > 0 then
    local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
    if top and top[1] == fmt(s) .. '-0' then
      local f = {}
      for i = 1, #top[2], 2 do f[top[2][i]] = top[2][i + 1] end
      local x = f['x'] or ''
      if f['mk'] == mk and f['d'] and f['p']
        and string.len(x) + string.len(f['d']) + string.len(ARGV[17]) <= tonumber(ARGV[18]) then
        local k = tonumber(f['k'] or '0') + 1
        local lens = string.len(f['d'])
        if f['l'] then lens = f['l'] .. ',' .. lens end
        x = x .. f['d']
        -- What it holds: the newest piece's entry, the earlier text, 16 bytes per earlier
        -- piece (the embedded history's cost of a cut).
        size = size + string.len(x) + 16 * k
        if (f['r'] or '0') > prio then prio = f['r'] end
        extra = {'mk', mk, 'd', ARGV[17], 'sf', f['sf'] or fmt(s), 'x', x, 'l', lens,
          'k', fmt(k), 'b', fmt(size)}
        -- The replaced entry's bytes and place are free again (one out, one in).
        hb = hb - (tonumber(f['b'] or '') or entry_size(f['p']))
        redis.call('XDEL', KEYS[2], top[1])
        n = n - 1
      end
    end
  end
end
if hl > 0 and size <= maxb then
  -- Trim the front to make room: count and bytes (`hb`), at most 1,000 entries per publish
  -- (XADD's MAXLEN stays the count bound's guard; `hb` can then only overcount).
  local removed = 0
  -- One entry first (the steady state of a full history: one out, one in), then 8 at a time.
  local batch = 1
  while (n >= hl or hb + size > maxb) and removed < 1000 do
    local front = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', batch)
    batch = 8
    if #front == 0 then hb = 0 n = 0 break end
    for _, e in ipairs(front) do
      if not (n >= hl or hb + size > maxb) then break end
      local f = e[2]
      local b
      for i = 1, #f, 2 do
        if f[i] == 'b' then b = tonumber(f[i + 1]) end
        if f[i] == 'p' and not b then b = entry_size(f[i + 1]) end
      end
      hb = hb - (b or 0)
      redis.call('XDEL', KEYS[2], e[1])
      n = n - 1
      removed = removed + 1
    end
  end
  if hb < 0 then hb = 0 end
  redis.call('XADD', KEYS[2], 'MAXLEN', hl, seq .. '-0', 'p', payload, 't', fmt(now), 'r', prio, unpack(extra))
  hb = hb + size
else
  -- Not kept at all (no history, or larger than the byte bound): everything before goes
  -- too, so the held seqs stay a contiguous run and a resume sees one gap (as embedded).
  redis.call('DEL', KEYS[2])
  hb = 0
end
redis.call('HSET', KEYS[1], 's', seq, 'hb', fmt(hb))
if ARGV[3] == '2' and tonumber(ARGV[12]) > 0 then
  redis.call('ZADD', KEYS[6], now + tonumber(ARGV[12]), seq .. '|' .. ARGV[13])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local c = 0
local fields = redis.call('HGETALL', KEYS[4])
for i = 1, #fields, 2 do
  if redis.call('EXISTS', ARGV[9] .. fields[i]) == 1 then
    c = c + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[4], fields[i])
  end
end
redis.call('PUBLISH', ARGV[8], ARGV[3] .. ' ' .. seq .. ' ' .. fmt(now) .. ' ' .. ARGV[10] .. ' ' .. string.len(ARGV[11]) .. '\n' .. ARGV[11] .. payload)
if hash ~= '' then
  redis.call('HSET', KEYS[5], 'h', hash, 's', seq, 'c', fmt(c))
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
end
return {0, seq, fmt(c)}
";

/// A new connection of a user on this node. KEYS: m h floor n. ARGV: 1 resume point ('' =
/// the ack cursor), 2 entries at most, 3 node id, 4 state TTL ms, 5 the user's connection
/// limit (the tier's, cluster-wide), 6 the node-lease key prefix, 7 `'1'` for a join that
/// rewinds to the open run's start (the AG-UI join prelude), else `''`. Returns `{s, a, from,
/// entries}`: the newest held entries after `from` (with ARGV 7: the newest held entries,
/// those at or below `from` included), oldest first; or `{'LIMIT'}` when the user already has
/// that many connections on live nodes (nothing counted).
const OPEN_USER: &str = r"
local open = 0
local fields = redis.call('HGETALL', KEYS[4])
for i = 1, #fields, 2 do
  if redis.call('EXISTS', ARGV[6] .. fields[i]) == 1 then open = open + tonumber(fields[i + 1]) end
end
if open >= tonumber(ARGV[5]) then return {'LIMIT'} end
-- NORMALIZE
local from = a
if ARGV[1] ~= '' then from = tonumber(ARGV[1]) end
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
redis.call('HSET', KEYS[1], 'e', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
local entries = {}
if ARGV[7] == '1' then
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
  for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
elseif from < s then
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '(' .. fmt(from) .. '-0', 'COUNT', ARGV[2])
  for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
end
return {fmt(s), fmt(a), fmt(from), entries}
";

/// An ack: the cursor moves up, never past the last seq. KEYS: m. ARGV: 1 seq.
const ACK_USER: &str = r"
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
if s < 0 then return 0 end
local a = tonumber(redis.call('HGET', KEYS[1], 'a') or '0')
local q = math.min(tonumber(ARGV[1]), s)
if q > a then redis.call('HSET', KEYS[1], 'a', string.format('%d', q)) end
return 1
";

/// A connection of a user on this node closed. KEYS: n. ARGV: 1 node id.
const CLOSE_USER: &str = r"
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
";

/// A channel or broadcast event. KEYS: idem. ARGV: 1 request hash ('' without a key),
/// 2 idempotency window ms, 3 the fan-out channel, 4 the message. Returns `{0, nodes}`, or
/// `{1, connections}` for a repeat, or `{2}` for a key reused with another request.
const PUBLISH_FANOUT: &str = r"
local hash = ARGV[1]
if hash ~= '' then
  local prev = redis.call('HMGET', KEYS[1], 'h', 'c')
  if prev[1] then
    if prev[1] == hash then return {1, tonumber(prev[2] or '0')} end
    return {2, 0}
  end
end
local n = redis.call('PUBLISH', ARGV[3], ARGV[4])
if hash ~= '' then
  redis.call('HSET', KEYS[1], 'h', hash, 'c', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {0, n}
";

/// Overdue critical events: each due member of `dl` is removed (so exactly one node, the
/// one whose script ran first, gets it) and returned unless the user's ack cursor reached
/// it (a critical delta merged into a later entry is read from that entry). KEYS: dl. ARGV: 1 at most this many, 2 the key prefix. Returns `{user, seq, publish
/// ms, payload, connections, ever connected}` per event. The user keys are derived here,
/// which standalone Redis allows (not Redis Cluster: docs/cluster.md, open question 4).
const CLAIM_OVERDUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local bar = string.find(member, '|', 1, true)
  if bar then
    local seq = string.sub(member, 1, bar - 1)
    local user = string.sub(member, bar + 1)
    local base = ARGV[2] .. ':{' .. user .. '}:'
    local a = redis.call('HGET', base .. 'm', 'a')
    if (not a) or tonumber(a) < tonumber(seq) then
      local p, pt = '', '0'
      -- The entry holding seq: its own, or the merged deltas whose range covers it (their
      -- id is the last seq they cover; `p` is then the newest piece, of the same message).
      local e = redis.call('XRANGE', base .. 'h', seq .. '-0', '+', 'COUNT', 1)
      if e[1] then
        local f = e[1][2]
        local sf = string.sub(e[1][1], 1, -3)
        for i = 1, #f, 2 do
          if f[i] == 'p' then p = f[i + 1] elseif f[i] == 't' then pt = f[i + 1]
          elseif f[i] == 'sf' then sf = f[i + 1] end
        end
        if (tonumber(sf) or 0) > tonumber(seq) then p, pt = '', '0' end
      end
      local c = 0
      local n = redis.call('HGETALL', base .. 'n')
      for i = 1, #n, 2 do c = c + tonumber(n[i + 1]) end
      local ever = redis.call('HGET', base .. 'm', 'e') or '0'
      out[#out + 1] = {user, seq, pt, p, tostring(c), ever}
    end
  end
end
return out
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) publish_user: Script,
    pub(crate) open_user: Script,
    pub(crate) ack_user: Script,
    pub(crate) close_user: Script,
    pub(crate) publish_fanout: Script,
    pub(crate) claim_overdue: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let with_normalize = |src: &str| Script::new(&src.replace("-- NORMALIZE", NORMALIZE));
        Scripts {
            publish_user: with_normalize(PUBLISH_USER),
            open_user: with_normalize(OPEN_USER),
            ack_user: Script::new(ACK_USER),
            close_user: Script::new(CLOSE_USER),
            publish_fanout: Script::new(PUBLISH_FANOUT),
            claim_overdue: Script::new(CLAIM_OVERDUE),
        }
    }
}
