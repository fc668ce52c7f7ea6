// One process doing N journal-mode updates of a store in a fresh temporary
// directory, durable and not, each with its files closed as every update
// settles (the default) and kept open (`keepOpen`), printing the time per
// update: the subject of the cost breakdown in docs/benchmarks.md (run it under
// `strace -f -c` to count the system calls). The first 250 updates of the
// process (the first durable store's) are timed apart: V8 has not compiled
// lockbox's code yet, as in each worker of the 8 x 250 bench. Usage:
// deno run -A bench/_one_writer.ts [N] [DURABLE-KEEPOPEN] (N = 0 makes the
// stores and no updates: the start-up to subtract from an strace count;
// DURABLE-KEEPOPEN, such as false-true, runs that one store alone, to count
// one mode's system calls).
import { JsonStore } from "../mod.ts";

type Doc = { count: number; items: string[] };
const n = Number(Deno.args[0] ?? 2000);
const only = Deno.args[1];
const dir = await Deno.makeTempDir({ prefix: "lockbox_one_writer_" });
for (
  const [durable, keepOpen] of [
    [true, false],
    [true, true],
    [false, false],
    [false, true],
  ].filter(([d, k]) => only === undefined || only === `${d}-${k}`)
) {
  const store = new JsonStore<Doc>(`${dir}/${durable}-${keepOpen}.json`, {
    initial: { count: 0, items: [] },
    journal: true,
    durable,
    keepOpen,
  });
  const started = performance.now();
  let warm = started;
  for (let i = 0; i < n; i++) {
    if (i === 250) warm = performance.now();
    await store.update((d) => {
      d.count++;
      d.items.push(`p-${i}`);
    });
  }
  const ended = performance.now();
  await store.close();
  if (n === 0) continue;
  const each = (ms: number, count: number) => (ms * 1000 / count).toFixed(1);
  console.log(
    `journal, durable: ${durable}, keepOpen: ${keepOpen}: ${
      each(ended - started, n)
    } µs per update over ${n}; the first 250: ${
      each(warm - started, 250)
    } µs, the rest: ${each(ended - warm, n - 250)} µs`,
  );
}
await Deno.remove(dir, { recursive: true });
