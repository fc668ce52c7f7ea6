// Saves one document N times as one actor. Usage: doc_save.ts ROOT ID ACTOR N
import { DocumentStore } from "../../../mod.ts";

const [root, id, actor, n] = Deno.args;
const docs = new DocumentStore<{ by: string; i: number }>(root, {
  backups: 3,
  durable: false,
});
for (let i = 0; i < Number(n); i++) {
  await docs.save(id, { by: actor, i }, { actor });
}
console.log("done");
