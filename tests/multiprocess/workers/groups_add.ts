// Adds transactions to a capture group. Usage: groups_add.ts DB GROUP TXN...
// With LOCKBOX_TEST_BACKEND=postgres, DB names a document on the server the
// PG* variables point at.
import { CaptureGroups } from "../../../mod.ts";
import { testBackend } from "./_backend.ts";

const [db, group, ...txns] = Deno.args;
await using backend = await testBackend();
// flock wakes waiters in no fixed order: with 250 processes on 2 loaded
// cores one may wait past the default 30 s. The test is about losing
// nothing, so it waits as long as the test's own guard.
const groups = new CaptureGroups(db, {
  durable: false,
  lockTimeout: 120_000,
  backend: backend.backend,
});
for (const txn of txns) await groups.addTransaction(group, txn);
console.log("done");
