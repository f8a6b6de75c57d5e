// Per-file server fixtures: register node:test before()/after() hooks that start and stop servers.
import { before, after } from "node:test";
import { startServer } from "./server.mjs";
import { closeAll } from "./client.mjs";

/**
 * For the whole test file: starts one server per env (concurrently) in before(), then runs `ready()`
 * if given; closes every client and stops the servers in after(). Returns one handle per env, filled in
 * (url, port, logs(), stop(), ... as from startServer) once before() has run.
 * (Node 20 runs a file's top-level before() hooks concurrently, so set-up that needs the servers goes in `ready`.)
 */
function registerServers(envs, ready) {
  const handles = envs.map(() => ({}));
  before(async () => {
    const servers = await Promise.all(envs.map((env) => startServer(env)));
    servers.forEach((s, i) => Object.assign(handles[i], s));
    await ready?.();
  });
  after(async () => {
    closeAll();
    await Promise.all(handles.map((h) => h.stop?.()));
  });
  return handles;
}

/** The file's servers, one per env; see registerServers. */
export const useServers = (...envs) => registerServers(envs);

/** The file's one server; `ready()` runs once it is up (see registerServers). */
export const useServer = (env = {}, ready) => registerServers([env], ready)[0];
