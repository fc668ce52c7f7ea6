// Saves one document N times as one actor. Usage: doc_save.ts ROOT ID ACTOR N
// With LOCKBOX_TEST_BACKEND=postgres, ROOT is a name on the server the PG*
// variables point at.
import { DocumentStore } from "../../../mod.ts";
import { testBackend } from "./_backend.ts";

const [root, id, actor, n] = Deno.args;
await using backend = await testBackend();
const docs = new DocumentStore<{ by: string; i: number }>(root, {
  backups: 3,
  durable: false,
  backend: backend.backend,
});
for (let i = 0; i < Number(n); i++) {
  await docs.save(id, { by: actor, i }, { actor });
}
console.log("done");
