//! Lua scripts that make session updates atomic in Redis.
//!
//! A session is a hash `{rev, state, tokens}`: `state` is its JSON, `rev` counts its writes and
//! `tokens` names the last few (space-separated). An update reads `rev` and `state`, applies the
//! core on its own copy and writes back only if `rev` is still what it read (compare-and-set);
//! otherwise another instance got there first and the update is redone on the newer state. A
//! write whose answer is lost (a timeout, a dropped connection) may or may not have happened: its
//! token, looked up later, tells, even after a few more writes by other instances. Each script
//! touches one key, so it also runs on Redis Cluster.

/// `KEYS[1]` session; `ARGV[1]` the revision read; `ARGV[2]` the new state; `ARGV[3]` the
/// write's token; `ARGV[4]` how many tokens to keep ([`TOKENS_KEPT`]). 1 when written.
pub const COMPARE_AND_SET: &str = r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then return 0 end
local tokens = {}
for token in string.gmatch(redis.call('HGET', KEYS[1], 'tokens') or '', '%S+') do
  tokens[#tokens + 1] = token
end
tokens[#tokens + 1] = ARGV[3]
while #tokens > tonumber(ARGV[4]) do table.remove(tokens, 1) end
redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(ARGV[1]) + 1), 'state', ARGV[2], 'tokens', table.concat(tokens, ' '))
return 1
"#;

/// Tokens a session keeps: a write-back asks within seconds of the lost answer, while other
/// instances may have written a few times.
pub const TOKENS_KEPT: usize = 16;

/// The arguments of [`COMPARE_AND_SET`].
pub fn compare_and_set_args(rev: String, state: String, token: String) -> Vec<String> {
    vec![rev, state, token, TOKENS_KEPT.to_string()]
}

/// The hash field holding the tokens of a session's last writes.
pub const TOKENS_FIELD: &str = "tokens";

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
