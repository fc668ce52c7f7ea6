// COUNT JsonStore updates; with --defaults, a store with default options
// (durable). Usage: store_update.mjs PATH COUNT PREFIX [--journal | --defaults]
import { lockbox } from "./_lockbox.mjs";

const { JsonStore } = lockbox;

const [path, count, prefix, ...flags] = process.argv.slice(2);
const initial = { count: 0, items: [] };
const store = new JsonStore(
  path,
  flags.includes("--defaults") ? { initial } : {
    initial,
    durable: false,
    journal: flags.includes("--journal"),
    compactAt: 2048,
  },
);
for (let i = 0; i < Number(count); i++) {
  await store.update((d) => {
    d.count++;
    d.items.push(`${prefix}-${i}`);
  });
}
console.log("done");
