// Socket.IO clients with an event recorder.
//
// Every incoming event is recorded in arrival order. `waitFor` consumes the first matching,
// not yet consumed event recorded since the last `mark` (or one arriving later), so the usual
// pattern is:  mark(s); s.emit(...); await waitFor(s, "snapshot", {sessionId});
import { isDeepStrictEqual } from "node:util";
import { randomBytes } from "node:crypto";
import { io as io481 } from "socket.io-client";
import { io as io475 } from "socket.io-client-4.7.5";
import io2 from "socket.io-client-2";

const FACTORIES = { "4.8.1": io481, "4.7.5": io475, "2.5.0": io2, 2: io2 };
const recorders = new Map(); // socket -> recorder
const sockets = new Set();

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh session id: prefix + random suffix. */
export const sid = (prefix = "s") => `${prefix}-${randomBytes(4).toString("hex")}`;

/**
 * Connects and resolves with the connected socket.
 * transport: "websocket" | "polling" | "default" (polling then upgrade); version: "4.8.1" | "4.7.5" | "2.5.0".
 */
export function connect(url, { transport = "websocket", version = "4.8.1", timeoutMs = 5000, ...extra } = {}) {
  const factory = FACTORIES[version];
  if (!factory) throw new Error(`unknown client version ${version}`);
  const opts = { forceNew: true, reconnection: false, timeout: timeoutMs, ...extra };
  if (transport === "websocket") opts.transports = ["websocket"];
  else if (transport === "polling") opts.transports = ["polling"];
  else if (transport !== "default") throw new Error(`unknown transport ${transport}`);
  const socket = factory(url, opts);
  record(socket);
  sockets.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`connect timeout (${transport}, ${version}) to ${url}`));
    }, timeoutMs + 500);
    // Only the first connection attempt counts: a later connect_error (a reconnecting client whose
    // server went away) must not close the socket.
    const onError = (err) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.close();
      reject(new Error(`connect_error (${transport}, ${version}): ${err?.message ?? err}`));
    };
    const onConnect = () => {
      clearTimeout(timer);
      socket.off("connect_error", onError);
      resolve(socket);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
}

/** Connects n sockets with the same options. */
export const connectMany = (url, n, opts) => Promise.all(Array.from({ length: n }, () => connect(url, opts)));

/** Closes every socket opened by `connect` (use in after()). */
export function closeAll() {
  for (const s of sockets) {
    try {
      s.close();
    } catch {}
  }
  sockets.clear();
}

function record(socket) {
  const rec = { events: [], since: 0, waiters: [] };
  recorders.set(socket, rec);
  const onEvent = (event, args) => {
    const e = { event, data: args[0], args, at: Date.now(), seq: rec.events.length, consumed: false };
    rec.events.push(e);
    for (let i = 0; i < rec.waiters.length; i++) {
      if (rec.waiters[i].match(e)) {
        const [w] = rec.waiters.splice(i, 1);
        e.consumed = true;
        w.resolve(e);
        break;
      }
    }
  };
  if (typeof socket.onAny === "function") {
    socket.onAny((event, ...args) => onEvent(event, args));
  } else {
    // socket.io-client 2.x has no onAny: hook the packet dispatcher.
    const orig = socket.onevent;
    socket.onevent = function (packet) {
      const args = packet.data || [];
      onEvent(args[0], args.slice(1));
      return orig.call(this, packet);
    };
  }
  // Record the local disconnect too (it is not an incoming event, but tests want to await it).
  socket.on("disconnect", (reason) => onEvent("$disconnect", [reason]));
  return rec;
}

function recOf(socket) {
  const rec = recorders.get(socket);
  if (!rec) throw new Error("socket has no recorder (use connect())");
  return rec;
}

function toMatcher(event, predicate) {
  let pred = () => true;
  if (typeof predicate === "function") pred = predicate;
  else if (predicate && typeof predicate === "object")
    pred = (d) => d != null && Object.entries(predicate).every(([k, v]) => isDeepStrictEqual(d[k], v));
  return (e) => !e.consumed && e.event === event && pred(e.data, e);
}

// Connection-level events every socket gets unasked: the app ping and the enhanced handshake.
const IGNORED = new Set(["ping", "auth:handshake"]);

function summary(rec, from = rec.since) {
  return (
    rec.events
      .slice(from)
      .map((e) => `${e.event}${e.consumed ? "(consumed)" : ""} ${JSON.stringify(e.data)?.slice(0, 200)}`)
      .join("\n  ") || "(nothing)"
  );
}

/** Forget everything received so far: later waits only see events arriving after this call. */
export function mark(...socketsToMark) {
  for (const s of socketsToMark) {
    const rec = recOf(s);
    rec.since = rec.events.length;
  }
}

/**
 * Resolves with the payload of the first unconsumed `event` (since the last mark) for which
 * predicate(data) holds (predicate may be a function or an object of expected fields).
 */
export function waitFor(socket, event, predicate, timeoutMs = 2000, from) {
  return waitForEntry(socket, event, predicate, timeoutMs, from).then((e) => e.data);
}

/** Sequence number of the next event to arrive on the socket (pass as `from` to waitFor to skip older events). */
export const seqOf = (socket) => recOf(socket).events.length;

/** Like waitFor but resolves with the whole record {event, data, args, at, index}. */
export function waitForEntry(socket, event, predicate, timeoutMs = 2000, from) {
  const rec = recOf(socket);
  const start = Math.max(rec.since, from ?? 0);
  const m = toMatcher(event, predicate);
  const match = (e) => e.seq >= start && m(e);
  for (let i = start; i < rec.events.length; i++) {
    const e = rec.events[i];
    if (match(e)) {
      e.consumed = true;
      return Promise.resolve({ ...e, index: i });
    }
  }
  return new Promise((resolve, reject) => {
    const waiter = {
      match,
      resolve: (e) => {
        clearTimeout(timer);
        resolve({ ...e, index: e.seq });
      },
    };
    const timer = setTimeout(() => {
      const i = rec.waiters.indexOf(waiter);
      if (i >= 0) rec.waiters.splice(i, 1);
      reject(
        new Error(
          `timeout after ${timeoutMs} ms waiting for "${event}" on ${socket.id}; received since mark:\n  ${summary(rec, start)}`,
        ),
      );
    }, timeoutMs);
    rec.waiters.push(waiter);
  });
}

/** Waits for n matching events; resolves with their payloads in arrival order. */
export async function waitForN(socket, event, n, predicate, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  const out = [];
  for (let i = 0; i < n; i++) out.push(await waitFor(socket, event, predicate, Math.max(1, deadline - Date.now())));
  return out;
}

/** Fails if a matching `event` (unconsumed, since the last mark) is received within `ms`. */
export async function expectNo(socket, event, ms = 300, predicate) {
  await sleep(ms);
  const rec = recOf(socket);
  const match = toMatcher(event, predicate);
  const bad = rec.events.slice(rec.since).filter(match);
  if (bad.length) {
    throw new Error(
      `expected no "${event}" on ${socket.id} but got ${bad.length}:\n  ${bad.map((e) => JSON.stringify(e.data)).join("\n  ")}`,
    );
  }
}

/** Fails if anything other than server `ping` is received (since the last mark) within `ms`. */
export async function expectNothing(socket, ms = 300) {
  await sleep(ms);
  const got = events(socket);
  if (got.length) throw new Error(`expected nothing on ${socket.id} but got:\n  ${summary(recOf(socket))}`);
}

/** Events received since the last mark, [{event, data, at}], without server `ping`s (unless all=true). */
export function events(socket, { all = false } = {}) {
  return recOf(socket)
    .events.slice(recOf(socket).since)
    .filter((e) => all || !IGNORED.has(e.event))
    .map(({ event, data, at }) => ({ event, data, at }));
}

/** Names of events received since the last mark (server `ping`s and local `$disconnect` left out). */
export const names = (socket) => events(socket).map((e) => e.event).filter((n) => n !== "$disconnect");

/** Waits until `socket` has had no `event` for quietMs, counting from now (maxMs at most). */
export async function quiet(socket, event, quietMs = 500, maxMs = 8000) {
  const since = Date.now();
  const deadline = since + maxMs;
  for (;;) {
    const last = Math.max(since, events(socket).findLast((e) => e.event === event)?.at ?? 0);
    if (Date.now() - last >= quietMs || Date.now() > deadline) return;
    await sleep(50);
  }
}

/** Waits `ms` then returns (and consumes) all matching events since the last mark. */
export async function collect(socket, event, ms, predicate) {
  await sleep(ms);
  const rec = recOf(socket);
  const match = toMatcher(event, predicate);
  return rec.events
    .slice(rec.since)
    .filter(match)
    .map((e) => {
      e.consumed = true;
      return e.data;
    });
}

/**
 * Emits join_session and resolves with the sender's own snapshot for that session.
 * A sync_request follows the join, so the join's snapshot is the last snapshot before the
 * sync_response (a room snapshot still in flight cannot be mistaken for it).
 */
export async function join(socket, sessionId, extra = {}, timeoutMs = 2000) {
  const from = seqOf(socket);
  socket.emit("join_session", { sessionId, ...extra });
  socket.emit("sync_request", { sessionId });
  const sync = await waitForEntry(socket, "sync_response", { sessionId }, timeoutMs, from);
  const rec = recOf(socket);
  for (let i = sync.index - 1; i >= from; i--) {
    const e = rec.events[i];
    if (e.event === "snapshot" && e.data?.sessionId === sessionId) {
      e.consumed = true;
      return e.data;
    }
  }
  throw new Error(`join_session ${sessionId}: no snapshot before the sync_response; got:\n  ${summary(rec, from)}`);
}

/** Connects n websocket clients (4.8.1) and joins them to `sessionId` in order (first one leads). */
export async function band(url, n, sessionId = sid("band"), opts = {}) {
  const members = await connectMany(url, n, opts);
  for (const m of members) await join(m, sessionId);
  // Let the room broadcasts of the last join land, then start from a clean slate.
  await Promise.all(members.map((m) => waitFor(m, "user_joined", { memberCount: n })));
  mark(...members);
  return { sessionId, members, leader: members[0], followers: members.slice(1) };
}

/** The session state as seen by `sync_request` (positionMs, tempoBpm, isPlaying). */
export async function syncState(socket, sessionId) {
  const p = waitFor(socket, "sync_response", { sessionId }, 2000, seqOf(socket));
  socket.emit("sync_request", { sessionId });
  return p;
}

/** Expects `error {message, code}` on the socket; returns it. */
export async function expectError(socket, code, timeoutMs = 2000, from) {
  const err = await waitFor(socket, "error", undefined, timeoutMs, from);
  if (!err || typeof err !== "object") throw new Error(`error payload is not an object: ${JSON.stringify(err)}`);
  if (err.code !== code) throw new Error(`expected error code ${code}, got ${JSON.stringify(err)}`);
  if (typeof err.message !== "string" || err.message.length === 0)
    throw new Error(`error.message must be a non-empty string: ${JSON.stringify(err)}`);
  return err;
}
