// One process doing N journal-mode updates of a store in a fresh temporary
// directory, durable and not, printing the time per update: the subject of
// the cost breakdown in the README (run it under `strace -f -c` to count
// the system calls). Usage: deno run -A bench/_one_writer.ts [N]
import { JsonStore } from "../mod.ts";

type Doc = { count: number; items: string[] };
const n = Number(Deno.args[0] ?? 2000);
const dir = await Deno.makeTempDir({ prefix: "lockbox_one_writer_" });
for (const durable of [true, false]) {
  const store = new JsonStore<Doc>(`${dir}/${durable}.json`, {
    initial: { count: 0, items: [] },
    journal: true,
    durable,
  });
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    await store.update((d) => {
      d.count++;
      d.items.push(`p-${i}`);
    });
  }
  console.log(
    `journal, durable: ${durable}: ${
      ((performance.now() - started) * 1000 / n).toFixed(1)
    } µs per update over ${n}`,
  );
}
await Deno.remove(dir, { recursive: true });
