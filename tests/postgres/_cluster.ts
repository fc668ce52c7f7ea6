// A throwaway PostgreSQL cluster per test file (testing/postgres.ts starts
// it; tests restart it, `pg_ctl restart -m immediate` being a server crash,
// and stop it at the end).
//
// Without PostgreSQL's server binaries (Debian: apt-get install postgresql)
// the tests are ignored with a message, except in CI (CI=true), where a
// missing server is a failure: .ci/run installs it.

import { fileURLToPath } from "node:url";
import { Cluster, PG_BIN } from "../../testing/postgres.ts";

export {
  Cluster,
  PG_BIN,
  PGBOUNCER,
  startPgBouncer,
} from "../../testing/postgres.ts";

/** Whether PostgreSQL tests must be skipped here (never in CI). */
export const NO_POSTGRES = PG_BIN === null && Deno.env.get("CI") !== "true";
if (NO_POSTGRES) {
  console.warn(
    "PostgreSQL tests ignored: no server binaries in /usr/lib/postgresql (apt-get install postgresql)",
  );
}

/**
 * One test file's cluster, started by its first test: `test` registers a
 * test that gets it (ignored without PostgreSQL), `cluster` starts or
 * returns it, and `stopAfterwards` adds a last test that stops it early
 * (it stops at the end of the run anyway).
 */
export function pgSuite(label: string): {
  cluster: () => Promise<Cluster>;
  test: (name: string, fn: (c: Cluster) => Promise<void>) => void;
  stopAfterwards: () => void;
} {
  let started: Promise<Cluster> | null = null;
  const cluster = () => started ??= Cluster.start();
  return {
    cluster,
    test: (name, fn) =>
      Deno.test({
        name,
        ignore: NO_POSTGRES,
        fn: async () => fn(await cluster()),
      }),
    stopAfterwards: () =>
      Deno.test({
        name: `${label}: stop the test cluster`,
        ignore: NO_POSTGRES,
        fn: async () => {
          if (started) await (await started).stop();
        },
      }),
  };
}

/** The absolute path of a PostgreSQL test worker. */
export function pgWorker(name: string): string {
  return fileURLToPath(new URL(`./workers/${name}`, import.meta.url));
}
