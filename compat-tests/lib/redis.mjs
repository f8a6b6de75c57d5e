// Starts a real redis-server (no persistence) on a free port in a temp dir, for the multi-instance tests.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { freePort, sleep, killOnExit } from "./server.mjs";

export const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";

/** A key prefix no other test file uses. */
export const keyPrefix = (name = "t") => `${name}${randomBytes(4).toString("hex")}:`;

/**
 * Sends raw RESP commands (arrays of strings) on one connection; resolves with the raw reply text
 * once `until(text)` holds, rejects on error or after timeoutMs.
 */
export function redisRaw(port, commands, { timeoutMs = 1000, until = () => true } = {}) {
  const enc = (args) => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("");
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis on ${port}: no full answer within ${timeoutMs} ms (got ${JSON.stringify(buf)})`));
    }, timeoutMs);
    sock.on("connect", () => sock.write(commands.map(enc).join("")));
    sock.on("data", (d) => {
      buf += d;
      if (until(buf)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf);
      }
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Starts redis-server on a free port. Options: {password}.
 * Returns {port, host, url (with the password when set), password, proc, logs(),
 * pause() (SIGSTOP), resume() (SIGCONT), paused, stop()}.
 */
export async function startRedis({ password } = {}) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "bandsync-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ];
  if (password) args.push("--requirepass", password);
  const proc = killOnExit(spawn(REDIS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on("exit", (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    proc.on("error", (e) => {
      exitInfo = { code: null, signal: null, error: e };
      resolve(exitInfo);
    });
  });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  // Ready when it answers PING (after AUTH when a password is set).
  const deadline = Date.now() + 5000;
  for (;;) {
    if (exitInfo) {
      cleanup();
      throw new Error(`redis-server exited at start-up (${JSON.stringify(exitInfo)}): ${log}`);
    }
    try {
      const cmds = password ? [["AUTH", password], ["PING"]] : [["PING"]];
      const reply = await redisRaw(port, cmds, { timeoutMs: 500, until: (t) => t.includes("PONG") || t.startsWith("-") });
      if (reply.includes("PONG")) break;
    } catch {}
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      cleanup();
      throw new Error(`redis-server not answering on ${port} after 5 s: ${log}`);
    }
    await sleep(30);
  }
  let stopping = null;
  const r = {
    port,
    host: "127.0.0.1",
    password,
    url: password ? `redis://:${password}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`,
    proc,
    paused: false,
    logs: () => log,
    /** SIGSTOP: the process keeps its sockets open but answers nothing. */
    pause() {
      proc.kill("SIGSTOP");
      r.paused = true;
    },
    /** SIGCONT. */
    resume() {
      proc.kill("SIGCONT");
      r.paused = false;
    },
    /** Runs commands (after AUTH when needed); resolves with the raw reply. */
    command(...cmds) {
      const all = password ? [["AUTH", password], ...cmds] : cmds;
      return redisRaw(port, all, {
        timeoutMs: 1000,
        until: (t) => (t.match(/\r\n/g) ?? []).length >= all.length,
      });
    },
    /** SIGCONT (if paused), SIGTERM, SIGKILL after 3 s; removes the temp dir. */
    stop() {
      if (stopping) return stopping;
      stopping = (async () => {
        if (!exitInfo) {
          try {
            proc.kill("SIGCONT");
            proc.kill("SIGTERM");
          } catch {}
          const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
          await exited;
          clearTimeout(timer);
        }
        cleanup();
        return exitInfo;
      })();
      return stopping;
    },
  };
  return r;
}
