// The throwaway cluster the PostgreSQL tests share per file: test files run
// in parallel, so it must find a port of its own.

import assert from "node:assert/strict";
import { Cluster, NO_POSTGRES } from "./_cluster.ts";

Deno.test({
  name:
    "Cluster.start() starts on another free port when the port asked for is taken",
  ignore: NO_POSTGRES,
  fn: async () => {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (taken.addr as Deno.NetAddr).port;
    // And the port a choice from the pid gives (55000 + pid % 2000, as these
    // tests once chose): another file's cluster or PgBouncer could hold it.
    let fromPid: Deno.Listener | null = null;
    try {
      fromPid = Deno.listen({
        hostname: "127.0.0.1",
        port: 55000 + Deno.pid % 2000,
      });
    } catch { /* already someone else's: as good */ }
    try {
      const cluster = await Cluster.start({ port });
      try {
        assert.notEqual(cluster.port, port);
        assert.equal(await cluster.sql("SELECT 1"), "1");
      } finally {
        await cluster.stop();
      }
    } finally {
      taken.close();
      fromPid?.close();
    }
  },
});
