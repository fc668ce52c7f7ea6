// Adds one transaction id to a JSON file under the lock (seed 000's test).
// Usage: append_txn.ts PATH ID
import { withLock } from "../../../mod.ts";

const [path, id] = Deno.args;
await withLock(path, () => {
  let doc: { transactions: string[] } = { transactions: [] };
  try {
    doc = JSON.parse(Deno.readTextFileSync(path));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  doc.transactions.push(id);
  Deno.writeTextFileSync(path, JSON.stringify(doc));
});
console.log("done");
