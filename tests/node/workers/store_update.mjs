// COUNT JsonStore updates. Usage: store_update.mjs PATH COUNT PREFIX [--journal]
import { lockbox } from "./_lockbox.mjs";

const { JsonStore } = lockbox;

const [path, count, prefix, ...flags] = process.argv.slice(2);
const store = new JsonStore(path, {
  initial: { count: 0, items: [] },
  durable: false,
  journal: flags.includes("--journal"),
  compactAt: 2048,
});
for (let i = 0; i < Number(count); i++) {
  await store.update((d) => {
    d.count++;
    d.items.push(`${prefix}-${i}`);
  });
}
console.log("done");
