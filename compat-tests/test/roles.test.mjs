// request_leader, approve_leader_request, deny_leader_request, set_role, under LEADER_POLICY=open and =approval.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { useServers } from "../lib/setup.mjs";
import {
  connect,
  sid,
  mark,
  sleep,
  waitFor,
  expectNo,
  expectError,
  join,
  band,
  syncState,
} from "../lib/client.mjs";
import { assertSnapshot } from "../lib/shapes.mjs";

const [open, approval] = useServers({ LEADER_POLICY: "open" }, { LEADER_POLICY: "approval" });

/** A failed role request answers `<event>_result {success:false, error, code}` and `error {message, code}`. */
async function expectRoleFailure(socket, event, sessionId, code) {
  const r = await waitFor(socket, `${event}_result`);
  assert.equal(r.sessionId, sessionId);
  assert.equal(r.success, false);
  assert.equal(r.code, code);
  assert.equal(typeof r.error, "string");
  assert.ok(r.error.length > 0);
  await expectError(socket, code);
}

async function leaderOf(socket, sessionId) {
  const snap = await join(socket, sessionId);
  return snap.leaderSocketId;
}

describe("LEADER_POLICY=open", () => {
  test('set_role "leader": takes the lead at once, message "Leader connected", room snapshot', async () => {
    const b = await band(open.url, 3);
    const [a, f1] = b.members;
    f1.emit("set_role", { sessionId: b.sessionId, role: "leader" });
    for (const m of b.members) {
      const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId });
      assertSnapshot(snap);
      assert.equal(snap.leaderSocketId, f1.id);
      assert.equal(snap.message, "Leader connected");
      const roles = Object.fromEntries(snap.members.map((x) => [x.socketId, x.role]));
      assert.equal(roles[f1.id], "leader");
      assert.equal(roles[a.id], "follower");
    }
    // Powers moved with the role.
    mark(a, f1);
    a.emit("set_tempo", { sessionId: b.sessionId, tempo: 100 });
    await expectError(a, "NOT_LEADER");
    f1.emit("set_tempo", { sessionId: b.sessionId, tempo: 100 });
    assert.equal((await waitFor(a, "snapshot", { tempo: 100 })).tempo, 100);
  });

  test('set_role "follower" by the leader: steps down, leaderSocketId null, room snapshot', async () => {
    const b = await band(open.url, 2);
    b.leader.emit("set_role", { sessionId: b.sessionId, role: "follower" });
    for (const m of b.members) {
      const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId });
      assertSnapshot(snap);
      assert.equal(snap.leaderSocketId, null);
      assert.ok(snap.members.every((x) => x.role === "follower"));
    }
    mark(b.leader);
    b.leader.emit("play", { sessionId: b.sessionId });
    await expectError(b.leader, "NOT_LEADER");
  });

  test("set_role: bad role → VALIDATION; non-member → NOT_A_MEMBER; nothing changes", async () => {
    const b = await band(open.url, 2);
    const f = b.followers[0];
    f.emit("set_role", { sessionId: b.sessionId, role: "boss" });
    await expectError(f, "VALIDATION");
    const x = await connect(open.url);
    x.emit("set_role", { sessionId: b.sessionId, role: "leader" });
    await expectError(x, "NOT_A_MEMBER");
    await expectNo(b.leader, "snapshot", 200);
    assert.equal(await leaderOf(f, b.sessionId), b.leader.id);
  });

  test("request_leader with no leader: granted at once", async () => {
    const b = await band(open.url, 2);
    const f = b.followers[0];
    b.leader.emit("set_role", { sessionId: b.sessionId, role: "follower" });
    await waitFor(f, "snapshot", { leaderSocketId: null });
    mark(...b.members);
    f.emit("request_leader", { sessionId: b.sessionId });
    const r = await waitFor(f, "request_leader_result");
    assert.equal(r.sessionId, b.sessionId);
    assert.equal(r.success, true);
    assert.ok(!r.pending, "not pending when granted at once");
    for (const m of b.members) {
      const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId, leaderSocketId: f.id });
      assert.equal(snap.members.find((x) => x.socketId === f.id).role, "leader");
    }
    await expectNo(b.leader, "leader_handoff_request", 0);
  });

  test("request_leader with a leader: handoff request to the leader, leader_request_sent + pending result to the requester", async () => {
    const b = await band(open.url, 3);
    const [a, f1, f2] = b.members;
    const snap = await join(f1, b.sessionId);
    const f1rec = snap.members.find((m) => m.socketId === f1.id);
    mark(f1);
    f1.emit("request_leader", { sessionId: b.sessionId });
    const req = await waitFor(a, "leader_handoff_request");
    assert.equal(req.sessionId, b.sessionId);
    assert.equal(req.requesterId, f1.id);
    assert.equal(req.requesterInfo.displayName, f1rec.displayName);
    assert.equal(req.requesterInfo.joinedAt, f1rec.joinedAt);
    const sent = await waitFor(f1, "leader_request_sent");
    assert.equal(sent.sessionId, b.sessionId);
    assert.equal(sent.currentLeader, a.id);
    const r = await waitFor(f1, "request_leader_result");
    assert.deepEqual(
      { sessionId: r.sessionId, success: r.success, pending: r.pending },
      { sessionId: b.sessionId, success: true, pending: true },
    );
    await expectNo(f2, "leader_handoff_request", 100);
    await expectNo(f2, "snapshot", 0);
    assert.equal(await leaderOf(f2, b.sessionId), a.id);
  });

  test("approve: leader_changed + snapshot to room, handoff_completed to old leader, approved to requester, denied to other requesters; playback stops", async () => {
    const b = await band(open.url, 4);
    const [a, f1, f2, f3] = b.members;
    a.emit("play", { sessionId: b.sessionId });
    await waitFor(f3, "scroll_tick");
    f1.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request", { requesterId: f1.id });
    f2.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request", { requesterId: f2.id });
    mark(...b.members);
    a.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: f1.id });
    const r = await waitFor(a, "approve_leader_request_result");
    assert.equal(r.sessionId, b.sessionId);
    assert.equal(r.success, true);
    for (const m of b.members) {
      const lc = await waitFor(m, "leader_changed");
      assert.equal(lc.sessionId, b.sessionId);
      assert.equal(lc.newLeaderId, f1.id);
      assert.equal(lc.previousLeader, a.id);
      assert.ok(lc.newLeaderInfo && typeof lc.newLeaderInfo === "object", "newLeaderInfo");
      const snap = await waitFor(m, "snapshot", { sessionId: b.sessionId });
      assert.equal(snap.leaderSocketId, f1.id);
      assert.equal(snap.isPlaying, false);
      const roles = Object.fromEntries(snap.members.map((x) => [x.socketId, x.role]));
      assert.deepEqual(roles, { [a.id]: "follower", [f1.id]: "leader", [f2.id]: "follower", [f3.id]: "follower" });
    }
    await waitFor(a, "leader_handoff_completed");
    await waitFor(f1, "leader_request_approved");
    const denied = await waitFor(f2, "leader_request_denied");
    assert.equal(denied.sessionId, b.sessionId);
    await expectNo(f3, "leader_request_denied", 0);
    // Playback stopped.
    mark(f3);
    await expectNo(f3, "scroll_tick", 300);
    assert.equal((await syncState(f3, b.sessionId)).isPlaying, false);
    // The new leader leads.
    f1.emit("set_tempo", { sessionId: b.sessionId, tempo: 111 });
    await waitFor(a, "snapshot", { tempo: 111 });
  });

  test("deny: requester gets leader_request_denied {sessionId, reason}; nothing changes", async () => {
    const b = await band(open.url, 2);
    const [a, f] = b.members;
    f.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request");
    mark(a, f);
    a.emit("deny_leader_request", { sessionId: b.sessionId, requesterId: f.id });
    const r = await waitFor(a, "deny_leader_request_result");
    assert.equal(r.sessionId, b.sessionId);
    assert.equal(r.success, true);
    const d = await waitFor(f, "leader_request_denied");
    assert.equal(d.sessionId, b.sessionId);
    assert.equal(typeof d.reason, "string");
    await expectNo(f, "snapshot", 150);
    assert.equal(await leaderOf(f, b.sessionId), a.id);
  });

  test("approve / deny by a non-leader: <event>_result {success:false, code: NOT_LEADER} and error", async () => {
    const b = await band(open.url, 3);
    const [a, f1, f2] = b.members;
    f1.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request");
    mark(...b.members);
    f2.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: f1.id });
    await expectRoleFailure(f2, "approve_leader_request", b.sessionId, "NOT_LEADER");
    f2.emit("deny_leader_request", { sessionId: b.sessionId, requesterId: f1.id });
    await expectRoleFailure(f2, "deny_leader_request", b.sessionId, "NOT_LEADER");
    await expectNo(f1, "leader_request_denied", 150);
    await expectNo(f1, "leader_request_approved", 0);
    await expectNo(a, "snapshot", 0);
    assert.equal(await leaderOf(f2, b.sessionId), a.id);
  });

  test("request_leader: non-member → NOT_A_MEMBER, unknown session → SESSION_NOT_FOUND (result + error)", async () => {
    const b = await band(open.url, 1);
    const x = await connect(open.url);
    x.emit("request_leader", { sessionId: b.sessionId });
    await expectRoleFailure(x, "request_leader", b.sessionId, "NOT_A_MEMBER");
    const nosuch = sid("nosuch");
    x.emit("request_leader", { sessionId: nosuch });
    await expectRoleFailure(x, "request_leader", nosuch, "SESSION_NOT_FOUND");
    await expectNo(b.leader, "leader_handoff_request", 100);
  });

  test("approve_leader_request without requesterId → VALIDATION (result + error)", async () => {
    const b = await band(open.url, 2);
    b.leader.emit("approve_leader_request", { sessionId: b.sessionId });
    await expectRoleFailure(b.leader, "approve_leader_request", b.sessionId, "VALIDATION");
    assert.equal(await leaderOf(b.leader, b.sessionId), b.leader.id);
  });
});

describe("LEADER_POLICY=approval", () => {
  test('set_role "leader" becomes a request: request_leader_result pending, leader asked, no change yet', async () => {
    const b = await band(approval.url, 2);
    const [a, f] = b.members;
    f.emit("set_role", { sessionId: b.sessionId, role: "leader" });
    const r = await waitFor(f, "request_leader_result");
    assert.deepEqual(
      { sessionId: r.sessionId, success: r.success, pending: r.pending },
      { sessionId: b.sessionId, success: true, pending: true },
    );
    const req = await waitFor(a, "leader_handoff_request");
    assert.equal(req.requesterId, f.id);
    const sent = await waitFor(f, "leader_request_sent");
    assert.equal(sent.currentLeader, a.id);
    await expectNo(a, "snapshot", 150);
    assert.equal(await leaderOf(f, b.sessionId), a.id);
    // Approval hands over.
    mark(...b.members);
    a.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: f.id });
    await waitFor(f, "leader_request_approved");
    const snap = await waitFor(f, "snapshot", { sessionId: b.sessionId });
    assert.equal(snap.leaderSocketId, f.id);
  });

  test("request_leader, deny, and the requester stays follower", async () => {
    const b = await band(approval.url, 2);
    const [a, f] = b.members;
    f.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request");
    a.emit("deny_leader_request", { sessionId: b.sessionId, requesterId: f.id });
    await waitFor(f, "leader_request_denied");
    await sleep(50);
    assert.equal(await leaderOf(f, b.sessionId), a.id);
  });
});

describe("LEADER_POLICY=open, edge cases", () => {
  test("approving a requester that is not a member fails (result + error) and changes nothing", async () => {
    const b = await band(open.url, 2);
    const x = await connect(open.url);
    mark(...b.members);
    b.leader.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: x.id });
    const r = await waitFor(b.leader, "approve_leader_request_result");
    assert.equal(r.success, false);
    assert.equal(typeof r.error, "string");
    assert.ok(["VALIDATION", "NOT_A_MEMBER"].includes(r.code), `code ${r.code}`);
    const err = await waitFor(b.leader, "error");
    assert.equal(err.code, r.code);
    await expectNo(b.followers[0], "snapshot", 150);
    await expectNo(x, "leader_request_approved", 0);
    assert.equal(await leaderOf(b.followers[0], b.sessionId), b.leader.id);
  });

  test("a requester that left cannot be approved", async () => {
    const b = await band(open.url, 3);
    const [a, f1, f2] = b.members;
    f1.emit("request_leader", { sessionId: b.sessionId });
    await waitFor(a, "leader_handoff_request");
    f1.emit("leave_session", { sessionId: b.sessionId });
    await waitFor(a, "user_left", { socketId: f1.id });
    mark(a, f2);
    a.emit("approve_leader_request", { sessionId: b.sessionId, requesterId: f1.id });
    const r = await waitFor(a, "approve_leader_request_result");
    assert.equal(r.success, false);
    await waitFor(a, "error");
    assert.equal(await leaderOf(f2, b.sessionId), a.id);
  });
});
