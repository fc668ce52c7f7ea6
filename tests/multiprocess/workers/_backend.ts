// The backend a seed worker uses: files, or with LOCKBOX_TEST_BACKEND=postgres
// a PostgresBackend on the server the PG* variables point at (imported only
// then, so that file workers never load the driver).
import type { StoreBackend } from "../../../mod.ts";

export async function testBackend(): Promise<
  { backend: StoreBackend | undefined } & AsyncDisposable
> {
  if (Deno.env.get("LOCKBOX_TEST_BACKEND") !== "postgres") {
    return { backend: undefined, [Symbol.asyncDispose]: async () => {} };
  }
  const { PostgresBackend } = await import("../../../src/postgres/mod.ts");
  const db = await PostgresBackend.connect();
  return { backend: db, [Symbol.asyncDispose]: () => db.close() };
}
