// COUNT durable journal-mode updates of PATH after a first one, started all
// at once (burst) or one after another (sequential), for strace; prints the
// final count. Usage: journal_updates.ts PATH COUNT burst|sequential
import { JsonStore } from "../../../mod.ts";

const [path, countText, mode] = Deno.args;
const count = Number(countText);
const store = new JsonStore<{ n: number }>(path, {
  initial: { n: 0 },
  journal: true,
});
const bump = () => store.update((d) => void d.n++);
await bump();
if (mode === "burst") {
  await Promise.all(Array.from({ length: count }, bump));
} else {
  for (let i = 0; i < count; i++) await bump();
}
console.log((await store.read()).n);
