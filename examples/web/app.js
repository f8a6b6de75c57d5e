// BandSync demo page: join a session, follow (or lead) its metronome, click on the synced clock.
//
// Served by bandsync-server at /demo/; the socket connects to the page's own origin (?server=URL
// points it elsewhere, e.g. when the page is served by a static file server during development).
// State for tests and the console: window.bandsync (see the bottom of this file).
import { io } from "./vendor/socket.io.esm.min.js";
import { BandSyncClock } from "./bandsync-clock.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const socket = params.get("server") ? io(params.get("server")) : io();
const clock = new BandSyncClock({ socket });

const state = {
  connected: false,
  sessionId: null,
  leaderId: null,
  members: new Map(), // socketId -> member record
  error: "",
};

// --- connection and session -----------------------------------------------------------------

socket.on("connect", () => {
  state.connected = true;
  render();
  // A reconnect (new socket id) re-joins the session it was in.
  if (state.sessionId) join(state.sessionId, $("display-name").value).catch(showError);
});
socket.on("disconnect", () => {
  state.connected = false;
  render();
});

async function join(sessionId, displayName) {
  const payload = { sessionId, create: true };
  if (displayName) payload.displayName = displayName;
  const ack = await socket.timeout(5000).emitWithAck("session:join", payload);
  if (!ack?.ok) throw new Error(ack?.error?.message ?? "join refused");
  state.sessionId = sessionId;
  applySession(ack.session);
  clock.applySessionState(ack.session);
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), session: sessionId })}`);
  render();
  return ack;
}

function applySession(session) {
  if (!session || (state.sessionId && session.sessionId && session.sessionId !== state.sessionId)) return;
  if (Array.isArray(session.members)) state.members = new Map(session.members.map((m) => [m.socketId, m]));
  if ("leaderSocketId" in session) state.leaderId = session.leaderSocketId;
}

socket.on("session:state_sync", (s) => {
  applySession(s);
  render();
});
socket.on("session:member_update", (u) => {
  if (u.sessionId !== state.sessionId) return;
  if (u.action === "joined" && u.member) state.members.set(u.member.socketId, u.member);
  if (u.action === "left") state.members.delete(u.socketId);
  render();
});
socket.on("leader:election", (e) => {
  if (e.sessionId !== state.sessionId) return;
  state.leaderId = e.newLeader;
  for (const m of state.members.values()) m.role = m.socketId === e.newLeader ? "leader" : "follower";
  render();
});
for (const channel of ["error:session", "error:validation"]) socket.on(channel, (e) => showError(new Error(e.message)));

const isLeader = () => !!socket.id && state.leaderId === socket.id;

async function request(event, payload) {
  const ack = await socket.timeout(5000).emitWithAck(event, { sessionId: state.sessionId, ...payload });
  if (!ack?.ok) throw new Error(ack?.error?.message ?? `${event} refused`);
  showError(null);
  return ack;
}

const controls = {
  start: (tempo) => request("metronome:start", tempo ? { tempo: Number(tempo) } : {}),
  stop: () => request("metronome:stop", {}),
  setTempo: (tempo, rampMs = 0) => request("tempo:change", { newTempo: Number(tempo), rampDurationMs: Number(rampMs) || 0 }),
  seek: (positionMs) => request("position:seek", { positionMs: Number(positionMs) }),
};

function showError(e) {
  state.error = e ? e.message : "";
  $("error").textContent = state.error;
}

// --- audio: a click scheduled on the synced clock -----------------------------------------

let audio = null;
const scheduled = new Map(); // beat index -> {serverTime, osc}
const LOOKAHEAD_MS = 200;
let clicksQueued = 0;

function enableAudio() {
  if (!audio) {
    const Ctx = globalThis.AudioContext ?? globalThis.webkitAudioContext;
    if (!Ctx) return showError(new Error("Web Audio is not available"));
    audio = new Ctx({ latencyHint: "interactive" });
  }
  audio.resume();
  $("audio-btn").textContent = "Click on";
  $("audio-btn").disabled = true;
}

/** AudioContext time at which local clock time `local` (performance clock, epoch scale) is heard. */
function audioTimeOf(local) {
  const perfNow = local - performance.timeOrigin;
  const ts = audio.getOutputTimestamp?.();
  if (ts && ts.performanceTime > 0) return ts.contextTime + (perfNow - ts.performanceTime) / 1000;
  // No output timestamp yet: now, less the output latency.
  return audio.currentTime + (perfNow - performance.now()) / 1000 - (audio.outputLatency || audio.baseLatency || 0);
}

function click(at, downbeat) {
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = downbeat ? 1500 : 1000;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.6, at + 0.001);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.05);
  osc.connect(gain).connect(audio.destination);
  osc.start(at);
  osc.stop(at + 0.06);
  return osc;
}

function scheduleAudio() {
  if (!audio || audio.state !== "running") return;
  const now = clock.now();
  const upcoming = clock.isPlaying && clock.synced ? clock.nextBeats(now, 8) : [];
  const wanted = new Map(upcoming.filter((b) => b.localTime - now <= LOOKAHEAD_MS).map((b) => [b.index, b]));
  // A beat that moved (tempo change, seek, stop) since it was scheduled is cancelled.
  for (const [index, s] of scheduled) {
    const b = wanted.get(index);
    const past = s.localTime < now - 100;
    if (past) scheduled.delete(index);
    else if (!b || Math.abs(b.serverTime - s.serverTime) > 0.5) {
      if (s.localTime > now) s.osc.stop();
      scheduled.delete(index);
    }
  }
  for (const [index, b] of wanted) {
    if (scheduled.has(index) || b.localTime < now) continue;
    scheduled.set(index, { serverTime: b.serverTime, localTime: b.localTime, osc: click(audioTimeOf(b.localTime), b.downbeat) });
    clicksQueued++;
  }
}
setInterval(scheduleAudio, 25);
clock.on("timeline", scheduleAudio);

// --- drawing --------------------------------------------------------------------------------

const fmtTime = (ms) => {
  const s = Math.max(0, ms) / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(3).padStart(6, "0")}`;
};

function render() {
  $("conn").textContent = state.connected ? "connected" : "disconnected";
  $("conn").className = `pill ${state.connected ? "on" : "off"}`;
  $("join-panel").hidden = !!state.sessionId;
  $("session-panel").hidden = !state.sessionId;
  $("session-id").textContent = state.sessionId ?? "";
  const leader = isLeader();
  $("role").textContent = leader ? "you lead" : "following";
  $("role").className = `pill ${leader ? "on" : ""}`;
  $("leader-controls").hidden = !leader;
  const list = $("members");
  list.replaceChildren(
    ...[...state.members.values()].map((m) => {
      const li = document.createElement("li");
      li.textContent = `${m.displayName}${m.socketId === state.leaderId ? " ★" : ""}`;
      li.title = m.socketId;
      if (m.socketId === state.leaderId) li.classList.add("leader");
      if (m.socketId === socket.id) li.classList.add("me");
      return li;
    }),
  );
  const cells = $("beat-cells");
  if (cells.children.length !== clock.beatsPerBar) {
    cells.replaceChildren(...Array.from({ length: clock.beatsPerBar }, () => document.createElement("span")));
  }
}

function frame() {
  const now = clock.now();
  const server = clock.toServer(now);
  const playing = clock.isPlaying && Number.isFinite(server);
  $("play-state").textContent = playing ? "playing" : "stopped";
  $("play-state").className = `pill ${playing ? "on" : "off"}`;
  const beats = playing ? clock.beatAt(server) : null;
  const perBar = clock.beatsPerBar;
  const whole = beats === null ? null : Math.floor(beats);
  $("tempo-now").textContent = (playing ? clock.tempoAt(server) : clock.tempo).toFixed(1);
  $("signature").textContent = clock.timeline.timeSignature;
  $("bar").textContent = whole === null ? "–" : String(Math.floor(whole / perBar) + 1);
  $("beat").textContent = whole === null ? "–" : String((whole % perBar) + 1);
  $("position").textContent = fmtTime(Number.isFinite(server) ? clock.positionAt(now) : 0);
  [...$("beat-cells").children].forEach((cell, i) => {
    const lit = whole !== null && whole % perBar === i && beats - whole < 0.35;
    cell.className = lit ? (i === 0 ? "lit down" : "lit") : "";
  });
  drawTimeline(now, playing);
  const e = clock.estimate();
  $("clock-offset").textContent = Number.isFinite(clock.offset) ? `${clock.offset.toFixed(3)} ms` : "–";
  $("clock-target").textContent = e ? `${clock.targetOffset.toFixed(3)} ms (${e.used}/${e.total} samples used)` : "–";
  $("clock-rtt").textContent = Number.isFinite(clock.rtt) ? `${clock.rtt.toFixed(3)} ms` : "–";
  $("clock-skew").textContent = `${clock.skewPpm.toFixed(1)} ppm`;
  $("clock-samples").textContent = String(clock.samples.length);
}

/** A line scrolling with the position: beat ticks pass a fixed playhead, bars drawn taller. */
function drawTimeline(now, playing) {
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const head = w * 0.25;
  const pxPerMs = w / 6000; // 6 s across
  ctx.fillStyle = "#2a2e36";
  ctx.fillRect(0, h / 2 - 1, w, 2);
  if (playing) {
    const beats = clock.nextBeats(now - head / pxPerMs, 24);
    for (const b of beats) {
      const x = head + (b.localTime - now) * pxPerMs;
      if (x > w) break;
      ctx.fillStyle = b.downbeat ? "#4fc3f7" : "#8b8f98";
      const len = b.downbeat ? h * 0.8 : h * 0.4;
      ctx.fillRect(x - 1, (h - len) / 2, 2, len);
      if (b.downbeat) {
        ctx.fillStyle = "#e8e8ea";
        ctx.font = "11px system-ui";
        ctx.fillText(String(b.bar), x + 4, 12);
      }
    }
  }
  ctx.fillStyle = "#ffca28";
  ctx.fillRect(head - 1, 0, 3, h);
}

(function loop() {
  frame();
  requestAnimationFrame(loop);
})();
// rAF pauses in hidden tabs; keep the numbers fresh anyway.
setInterval(() => document.hidden && frame(), 250);

// --- the form and buttons -------------------------------------------------------------------

$("session-name").value = params.get("session") ?? "";
$("display-name").value = params.get("name") ?? "";
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  enableAudio(); // a user gesture: the moment audio may start
  join($("session-name").value.trim(), $("display-name").value.trim()).catch(showError);
});
$("audio-btn").addEventListener("click", enableAudio);
$("start-btn").addEventListener("click", () => controls.start($("tempo-input").value).catch(showError));
$("stop-btn").addEventListener("click", () => controls.stop().catch(showError));
$("tempo-btn").addEventListener("click", () =>
  controls.setTempo($("tempo-input").value, $("ramp-input").value).catch(showError),
);
$("seek-btn").addEventListener("click", () => controls.seek($("seek-input").value).catch(showError));
clock.on("timeline", () => {
  if (!clock.isPlaying) scheduled.clear();
});
render();

// --- state for tests and the console --------------------------------------------------------

window.bandsync = {
  get connected() {
    return state.connected;
  },
  get socketId() {
    return socket.id;
  },
  get sessionId() {
    return state.sessionId;
  },
  get isPlaying() {
    return clock.isPlaying;
  },
  get isLeader() {
    return isLeader();
  },
  get leaderId() {
    return state.leaderId;
  },
  get members() {
    return [...state.members.values()].map((m) => ({ socketId: m.socketId, displayName: m.displayName, role: m.role }));
  },
  get synced() {
    return clock.synced;
  },
  get offset() {
    return clock.offset;
  },
  get rtt() {
    return clock.rtt;
  },
  get error() {
    return state.error;
  },
  /** Web Audio: {state, scheduled (beats with a click queued), clicks (queued so far)}. */
  get audio() {
    return { state: audio?.state ?? "off", scheduled: scheduled.size, clicks: clicksQueued };
  },
  clock,
  socket,
  /** Song position now (ms). */
  positionMs: () => clock.positionAt(clock.now()),
  /** The next n beats in SERVER time (ms, fractional): comparable across pages and machines. */
  nextBeats: (n = 4) => clock.nextBeats(clock.now(), n).map((b) => b.serverTime),
  /** The next n beats with their indices: [{index, bar, beat, serverTime, localTime}]. */
  nextBeatsDetailed: (n = 4) => clock.nextBeats(clock.now(), n),
  join,
  ...controls,
  enableAudio,
};
