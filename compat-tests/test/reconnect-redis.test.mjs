// A network drop with several instances on one Redis: a held seat is visible to, counts on, and
// can be taken back on every instance, and an instance lost while holding seats has each one still
// held there ended once. (The single-instance cases are in reconnect.test.mjs.)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { httpGet } from "../lib/server.mjs";
import { closeAll, connect, events, expectNo, mark, sleep, waitFor } from "../lib/client.mjs";
import { ackError, ackOk, createSession, enhancedJoin } from "../lib/enhanced.mjs";
import { startCluster, pollHttp } from "../lib/cluster.mjs";
import { closeProxies, dropFor, onStage } from "../lib/proxy.mjs";

const GRACE_MS = 8000;

after(async () => {
  closeAll();
  await closeProxies();
});

const named = (socket, name) => events(socket).filter((e) => e.event === name);

test("two instances on Redis: a seat held on A counts against capacity, shows on B, and is taken back on B", async (ctx) => {
  const cluster = await startCluster(2, { RESUME_GRACE_MS: String(GRACE_MS) });
  ctx.after(() => cluster.stop());
  const [a, b] = cluster.servers;
  const stage = await onStage(a.port);
  const { socket: leader } = stage;
  const { sessionId } = await createSession(leader, { userId: "u-keys", maxMembers: 2 });
  const follower = await connect(b.url);
  await enhancedJoin(follower, sessionId);
  await ackOk(leader, "metronome:start", { sessionId });
  const oldId = leader.id;

  // The network drops, and the balancer sends the client's reconnection to B.
  stage.proxy.retarget(b.port);
  const back = dropFor(stage, 2000);
  await waitFor(follower, "session:member_update", { action: "reconnecting", socketId: oldId }, 3000);
  const onB = await pollHttp(`${b.url}/api/sessions/${sessionId}`, (r) =>
    r.body?.members?.some((m) => m.socketId === oldId && m.reconnecting),
  );
  assert.equal(onB.body.members.length, 2);
  const latecomer = await connect(b.url);
  await ackError(latecomer, "session:join", { sessionId }, "SESSION_FULL");

  const newId = await back;
  const answer = await ackOk(leader, "session:join", { sessionId, userId: "u-keys" });
  assert.deepEqual([answer.resumed, answer.member.role], [true, "leader"]);
  await waitFor(follower, "leader:election", { newLeader: newId, reason: "resumed" }, 2000);

  // A's grace for the old connection runs out: nothing happens, on any instance.
  mark(follower);
  await sleep(GRACE_MS);
  await expectNo(follower, "session:member_update", 300);
  for (const server of [a, b]) {
    const session = (await httpGet(`${server.url}/api/sessions/${sessionId}`)).body;
    assert.deepEqual(
      session.members.map((m) => [m.socketId === newId, m.role, m.reconnecting]),
      [
        [true, "leader", false],
        [false, "follower", false],
      ],
      `on ${server.url}`,
    );
    assert.equal(session.isPlaying, true);
  }
});

test("an instance lost while it holds seats: the sweep ends each seat still held there once, and not one taken back on another instance", async (ctx) => {
  // A grace longer than the test: only the sweep for the lost instance can end a seat held on A.
  const cluster = await startCluster(2, { RESUME_GRACE_MS: "60000" });
  ctx.after(() => cluster.stop());
  const [a, b] = cluster.servers;
  const observer = await connect(b.url);
  const { sessionId } = await createSession(observer, { userId: "u-observer" });
  const stranded = await onStage(a.port);
  const returning = await onStage(a.port);
  await enhancedJoin(stranded.socket, sessionId, { userId: "u-stranded" });
  await enhancedJoin(returning.socket, sessionId, { userId: "u-returning" });
  const [strandedId, returningId] = [stranded.socket.id, returning.socket.id];
  mark(observer);

  // Both lose their network; one comes back through the balancer, to B, and takes its seat back.
  stranded.proxy.cut(600_000);
  returning.proxy.retarget(b.port);
  const newId = await dropFor(returning, 1500);
  assert.equal((await ackOk(returning.socket, "session:join", { sessionId, userId: "u-returning" })).resumed, true);

  const t0 = Date.now();
  await a.kill();
  const left = await waitFor(observer, "session:member_update", { action: "left", socketId: strandedId }, 20_000);
  ctx.diagnostic(`the seat held on the lost instance ended ${Date.now() - t0} ms after the kill`);
  assert.equal(left.memberCount, 2);
  await sleep(5000); // another sweep or two
  const leaves = named(observer, "session:member_update").filter((e) => e.data.action === "left");
  assert.deepEqual(leaves.map((e) => e.data.socketId), [strandedId], "one leave, for the seat still held on the lost instance");
  const session = (await httpGet(`${b.url}/api/sessions/${sessionId}`)).body;
  assert.deepEqual(session.members.map((m) => m.socketId).sort(), [observer.id, newId].sort());
  assert.ok(!session.members.some((m) => m.socketId === returningId));
});
