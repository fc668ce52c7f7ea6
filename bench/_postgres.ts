// The PostgreSQL server a bench runs against: LOCKBOX_DATABASE_URL (or the
// PG* variables) when set; else a throwaway cluster (fsync on) when
// PostgreSQL's server is installed, stopped when the bench process ends;
// else none, and the bench says why it skips.

import { Cluster, PG_BIN } from "../testing/postgres.ts";

/** Where to connect (`undefined`: the PG* variables), or `skip`. */
export async function benchServer(
  bench: string,
): Promise<{ url: string | undefined; skip: boolean }> {
  const configured = Deno.env.get("LOCKBOX_DATABASE_URL") ??
    (Deno.env.get("PGHOST") ? "" : undefined);
  if (configured !== undefined) {
    return { url: configured || undefined, skip: false };
  }
  if (PG_BIN !== null) return { url: (await Cluster.start()).url, skip: false };
  console.log(
    `${bench}: PostgreSQL skipped: set LOCKBOX_DATABASE_URL (or PGHOST) or install PostgreSQL's server`,
  );
  return { url: undefined, skip: true };
}
