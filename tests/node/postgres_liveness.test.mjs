// PostgresBackend on Node when the connection stalls: a TCP forwarder on
// 127.0.0.1 that stops passing bytes on (and holds them) while it keeps its
// sockets open. Timeouts here are hang guards only.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { Cluster, NO_POSTGRES } from "./_cluster.mjs";
import { lockboxPostgres } from "./workers/_lockbox.mjs";

const { LockError, LockLostError, PostgresBackend } = await lockboxPostgres();

let cluster;
before(() => {
  if (!NO_POSTGRES) cluster = Cluster.start();
});
after(() => cluster?.stop());

const skip = NO_POSTGRES
  ? "no PostgreSQL server (apt-get install postgresql)"
  : false;

/** A forwarder to `targetPort` that can stall: stall(), resume(), close(). */
async function stallProxy(targetPort) {
  let stalled = false;
  const held = [];
  const sockets = new Set();
  const pass = (from, to) => {
    from.on("data", (data) => {
      if (stalled) held.push(() => to.write(data));
      else to.write(data);
    });
    from.on("end", () => {
      if (stalled) held.push(() => to.end());
      else to.end();
    });
    from.on("error", () => to.destroy());
    from.on("close", () => sockets.delete(from));
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    pass(client, upstream);
    pass(upstream, client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stall: () => stalled = true,
    resume: () => {
      stalled = false;
      for (const send of held.splice(0)) send();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `promise`'s outcome (a value or an error), or a failure after `ms`. */
async function settled(promise, what, ms = 30_000) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`hang guard: ${what} still pending`)),
      ms,
    );
  });
  try {
    return await Promise.race([
      promise.then((value) => ({ value }), (error) => ({ error })),
      guard,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test(
  "PostgresBackend on Node: a stalled wait, a held lock, release and close settle when the connection stalls",
  { skip },
  async () => {
    const proxy = await stallProxy(cluster.port);
    const direct = await PostgresBackend.connect(cluster.url);
    let db;
    try {
      db = await PostgresBackend.connect(proxy.url, { connectTimeout: 3000 });
      const other = await direct.acquire("node-stall-wait");
      const held = await db.acquire("node-stall-held");
      const lost = new Promise((resolve) =>
        held.signal.addEventListener("abort", () => resolve(held.signal.reason))
      );
      const waiting = db.acquire("node-stall-wait", { timeout: 3000 });
      const controller = new AbortController();
      const other2 = await direct.acquire("node-stall-abort");
      const aborting = db.acquire("node-stall-abort", {
        signal: controller.signal,
      });
      for (let i = 0; i < 1500; i++) {
        const count = Number(cluster.sql(
          "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        ));
        if (count >= 2) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      proxy.stall();
      controller.abort(new Error("stop"));
      const [timed, aborted, loss] = await Promise.all([
        settled(waiting, "acquire with a timeout"),
        settled(aborting, "acquire with a signal"),
        settled(lost, "lock.signal"),
      ]);
      assert.ok(timed.error instanceof LockError, String(timed.error));
      assert.match(timed.error.message, /no answer within/);
      assert.equal(aborted.error?.message, "stop");
      assert.ok(loss.value instanceof LockLostError, String(loss.value));
      assert.deepEqual(await settled(held.release(), "release"), {
        value: undefined,
      });
      assert.deepEqual(await settled(db.close(), "close"), {
        value: undefined,
      });
      await other.release();
      await other2.release();
    } finally {
      await proxy.close();
      await direct.close();
    }
  },
);
