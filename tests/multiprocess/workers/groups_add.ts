// Adds transactions to a capture group. Usage: groups_add.ts DB GROUP TXN...
import { CaptureGroups } from "../../../mod.ts";

const [db, group, ...txns] = Deno.args;
// flock wakes waiters in no fixed order: with 250 processes on 2 loaded
// cores one may wait past the default 30 s. The test is about losing
// nothing, so it waits as long as the test's own guard.
const groups = new CaptureGroups(db, { durable: false, lockTimeout: 120_000 });
for (const txn of txns) await groups.addTransaction(group, txn);
console.log("done");
