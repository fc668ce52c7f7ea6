// What a watch costs while nothing changes: a watcher process (the watch
// bench's _watch_child.ts) on a journal store of N items, and the CPU it
// spends over 10 s in which nobody writes (its default re-check looks every
// 2 s). Reads /proc (Linux). Usage: deno run -A bench/idle_watch.ts [N]
import { fileURLToPath } from "node:url";
import { JsonStore } from "../mod.ts";

const items = Number(Deno.args[0] ?? 1_000_000);
const seconds = 10;
const dir = await Deno.makeTempDir({ prefix: "lockbox_idle_watch_" });
const path = `${dir}/state.json`;
const store = new JsonStore<{ n: number; items?: string[] }>(path, {
  initial: { n: 0 },
  journal: true,
});
await store.write({
  n: 0,
  items: Array.from({ length: items }, (_, i) => `item-${i}`),
});
await store.update((d) => void (d.n = 1));

const child = fileURLToPath(new URL("./_watch_child.ts", import.meta.url));
const watcher = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", child, "journal", path],
  stdout: "piped",
}).spawn();
// Started once it has yielded the document; measured after 3 s more, once
// the garbage of that first read is collected.
await watcher.stdout.getReader().read();
await new Promise((resolve) => setTimeout(resolve, 3000));

/** The watcher's user + system CPU so far, in ms (clock ticks of 10 ms). */
function cpu(): number {
  const fields = Deno.readTextFileSync(`/proc/${watcher.pid}/stat`)
    .replace(/^.*\) /, "").split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
const before = cpu();
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const spent = cpu() - before;
watcher.kill();
await watcher.status;
console.log(
  `a watch on an idle journal store of ${items} items: ${spent} ms of CPU in ${seconds} s (${
    (spent / seconds / 10).toFixed(1)
  }% of a core)`,
);
await Deno.remove(dir, { recursive: true });
