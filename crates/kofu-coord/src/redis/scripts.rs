//! The Lua scripts behind every fenced write. Each runs atomically on the Redis primary
//! and touches the keys of one shard only; every check comes before the first write, so
//! a refused script leaves nothing behind (Redis does not roll back a script that fails
//! half-way). No script reads the clock (`TIME`) on the session path: the only time that
//! matters there, the audit retention's, is the primary's clock as the id of the stream
//! entry just added (scripts are replicated by their effects, so replicas apply the same
//! ids); lease epochs are floored by the acquirer's clock (`ACQUIRE`).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: lease, epoch. ARGV: node id, ttl ms, epoch floor. Returns the new epoch, or
/// nil if held.
///
/// Epochs never repeat, so neither a fence nor the serials that embed its epoch can come
/// back: (1) the caller uses an epoch only once `WAIT` reported the replicas have this
/// write (`RedisLeases::with_replicas`), so the counter a promoted replica continues
/// from is at least that epoch; (2) should Redis still lose it (a restart without
/// persistence, a promoted replica that missed it), the floor, the acquirer's clock in
/// ms, puts every later epoch above every earlier one as long as clocks disagree by less
/// than the time between the two acquisitions; and (3) the fence is the whole
/// `node:epoch`, so even a repeated number fences out every other node.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch < floor then
  redis.call('SET', KEYS[2], ARGV[3])
  epoch = floor
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
";

/// KEYS: lease. ARGV: `node:epoch`, ttl ms. Returns 1 if this exact lease was extended.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// KEYS: lease. ARGV: `node:epoch`. Returns 1 if this exact lease was dropped.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

// The fence check shared by the fenced scripts: the lease must exist and be exactly
// `node:epoch` of the caller. The epoch alone would not do: a paused former owner must
// not write after its lease expired, and another node's lease with the same epoch
// number (Redis lost the counter, a skewed floor) is not this node's.
macro_rules! fence_check {
    () => {
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
"
    };
}

/// KEYS: 1 lease, 2 serial, 3 the session's audited set, 4 audit stream, 5 snapshot,
/// 6 the shard's sessions index, 7 the audit stream's export mark, 8 card lock (only
/// with a lock op). ARGV: 1 `node:epoch`,
/// 2 session id, 3 allocate serial (`0`|`1`), 4 lock op (`N`|`A`|`R`), 5 kiosk id,
/// 6 state ttl ms (locks, snapshots), 7 snapshot op (`K`eep|`P`ut|`D`elete|`T`ombstone),
/// 8 snapshot bytes, 9 tombstone ttl ms, 10 audit retention ms, 11 audit member
/// (`session/job`, empty for none), 12 the writer's clock in ms (the index entry's score,
/// informational: nothing reads it), 13.. audit fields and values.
///
/// Returns `{0}` when fenced, else `{1, serial or -1, lock, audit, replaced}` with lock 0
/// none, 1 acquired, 2 released, 3 not held, 4 in use by another kiosk (nothing
/// written), audit 0 none, 1 recorded, 2 duplicate, and replaced the id of the same
/// kiosk's older session whose lock an acquire took over (empty for none).
///
/// Every command counts (this runs several times per session): the common paths use one
/// command per effect. A lock is taken with `SET NX` (a free card, the common case) and
/// read only when that fails. The index is written only when a session's state appears
/// (the `SET ... GET` of a put finds none before it: the session's first put) and when it
/// ends (delete, tombstone); nothing refreshes it on later puts, since the listing checks
/// each entry's snapshot itself and prunes those that expired (`LIST_SESSIONS`). The
/// audited set is its own duplicate check (`SADD` answers 0 for a member it holds) and
/// gets its expiry at each print, not at each put: twice the state ttl, so it outlives
/// the snapshot of its session (whose last write comes within the hard limit, less than
/// the state ttl, of its start, which is before the print). The audit stream is trimmed by the clock of
/// the entry just added (its id, the primary's clock), at about one print in 16, and
/// never past its export mark (`keys::audit_exported`): an entry no export handed over
/// stays, however old. One `DEL` drops every key a change ends.
///
/// Memory follows the sessions open: the audited set goes with the session's close (or
/// with the listing that finds the session expired, or its own expiry), and the audit
/// stream drops exported entries older than the retention.
const APPLY: &str = concat!(
    fence_check!(),
    r"
local ttl = tonumber(ARGV[6])
local lock = 0
local replaced = ''
if ARGV[4] == 'A' then
  local mine = ARGV[2] .. '|' .. ARGV[5]
  if not redis.call('SET', KEYS[8], mine, 'NX', 'PX', ttl) then
    local held = redis.call('GET', KEYS[8])
    if held and string.match(held, '|(.*)$') ~= ARGV[5] then
      return {1, -1, 4, 0, ''}
    end
    if held and string.match(held, '^(.-)|') ~= ARGV[2] then
      replaced = string.match(held, '^(.-)|')
    end
    redis.call('SET', KEYS[8], mine, 'PX', ttl)
  end
  lock = 1
end
local audit = 0
if ARGV[11] ~= '' then
  if redis.call('SADD', KEYS[3], ARGV[11]) == 0 then
    audit = 2
  else
    redis.call('PEXPIRE', KEYS[3], 2 * ttl)
    local fields = {}
    for i = 13, #ARGV do
      fields[#fields + 1] = ARGV[i]
    end
    local id = redis.call('XADD', KEYS[4], '*', unpack(fields))
    local ms = tonumber(string.match(id, '^(%d+)'))
    if ms % 16 == 0 then
      local mark = redis.call('GET', KEYS[7])
      if mark then
        local oldest = math.max(0, ms - tonumber(ARGV[10]))
        local mark_ms = tonumber(string.match(mark, '^(%d+)'))
        local upto = mark
        if oldest <= mark_ms then
          upto = string.format('%.0f', oldest)
        end
        redis.call('XTRIM', KEYS[4], 'MINID', '~', upto)
      end
    end
    audit = 1
  end
end
local serial = -1
if ARGV[3] == '1' then
  serial = redis.call('INCR', KEYS[2])
end
local gone = {}
if ARGV[4] == 'R' then
  local held = redis.call('GET', KEYS[8])
  local mine = ARGV[2] .. '|'
  if held and string.sub(held, 1, #mine) == mine then
    gone[#gone + 1] = KEYS[8]
    lock = 2
  else
    lock = 3
  end
end
if ARGV[7] == 'P' then
  if not redis.call('SET', KEYS[5], ARGV[8], 'PX', ttl, 'GET') then
    redis.call('ZADD', KEYS[6], ARGV[12], ARGV[2])
  end
elseif ARGV[7] == 'D' then
  gone[#gone + 1] = KEYS[5]
  gone[#gone + 1] = KEYS[3]
  redis.call('ZREM', KEYS[6], ARGV[2])
elseif ARGV[7] == 'T' then
  redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9])
  gone[#gone + 1] = KEYS[3]
  redis.call('ZREM', KEYS[6], ARGV[2])
end
if #gone > 0 then
  redis.call('DEL', unpack(gone))
end
return {1, serial, lock, audit, replaced}
"
);

/// KEYS: 1 lease, 2 snapshot. ARGV: 1 `node:epoch`. Returns `{0}` when fenced, `{1}`
/// when there is no snapshot, `{1, bytes, ms to live}` otherwise: every put sets the
/// same ttl, so what is left of it tells the snapshot's age by Redis's clock.
const LOAD_SNAPSHOT: &str = concat!(
    fence_check!(),
    r"
local snap = redis.call('GET', KEYS[2])
if not snap then
  return {1}
end
return {1, snap, redis.call('PTTL', KEYS[2])}
"
);

/// KEYS: 1 lease, 2 the shard's sessions index. ARGV: 1 `node:epoch`, 2 `ZSCAN` cursor,
/// 3 count hint, 4 the shard's snapshot key prefix, 5 its audited set key prefix.
/// Returns `{0}` when fenced, else `{1, next cursor, session...}` with the sessions whose
/// snapshot is there; an entry whose snapshot expired is pruned here, with the session's
/// audited set (puts do not refresh the index, so this is where expired entries go: at
/// every takeover's sweep). The keys it derives from the prefixes share the index's hash
/// tag, so the script stays in one Redis Cluster slot. `ZSCAN` returns every member
/// present for the whole scan at least once, and a small index in one call.
const LIST_SESSIONS: &str = concat!(
    fence_check!(),
    r"
local page = redis.call('ZSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local out = {1, page[1]}
local items = page[2]
for i = 1, #items, 2 do
  local id = items[i]
  if redis.call('EXISTS', ARGV[4] .. id) == 1 then
    out[#out + 1] = id
  else
    redis.call('ZREM', KEYS[2], id)
    redis.call('DEL', ARGV[5] .. id)
  end
end
return out
"
);

/// KEYS: 1 record, 2 where the current version is kept once superseded. ARGV: expected
/// bytes, new bytes, history ttl ms. Sets only if the value is still the one read, so
/// concurrent read-modify-writes of a record never lose an update; the superseded
/// version stays readable for the history TTL. With new == expected it writes the same
/// bytes again (no history): a write for a following `WAIT` to cover, so that an answer
/// read from the record is reported only once the replicas have it.
const COMPARE_AND_SET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  if ARGV[1] ~= ARGV[2] then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
  end
  return 1
end
return 0
";

pub static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
pub static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
pub static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
pub static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY));
pub static LOAD_SNAPSHOT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOAD_SNAPSHOT));
pub static LIST_SESSIONS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST_SESSIONS));
pub static CAS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPARE_AND_SET));
