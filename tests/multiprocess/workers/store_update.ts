// Runs COUNT JsonStore updates (counter + item), printing "ack ID" after each
// resolved update; with --burst N, started N at a time (each round awaited).
// Usage: store_update.ts PATH COUNT PREFIX [--no-durable] [--journal] [--compact-at BYTES]
//   [--blocking] [--burst N]
import { parseArgs } from "node:util";
import { JsonStore } from "../../../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    "no-durable": { type: "boolean", default: false },
    journal: { type: "boolean", default: false },
    blocking: { type: "boolean", default: false },
    "compact-at": { type: "string" },
    burst: { type: "string", default: "1" },
  },
});
const [path, count, prefix] = positionals;
const store = new JsonStore(path, {
  initial: { count: 0, items: [] as string[] },
  durable: !values["no-durable"],
  journal: values.journal,
  blockingLock: values.blocking,
  lockTimeout: values.blocking ? Infinity : undefined,
  compactAt: values["compact-at"] ? Number(values["compact-at"]) : undefined,
});
const update = async (i: number) => {
  const id = `${prefix}-${i}`;
  await store.update((data) => {
    data.count++;
    data.items.push(id);
  });
  console.log(`ack ${id}`);
};
const burst = Number(values.burst);
for (let i = 0; i < Number(count); i += burst) {
  const round = Array.from(
    { length: Math.min(burst, Number(count) - i) },
    (_, k) => update(i + k),
  );
  await Promise.all(round);
}
console.log("done");
