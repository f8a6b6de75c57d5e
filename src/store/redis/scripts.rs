//! Lua scripts that make session updates atomic in Redis.
//!
//! A session is a hash `{rev, state}`: `state` is its JSON, `rev` counts its writes (and, once an
//! outage's changes were written back, `writeback`: the token of the last write-back). An update
//! reads both, applies the core on its own copy and writes back only if `rev` is still what it
//! read (compare-and-set); otherwise another instance got there first and the update is redone on
//! the newer state. Each script touches one key, so it also runs on Redis Cluster.

/// `KEYS[1]` session; `ARGV[1]` the revision read; `ARGV[2]` the new state. 1 when written.
pub const COMPARE_AND_SET: &str = r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(ARGV[1]) + 1), 'state', ARGV[2])
return 1
"#;

/// `KEYS[1]` session; `ARGV[1]` the revision read; `ARGV[2]` the new state; `ARGV[3]` the
/// write-back's token, kept in the hash so that a write-back whose answer was lost can learn
/// whether it was written. 1 when written.
pub const WRITE_BACK: &str = r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(ARGV[1]) + 1), 'state', ARGV[2], 'writeback', ARGV[3])
return 1
"#;

/// `KEYS[1]` session; `ARGV[1]` the state. Writes whatever is there (the write-back after an
/// outage, where this instance's changes are the newest the band made).
pub const OVERWRITE: &str = r#"
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
redis.call('HSET', KEYS[1], 'rev', tostring(rev + 1), 'state', ARGV[1])
return rev + 1
"#;

/// `KEYS[1]` session; `ARGV[1]` the revision read. Deletes only an unchanged session. 1 when deleted.
pub const COMPARE_AND_DELETE: &str = r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;
