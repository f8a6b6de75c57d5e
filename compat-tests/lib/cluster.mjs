// Several bandsync-server instances sharing one redis-server (PROTOCOL.md: one service over Redis).
import assert from "node:assert/strict";
import { startServer, httpGet, sleep } from "./server.mjs";
import { startRedis, keyPrefix } from "./redis.mjs";
import { connect, join, mark, waitFor, sid } from "./client.mjs";
import { joinMixed } from "./enhanced.mjs";

/** Env for an instance on `redis` (a startRedis result) with the file's key prefix. */
export const redisEnv = (redis, prefix, extra = {}) => ({
  REDIS_URL: redis.url,
  REDIS_KEY_PREFIX: prefix,
  LEGACY_PING_INTERVAL_MS: "0",
  ...extra,
});

/**
 * A redis-server and n instances on it (one key prefix). Returns {redis, prefix, env, servers,
 * add(extraEnv) (one more instance), stop()}.
 */
export async function startCluster(n, extraEnv = {}, { password } = {}) {
  const redis = await startRedis({ password });
  const prefix = keyPrefix();
  const env = redisEnv(redis, prefix, extraEnv);
  const servers = [];
  const c = {
    redis,
    prefix,
    env,
    servers,
    async add(more = {}, opts) {
      const s = await startServer({ ...env, ...more }, opts);
      servers.push(s);
      return s;
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      await redis.stop();
    },
  };
  try {
    // One after the other: instances of one service started at the same moment are tested on their own.
    for (let i = 0; i < n; i++) await c.add();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Polls GET url+path until check(response) holds; resolves with the response (rejects after timeoutMs). */
export async function pollHttp(url, check, timeoutMs = 5000, interval = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await httpGet(url);
      if (check(last)) return last;
    } catch (e) {
      last = { error: e.message };
    }
    if (Date.now() > deadline) {
      throw new Error(`GET ${url}: condition not met within ${timeoutMs} ms; last answer: ${JSON.stringify(last?.body ?? last)} (status ${last?.status})`);
    }
    await sleep(interval);
  }
}

/** Asserts GET /livez answers 200 on every server given. */
export async function assertLive(...servers) {
  for (const s of servers) {
    const r = await httpGet(`${s.url}/livez`);
    assert.equal(r.status, 200, `/livez on ${s.url}`);
    assert.equal(s.proc.exitCode, null, `instance on ${s.url} exited (code ${s.proc.exitCode})`);
  }
}

/**
 * A legacy band spread over several instances: member i connects to urls[i % urls.length] and joins
 * in order (member 0 leads). Resolves once every member has seen memberCount n, all marked clean.
 */
export async function bandAcross(urls, n, sessionId = sid("xband"), opts = {}) {
  const members = [];
  for (let i = 0; i < n; i++) members.push(await connect(urls[i % urls.length], opts));
  for (const m of members) await join(m, sessionId);
  await Promise.all(members.slice(0, -1).map((m) => waitFor(m, "user_joined", { memberCount: n }, 3000)));
  mark(...members);
  return { sessionId, members, leader: members[0], followers: members.slice(1) };
}

/**
 * The mixed session of lib/enhanced.mjs (E1 enhanced creator and leader, L1 legacy, E2 enhanced,
 * L2 legacy, joined in that order) spread over two instances: E1 and L2 on `urlA`, L1 and E2 on `urlB`.
 */
export async function mixedAcross(urlA, urlB, createExtra = {}) {
  const [e1, l2] = await Promise.all([connect(urlA), connect(urlA)]);
  const [l1, e2] = await Promise.all([connect(urlB), connect(urlB)]);
  return joinMixed([e1, l1, e2, l2], createExtra, ["E1@A", "L1@B", "E2@B", "L2@A"], 3000);
}
