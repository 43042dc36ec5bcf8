//! The Lua scripts behind every fenced write. Each runs atomically on the Redis primary
//! and touches the keys of one shard only; every check comes before the first write, so
//! a refused script leaves nothing behind (Redis does not roll back a script that fails
//! half-way).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: lease, epoch. ARGV: node id, ttl ms, epoch floor. Returns the new epoch, or
/// nil if held. The floor (the caller's clock in ms) keeps epochs rising even after a
/// Redis that lost its data: a former owner's epoch is never handed out again, so
/// neither its fence nor the serials that embed it can repeat.
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

// The fence check shared by the fenced scripts. The lease must exist *and* carry the
// fence's epoch: checking the epoch counter alone would let a paused former owner write
// after its lease expired but before anyone took the shard over.
macro_rules! fence_check {
    () => {
        r"
local lease = redis.call('GET', KEYS[1])
if (not lease) or string.match(lease, ':(%d+)$') ~= ARGV[1] then
  return {0}
end
"
    };
}

/// KEYS: 1 lease, 2 serial, 3 audited set, 4 audit stream, 5 snapshot, 6 card lock (only
/// with a lock op). ARGV: 1 epoch, 2 session id, 3 allocate serial (`0`|`1`), 4 lock op
/// (`N`|`A`|`R`), 5 kiosk id, 6 ttl ms of locks and snapshots, 7 snapshot op
/// (`K`|`P`|`D`), 8 snapshot bytes, 9 audit member (`session/job`, empty for none),
/// 10.. audit fields and values.
///
/// Returns `{0}` when fenced, else `{1, serial or -1, lock, audit}` with lock 0 none,
/// 1 acquired, 2 released, 3 not held, 4 in use by another kiosk (nothing written), and
/// audit 0 none, 1 recorded, 2 duplicate.
const APPLY: &str = concat!(
    fence_check!(),
    r"
if ARGV[4] == 'A' then
  local held = redis.call('GET', KEYS[6])
  if held and string.match(held, '|(.*)$') ~= ARGV[5] then
    return {1, -1, 4, 0}
  end
end
local audit = 0
if ARGV[9] ~= '' then
  if redis.call('SISMEMBER', KEYS[3], ARGV[9]) == 1 then
    audit = 2
  else
    local fields = {}
    for i = 10, #ARGV do
      fields[#fields + 1] = ARGV[i]
    end
    redis.call('XADD', KEYS[4], '*', unpack(fields))
    redis.call('SADD', KEYS[3], ARGV[9])
    audit = 1
  end
end
local serial = -1
if ARGV[3] == '1' then
  serial = redis.call('INCR', KEYS[2])
end
local lock = 0
if ARGV[4] == 'A' then
  redis.call('SET', KEYS[6], ARGV[2] .. '|' .. ARGV[5], 'PX', ARGV[6])
  lock = 1
elseif ARGV[4] == 'R' then
  local held = redis.call('GET', KEYS[6])
  local mine = ARGV[2] .. '|'
  if held and string.sub(held, 1, #mine) == mine then
    redis.call('DEL', KEYS[6])
    lock = 2
  else
    lock = 3
  end
end
if ARGV[7] == 'P' then
  redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[6])
elseif ARGV[7] == 'D' then
  redis.call('DEL', KEYS[5])
end
return {1, serial, lock, audit}
"
);

/// KEYS: 1 lease, 2 snapshot. ARGV: 1 epoch. Returns `{0}` when fenced, `{1}` when there
/// is no snapshot, `{1, bytes}` otherwise.
const LOAD_SNAPSHOT: &str = concat!(
    fence_check!(),
    r"
local snap = redis.call('GET', KEYS[2])
if not snap then
  return {1}
end
return {1, snap}
"
);

/// KEYS: key. ARGV: expected bytes, new bytes. Sets only if the value is still the one
/// read, so concurrent read-modify-writes of a record never lose an update.
const COMPARE_AND_SET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
";

pub static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
pub static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
pub static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
pub static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY));
pub static LOAD_SNAPSHOT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOAD_SNAPSHOT));
pub static CAS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPARE_AND_SET));
