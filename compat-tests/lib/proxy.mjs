// A TCP proxy on loopback standing for one client's network: cut() drops every connection through
// it, and refuses new ones, for a while, as a phone losing Wi-Fi on stage does. The client and the
// server both see their connection die at once, and the client's own reconnection is what brings
// it back. retarget() points later connections at another server (a load balancer sending the
// client's reconnection to another instance). onStage() and dropFor() are a client on such a
// network, and its drop.
import net from "node:net";
import { connect } from "./client.mjs";

const proxies = new Set();

/** Closes every proxy `onStage` opened (use in after()). */
export const closeProxies = () => Promise.all([...proxies].map((p) => p.close()));

/** A websocket client whose network is a proxy to `port`, reconnecting by itself as the app does. */
export async function onStage(port) {
  const proxy = await startProxy(port);
  proxies.add(proxy);
  const socket = await connect(proxy.url, {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
  });
  return { socket, proxy };
}

/**
 * Cuts the stage client's network for `ms`; resolves with its new socket id once it has
 * reconnected by itself. Listening starts before the cut, so a quick reconnection is not missed.
 */
export function dropFor({ socket, proxy }, ms, timeoutMs = 15_000) {
  const back = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the client did not reconnect")), timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket.id);
    });
  });
  back.catch(() => {}); // awaited later; a test failing first must not leave it unhandled
  proxy.cut(ms);
  return back;
}

/** Starts a proxy to 127.0.0.1:targetPort; resolves with {url, port, cut(ms), retarget(port), close()}. */
export async function startProxy(targetPort) {
  let target = targetPort;
  let cutUntil = 0;
  const pairs = new Set();
  const server = net.createServer((client) => {
    if (Date.now() < cutUntil) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Drops every connection now and refuses new ones for `ms`. */
    cut(ms) {
      cutUntil = Date.now() + ms;
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    retarget(newPort) {
      target = newPort;
    },
    close() {
      this.cut(0);
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
