// The Node baseline for examples/compare.sh: a plain socket.io 4.8.1 server doing the hot path
// that examples/loadgen.rs drives, as the original Node BandSync server did it, so that the Rust
// server's stream and control latency and its CPU per delivery have something to be held against.
//
// What it serves (the wire contract: PROTOCOL.md sections 2 and 4):
// - legacy: join_session, set_role, play, set_tempo; a scroll_tick every 100 ms while playing;
//   the app-level ping every 5 s and its pong, which loadgen's legacy clients answer;
// - enhanced: session:create, session:join, metronome:start, tempo:change (acknowledged when the
//   client asks); a volatile position:sync every 12.5 ms (80 Hz) while playing, and
//   metronome:beat once per beat.
// Positions are read off a timeline (anchor position + now - anchor time) and stamped with
// Date.now() when emitted. Each playing session has its own timer, the plain Node way, kept to a
// fixed grid so that the stream rate is exact unless the event loop falls behind.
//
// What it leaves out: mixed legacy/enhanced sessions (a session speaks the vocabulary it was
// created in), payload validation beyond what loadgen's requests need, rate limits, leader
// hand-over requests and the stop when a leader leaves, moving a socket between sessions,
// reconnection grace, seek/pause/stop, connection_quality, auth:handshake, metrics and Redis.
//
//   PORT=3101 node server.mjs

import { createServer } from "node:http";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT ?? 3101);
const MAX_MEMBERS = 8;
const SYNC_RATE_MS = 12.5;
const LEGACY_TICK_MS = 100;
const LEGACY_PING_MS = 5000;
const BEATS_PER_BAR = 4;
const TIME_SIGNATURE = `${BEATS_PER_BAR}/4`;

// Only /livez is answered outside socket.io: compare.sh waits on it before loading the server.
const http = createServer((req, res) => res.writeHead(req.url === "/livez" ? 200 : 404).end());
const io = new Server(http, { path: "/socket.io/", serveClient: false });

// Session id → session (see newSession).
const sessions = new Map();

function newSession(id, vocabulary, extra = {}) {
  const now = Date.now();
  return {
    id, vocabulary, message: "", tempo: 120, isPlaying: false, leader: null,
    members: new Map(), createdAt: now, lastActiveAt: now,
    // The timeline: song position and beat count both move on from their anchor.
    anchorTime: now, anchorPosition: 0, anchorBeat: 0, lastBeat: -1, timer: null,
    bandId: null, sessionName: null, creatorId: null, ...extra,
  };
}

const positionAt = (s, now) => (s.isPlaying ? s.anchorPosition + (now - s.anchorTime) : s.anchorPosition);
const beatAt = (s, now) => (s.isPlaying ? s.anchorBeat + ((now - s.anchorTime) * s.tempo) / 60000 : s.anchorBeat);
// Beat `whole` (counted from 0) as the clients count it: beat 1…4 within bar 1, 2, …
const beatInBar = (whole) => ({ beat: (whole % BEATS_PER_BAR) + 1, bar: Math.floor(whole / BEATS_PER_BAR) + 1 });

// Moves the anchor to now, so a tempo change or a start continues the position and the beats.
function reanchor(s, now) {
  s.anchorPosition = positionAt(s, now);
  s.anchorBeat = beatAt(s, now);
  s.anchorTime = now;
  s.lastActiveAt = now;
}

const memberRecord = ({ socketId, displayName, role, joinedAt, lastPingAt }) =>
  ({ socketId, displayName, role, joinedAt, lastPingAt });

function snapshot(s, now = Date.now()) {
  return {
    sessionId: s.id, message: s.message, tempo: s.tempo, tempoBpm: s.tempo,
    position: Math.round(positionAt(s, now)), isPlaying: s.isPlaying, leaderSocketId: s.leader,
    members: [...s.members.values()].map(memberRecord), createdAt: s.createdAt, lastActiveAt: s.lastActiveAt,
    settings: { maxMembers: MAX_MEMBERS }, serverTimestamp: now,
  };
}

const stateSync = (s, now = Date.now()) => ({
  ...snapshot(s, now), bandId: s.bandId, sessionName: s.sessionName, timeSignature: TIME_SIGNATURE,
  creatorId: s.creatorId,
});

function roomStats(s, now = Date.now()) {
  return {
    sessionId: s.id, memberCount: s.members.size, connectedCount: s.members.size, isPlaying: s.isPlaying,
    tempo: s.tempo, position: Math.round(positionAt(s, now)), leader: s.leader, uptime: now - s.createdAt,
  };
}

function seat(socket, s, displayName, leads) {
  const now = Date.now();
  const member = {
    socketId: socket.id, displayName: displayName || `User ${socket.id.slice(-4)}`, role: "follower",
    joinedAt: now, lastPingAt: now,
  };
  s.members.set(socket.id, member);
  if (leads || !s.leader) setLeader(s, socket.id);
  socket.join(s.id);
  socket.data.sessionId = s.id;
  s.lastActiveAt = now;
  return member;
}

function setLeader(s, socketId) {
  for (const m of s.members.values()) m.role = m.socketId === socketId ? "leader" : "follower";
  s.leader = socketId;
}

// The stream of one playing session, on its own timer.
function startStream(s) {
  if (s.timer) return;
  const period = s.vocabulary === "enhanced" ? SYNC_RATE_MS : LEGACY_TICK_MS;
  let due = Date.now();
  const tick = () => {
    if (s.vocabulary === "enhanced") sendPosition(s);
    else sendScrollTick(s);
    // A late tick keeps the grid (the next one comes sooner); only after a stall of more than a
    // period are whole periods skipped, rather than sent in a bunch.
    due += period;
    const now = Date.now();
    if (now - due > period) due += Math.floor((now - due) / period) * period;
    s.timer = setTimeout(tick, Math.max(0, due - now));
  };
  s.timer = setTimeout(tick, 0);
}

function stopStream(s) {
  clearTimeout(s.timer);
  s.timer = null;
}

function sendPosition(s) {
  const now = Date.now();
  const beats = beatAt(s, now);
  const whole = Math.floor(beats);
  io.to(s.id).volatile.emit("position:sync", {
    sessionId: s.id, positionMs: positionAt(s, now), serverTime: now,
    ...beatInBar(whole), beatProgress: beats - whole, tempo: s.tempo,
  });
  if (whole > s.lastBeat) {
    s.lastBeat = whole;
    const beatTime = s.anchorTime + ((whole - s.anchorBeat) * 60000) / s.tempo;
    io.to(s.id).emit("metronome:beat", {
      sessionId: s.id, ...beatInBar(whole), beatTime, tempo: s.tempo,
    });
  }
}

function sendScrollTick(s) {
  const now = Date.now();
  const positionMs = Math.round(positionAt(s, now));
  io.to(s.id).emit("scroll_tick", { sessionId: s.id, positionMs, tempoBpm: s.tempo, serverTimestamp: now });
}

// The session a request names, when the sender is seated in it (and leads it, if `lead`).
function sessionFor(socket, sessionId, lead) {
  const s = sessions.get(sessionId);
  if (!s) return { code: "SESSION_NOT_FOUND", message: "Session not found" };
  if (!s.members.has(socket.id)) return { code: "NOT_A_MEMBER", message: "Not a member of this session" };
  if (lead && s.leader !== socket.id) return { code: "NOT_LEADER", message: "Only the leader can do this" };
  return { s };
}

const isTempo = (t) => typeof t === "number" && t >= 20 && t <= 400;

io.on("connection", (socket) => {
  // Legacy answers: an `error` event on refusal.
  const legacy = (name, handler) =>
    socket.on(name, (data) => {
      const error = handler(data ?? {});
      if (error) socket.emit("error", { message: error.message, code: error.code });
    });
  // Enhanced answers: the acknowledgement when asked for, else an `error:session` event.
  const enhanced = (name, handler) =>
    socket.on(name, (data, ack) => {
      const answer = handler(data ?? {});
      if (answer.error) {
        if (typeof ack === "function") ack({ ok: false, error: answer.error });
        else socket.emit("error:session", { ...answer.error, event: name });
      } else if (typeof ack === "function") ack({ ok: true, ...answer });
    });

  legacy("join_session", ({ sessionId, displayName, role }) => {
    if (typeof sessionId !== "string" || !sessionId) return { code: "VALIDATION", message: "sessionId is required" };
    let s = sessions.get(sessionId);
    if (!s) sessions.set(sessionId, (s = newSession(sessionId, "legacy")));
    if (!s.members.has(socket.id) && s.members.size >= MAX_MEMBERS) {
      return { code: "SESSION_FULL", message: `Session at capacity (${MAX_MEMBERS} members)` };
    }
    const member = seat(socket, s, displayName, role === "leader");
    if (s.leader === socket.id) s.message = `${member.displayName} is leading`;
    if (!socket.data.pinging) startLegacyPing(socket);
    socket.emit("snapshot", snapshot(s));
    io.to(s.id).emit("room_stats", roomStats(s));
    io.to(s.id).emit("user_joined", { member: memberRecord(member), memberCount: s.members.size });
  });

  legacy("set_role", ({ sessionId, role }) => {
    const { s, ...error } = sessionFor(socket, sessionId, false);
    if (!s) return error;
    if (role === "leader") {
      setLeader(s, socket.id);
      s.message = "Leader connected";
    }
    io.to(s.id).emit("snapshot", snapshot(s));
  });

  legacy("play", ({ sessionId }) => {
    const { s, ...error } = sessionFor(socket, sessionId, true);
    if (!s) return error;
    const now = Date.now();
    reanchor(s, now);
    s.isPlaying = true;
    io.to(s.id).emit("snapshot", snapshot(s, now));
    const position = Math.round(positionAt(s, now));
    io.to(s.id).emit("play", { sessionId: s.id, tempoBpm: s.tempo, position, serverTimestamp: now });
    startStream(s);
  });

  legacy("set_tempo", ({ sessionId, tempo }) => {
    const { s, ...error } = sessionFor(socket, sessionId, true);
    if (!s) return error;
    if (!isTempo(tempo)) return { code: "VALIDATION", message: "tempo must be a number from 20 to 400" };
    reanchor(s, Date.now());
    s.tempo = tempo;
    io.to(s.id).emit("snapshot", snapshot(s));
  });

  // The app-level heartbeat the legacy server sends, and the pong it records the latency of.
  socket.on("pong", (data) => {
    const member = sessions.get(socket.data.sessionId)?.members.get(socket.id);
    if (member && typeof data?.timestamp === "number") member.lastPingAt = Date.now();
  });

  enhanced("session:create", ({ bandId, sessionName, displayName, userId, tempo }) => {
    if (typeof bandId !== "string" || typeof sessionName !== "string") {
      return { error: { code: "VALIDATION", message: "bandId and sessionName are required" } };
    }
    const id = `session_${Date.now()}_${Math.random().toString(36).slice(2, 11)}`;
    const s = newSession(id, "enhanced", { bandId, sessionName, creatorId: userId ?? socket.id });
    if (isTempo(tempo)) s.tempo = tempo;
    sessions.set(id, s);
    seat(socket, s, displayName, true);
    return { sessionId: id, session: stateSync(s) };
  });

  enhanced("session:join", ({ sessionId, displayName }) => {
    const s = sessions.get(sessionId);
    if (!s) return { error: { code: "SESSION_NOT_FOUND", message: "Session not found" } };
    if (!s.members.has(socket.id) && s.members.size >= MAX_MEMBERS) {
      return { error: { code: "SESSION_FULL", message: `Session at capacity (${MAX_MEMBERS} members)` } };
    }
    const member = seat(socket, s, displayName, false);
    const now = Date.now();
    socket.emit("session:state_sync", stateSync(s, now));
    io.to(s.id).emit("session:member_update", {
      sessionId: s.id, action: "joined", member: memberRecord(member), memberCount: s.members.size,
    });
    return { session: stateSync(s, now), member: memberRecord(member), serverTime: now };
  });

  enhanced("metronome:start", ({ sessionId, tempo }) => {
    const { s, ...error } = sessionFor(socket, sessionId, true);
    if (!s) return { error };
    const now = Date.now();
    reanchor(s, now);
    if (isTempo(tempo)) s.tempo = tempo;
    s.isPlaying = true;
    s.lastBeat = Math.ceil(s.anchorBeat) - 1;
    io.to(s.id).emit("metronome:start", {
      sessionId: s.id, tempo: s.tempo, timeSignature: TIME_SIGNATURE, startTime: now, positionMs: positionAt(s, now),
    });
    startStream(s);
    return {};
  });

  enhanced("tempo:change", ({ sessionId, newTempo }) => {
    const { s, ...error } = sessionFor(socket, sessionId, true);
    if (!s) return { error };
    if (!isTempo(newTempo)) {
      return { error: { code: "VALIDATION", message: "newTempo must be a number from 20 to 400" } };
    }
    const now = Date.now();
    const oldTempo = s.tempo;
    reanchor(s, now);
    s.tempo = newTempo;
    io.to(s.id).emit("tempo:change", {
      sessionId: s.id, oldTempo, newTempo, effectiveTimestamp: now, rampDurationMs: 0,
    });
    io.to(s.id).emit("session:state_sync", stateSync(s, now));
    return {};
  });

  socket.on("disconnect", (reason) => {
    clearInterval(socket.data.pinging);
    const s = sessions.get(socket.data.sessionId);
    if (!s?.members.delete(socket.id)) return;
    if (s.members.size === 0) {
      stopStream(s);
      sessions.delete(s.id);
      return;
    }
    if (s.leader === socket.id) setLeader(s, s.members.keys().next().value);
    if (s.vocabulary === "legacy") {
      io.to(s.id).emit("user_left", {
        socketId: socket.id, memberCount: s.members.size, newLeader: s.leader, disconnectReason: reason,
        timestamp: Date.now(),
      });
    } else {
      io.to(s.id).emit("session:member_update", {
        sessionId: s.id, action: "left", socketId: socket.id, memberCount: s.members.size,
      });
    }
  });
});

function startLegacyPing(socket) {
  socket.data.pinging = setInterval(() => socket.emit("ping", { timestamp: Date.now() }), LEGACY_PING_MS);
}

http.listen(PORT, () => console.log(`node reference (socket.io 4.8.1) listening on ${PORT}`));
