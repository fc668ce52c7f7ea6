// Adds transactions to a capture group. Usage: groups_add.ts DB GROUP TXN...
import { CaptureGroups } from "../../../mod.ts";

const [db, group, ...txns] = Deno.args;
const groups = new CaptureGroups(db, { durable: false });
for (const txn of txns) await groups.addTransaction(group, txn);
console.log("done");
