// A TCP proxy on loopback standing for one client's network: cut() drops every connection through
// it, and refuses new ones, for a while, as a phone losing Wi-Fi on stage does. The client and the
// server both see their connection die at once, and the client's own reconnection is what brings
// it back. retarget() points later connections at another server (a load balancer sending the
// client's reconnection to another instance).
import net from "node:net";

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
