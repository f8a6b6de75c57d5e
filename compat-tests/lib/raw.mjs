// Raw Engine.IO v4 / Socket.IO v5 clients (websocket and HTTP long-polling) that send exactly the bytes
// a test gives them, for input no well-behaved client library would produce.
import WebSocket from "ws";
import net from "node:net";

const EIO_PATH = "/socket.io/?EIO=4";
/** Engine.IO's separator between packets in one polling body. */
export const SEP = "\x1e";


// Everything opened here, so that a failed test does not leave its connections to the next one.
const openSockets = new Set();
const openPolling = new Map(); // "url sid" -> {url, sid}

/** Terminates every raw websocket and closes every polling session opened through this module. */
export async function closeAllRaw() {
  for (const raw of openSockets) raw.close();
  openSockets.clear();
  const sessions = [...openPolling.values()];
  openPolling.clear();
  await Promise.all(sessions.map(({ url, sid }) => pollingPost(url, sid, "1", { timeoutMs: 1000 })));
}

/** ws://host:port/socket.io/?EIO=4&transport=websocket for a server's http:// url. */
export const wsUrl = (url) => `${url.replace(/^http/, "ws")}${EIO_PATH}&transport=websocket`;

/** The polling endpoint, with the Engine.IO session id once there is one. */
export const pollingUrl = (url, sid) => `${url}${EIO_PATH}&transport=polling${sid ? `&sid=${encodeURIComponent(sid)}` : ""}`;

/**
 * Opens a raw websocket to the server. Options:
 *  - connect (true): send `40` (connect to "/") and wait for the server's `40{"sid":...}`;
 *  - answerPings (true): answer Engine.IO `2` with `3` (set `raw.answerPings = false` later to go silent);
 *  - timeoutMs (3000): for the open and the connect.
 * Resolves with a handle: {ws, open (the `0{...}` payload), socketId, messages (text frames, in order),
 * binaries (binary frames), closed (Promise<{code, reason, at}>), isOpen(), send(data), waitFor(pred, ms),
 * events(name) (payloads of `42["name",...]` received), close()}.
 */
export async function rawSocket(url, { connect = true, answerPings = true, timeoutMs = 3000, wsOptions = {} } = {}) {
  const ws = new WebSocket(wsUrl(url), { maxPayload: 0, ...wsOptions });
  const raw = {
    ws,
    answerPings,
    messages: [],
    binaries: [],
    waiters: [],
    open: null,
    socketId: null,
    closeInfo: null,
  };
  raw.closed = new Promise((resolve) => {
    ws.on("close", (code, reason) => {
      raw.closeInfo = { code, reason: reason.toString(), at: Date.now() };
      // Nothing more can arrive: fail the waits now rather than at their timeouts.
      for (const w of raw.waiters.splice(0)) w.reject(new Error(`raw socket closed (code ${code})`));
      resolve(raw.closeInfo);
    });
  });
  // A connection reset by the server is an expected outcome of most attacks, not a test failure.
  ws.on("error", (err) => (raw.error = err));
  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      raw.binaries.push(data);
      return;
    }
    const text = data.toString();
    raw.messages.push(text);
    if (text === "2" && raw.answerPings && ws.readyState === WebSocket.OPEN) ws.send("3");
    for (let i = 0; i < raw.waiters.length; i++) {
      if (raw.waiters[i].pred(text)) {
        const [w] = raw.waiters.splice(i, 1);
        w.resolve(text);
        i--;
      }
    }
  });
  raw.isOpen = () => ws.readyState === WebSocket.OPEN;
  raw.send = (data, opts) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(data, opts);
  };
  raw.close = () => {
    openSockets.delete(raw);
    try {
      ws.terminate();
    } catch {}
  };
  openSockets.add(raw);
  /**
   * Resolves with the first text frame (from index `from` of raw.messages on, received already or later)
   * for which pred(text) holds; rejects after `ms`, or at once if the connection closes first.
   */
  raw.waitFor = (pred, ms = 2000, label = String(pred), from = 0) => {
    const hit = raw.messages.slice(from).find(pred);
    if (hit !== undefined) return Promise.resolve(hit);
    if (raw.closeInfo) return Promise.reject(new Error(`raw socket closed (code ${raw.closeInfo.code})`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        raw.waiters.splice(raw.waiters.indexOf(w), 1);
        reject(new Error(`raw socket: no frame matching ${label} within ${ms} ms; got: ${raw.messages.slice(-10).join(" | ")}`));
      }, ms);
      const w = {
        pred,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      raw.waiters.push(w);
    });
  };
  /** Payloads of Socket.IO events named `name` received so far (on "/"). */
  raw.events = (name) =>
    raw.messages
      .filter((m) => m.startsWith("42"))
      .map((m) => {
        try {
          return JSON.parse(m.slice(m.indexOf("[")));
        } catch {
          return null;
        }
      })
      .filter((a) => Array.isArray(a) && a[0] === name)
      .map((a) => a[1]);

  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`raw websocket to ${url}: not open within ${timeoutMs} ms`)), timeoutMs);
    ws.once("open", () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  const open = await raw.waitFor((t) => t.startsWith("0{"), timeoutMs, "Engine.IO open");
  raw.open = JSON.parse(open.slice(1));
  if (connect) {
    raw.send("40");
    const ok = await raw.waitFor((t) => t.startsWith("40{"), timeoutMs, "Socket.IO connect");
    raw.socketId = JSON.parse(ok.slice(2)).sid;
  }
  return raw;
}

/** A Socket.IO EVENT packet on "/": 42["name",payload] (or 42<ackId>[...] with an ack id). */
export const eventPacket = (name, payload, ackId = "") =>
  `42${ackId}${JSON.stringify(payload === undefined ? [name] : [name, payload])}`;

/** Opens an Engine.IO polling session; resolves with {sid, open, status}. */
export async function pollingOpen(url) {
  const res = await fetch(pollingUrl(url), { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  if (res.status !== 200 || !text.startsWith("0{")) throw new Error(`polling handshake: ${res.status} ${text.slice(0, 200)}`);
  const open = JSON.parse(text.slice(1));
  openPolling.set(`${url} ${open.sid}`, { url, sid: open.sid });
  return { sid: open.sid, open, status: res.status };
}

/** POSTs `body` (string or bytes) to a polling session; resolves with {status, text} (status 0: connection failed). */
export async function pollingPost(url, sid, body, { timeoutMs = 5000, contentType = "text/plain;charset=UTF-8" } = {}) {
  try {
    const res = await fetch(pollingUrl(url, sid), {
      method: "POST",
      body,
      headers: { "content-type": contentType },
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, text: await res.text() };
  } catch (e) {
    return { status: 0, text: String(e?.cause?.code ?? e?.message ?? e) };
  }
}

/**
 * One polling GET; resolves with {status, text, packets} (packets: the body split on SEP; status 0: the
 * request failed). An Engine.IO ping in the answer is answered with a pong (unless answerPings is false),
 * as a client does, so the session is not dropped for silence.
 */
export async function pollingGet(url, sid, { timeoutMs = 5000, answerPings = true } = {}) {
  try {
    const res = await fetch(pollingUrl(url, sid), { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const packets = text ? text.split(SEP) : [];
    if (answerPings && res.status === 200 && packets.includes("2")) await pollingPost(url, sid, "3");
    return { status: res.status, text, packets };
  } catch (e) {
    return { status: 0, text: String(e?.cause?.code ?? e?.name ?? e), packets: [] };
  }
}

/** Closes a polling session the way a client does (an Engine.IO close packet). */
export function pollingClose(url, sid) {
  openPolling.delete(`${url} ${sid}`);
  return pollingPost(url, sid, "1");
}

/**
 * A polling client connected to "/": handshake, `40`, and the server's `40{"sid":...}`.
 * Resolves with {sid (Engine.IO), socketId (Socket.IO)}.
 */
export async function pollingConnect(url) {
  const { sid } = await pollingOpen(url);
  const post = await pollingPost(url, sid, "40");
  if (post.status !== 200) throw new Error(`polling connect POST: ${post.status} ${post.text}`);
  // The answer may come after a ping, in a later GET.
  const seen = [];
  for (let i = 0; i < 3; i++) {
    const get = await pollingGet(url, sid);
    seen.push(get.text);
    const ok = get.packets.find((p) => p.startsWith("40{"));
    if (ok) return { sid, socketId: JSON.parse(ok.slice(2)).sid };
    if (get.status !== 200) break;
  }
  throw new Error(`polling connect: no 40{...} in ${JSON.stringify(seen)}`);
}

/**
 * A plain TCP connection to the server that writes `data` and then nothing more.
 * Resolves with {socket, closed: Promise<{at, data}>} (data: whatever the server answered).
 */
export function rawTcp(port, data) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (d) => (received += d));
    const closed = new Promise((r) => socket.on("close", () => r({ at: Date.now(), data: received })));
    socket.on("error", () => {});
    socket.once("connect", () => {
      if (data) socket.write(data);
      resolve({ socket, closed });
    });
    socket.once("error", reject);
  });
}
