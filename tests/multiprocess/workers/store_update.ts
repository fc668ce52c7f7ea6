// Runs COUNT JsonStore updates (counter + item), printing "ack ID" after each
// resolved update. Usage: store_update.ts PATH COUNT PREFIX [--no-durable]
import { JsonStore } from "../../../mod.ts";

const [path, count, prefix] = Deno.args;
const store = new JsonStore(path, {
  initial: { count: 0, items: [] as string[] },
  durable: !Deno.args.includes("--no-durable"),
});
for (let i = 0; i < Number(count); i++) {
  const id = `${prefix}-${i}`;
  await store.update((data) => {
    data.count++;
    data.items.push(id);
  });
  console.log(`ack ${id}`);
}
console.log("done");
