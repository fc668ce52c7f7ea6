// `deno task bench`: how long from a writer's update to a watcher in
// another process yielding it (up to the watcher's line on a pipe, so an
// upper bound; from the start of the write, and from its acknowledgment),
// for whole-file, journal and PostgreSQL stores (also with documents of
// 1,000, 100,000 and 1,000,000 items, of which one field changes), beside
// the same writer's commit
// time. PostgreSQL: against LOCKBOX_DATABASE_URL (or the PG* variables) when
// set, else a throwaway cluster when the server is installed, else skipped
// with a message.

import { fileURLToPath } from "node:url";
import { JsonStore } from "../mod.ts";
import { PostgresBackend } from "../src/postgres/mod.ts";
import { benchServer } from "./_postgres.ts";

const child = fileURLToPath(new URL("./_watch_child.ts", import.meta.url));
const dir = Deno.makeTempDirSync({ prefix: "lockbox_watch_bench_" });

const { url, skip: noPostgres } = await benchServer("watch_bench");
const db = noPostgres ? null : await PostgresBackend.connect(url);

/** A watcher process and a way to wait for its line for n. */
function watcher(mode: string, target: string) {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", child, mode, target],
    env: url ? { LOCKBOX_DATABASE_URL: url } : {},
    stdout: "piped",
  }).spawn();
  const lines = process.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let buffer = "";
  const seen = async (n: number) => {
    while (true) {
      const at = buffer.indexOf("\n");
      if (at !== -1) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        if (Number(line) >= n) return;
        continue;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error("the watcher ended");
      buffer += value;
    }
  };
  return { process, seen };
}

const latencies: Record<string, number[]> = {};
const afterCommit: Record<string, number[]> = {};
/** Documents of so many items, of which one field changes per update. */
const SIZES = { "1k": 1_000, "100k": 100_000, "1m": 1_000_000 } as const;
const modes: [string, string][] = [
  ["whole", "whole-file"],
  ["journal", "journal"],
  ["postgres", "PostgreSQL"],
];
for (const [key, size] of Object.entries(SIZES)) {
  const items = `${size.toLocaleString("en")} items`;
  modes.push([`journal-${key}`, `journal, ${items}`]);
  modes.push([`postgres-${key}`, `PostgreSQL, ${items}`]);
}
const children: Deno.ChildProcess[] = [];
for (const [mode, label] of modes) {
  const postgres = mode.startsWith("postgres");
  const skip = postgres && noPostgres;
  const size = SIZES[mode.split("-")[1] as keyof typeof SIZES];
  const target = postgres ? `watched-${mode}` : `${dir}/${mode}.json`;
  const store = skip
    ? null
    : postgres
    ? db!.jsonStore<{ n: number; items?: string[] }>(target, {
      initial: { n: 0 },
    })
    : new JsonStore<{ n: number; items?: string[] }>(target, {
      initial: { n: 0 },
      journal: mode !== "whole",
    });
  // A sized document changes by one field; the others are replaced whole.
  const change = (next: number) =>
    size !== undefined
      ? store!.update((d) => void (d.n = next))
      : store!.write({ n: next });
  let n = 0;
  let watching: ReturnType<typeof watcher> | null = null;
  latencies[label] = [];
  afterCommit[label] = [];
  Deno.bench({
    name: `${label}: write -> a watcher in another process yields it`,
    group: `watch latency, ${label}`,
    ignore: skip,
    async fn(b) {
      if (watching === null) {
        await store!.write(
          size === undefined ? { n: 0 } : {
            n: 0,
            items: Array.from({ length: size }, (_, i) => `item-${i}`),
          },
        );
        watching = watcher(mode, target);
        children.push(watching.process);
        await watching.seen(0);
      }
      const next = ++n;
      // Timed from the start of the write: a watcher often has a file
      // store's new version before the writer's fsyncs return, so timing
      // from the acknowledgment would show almost nothing.
      b.start();
      const from = performance.now();
      await change(next);
      const committed = performance.now();
      await watching.seen(next);
      b.end();
      latencies[label].push(performance.now() - from);
      afterCommit[label].push(performance.now() - committed);
    },
  });
  Deno.bench({
    name: `${label}: the writer's commit (durable write)`,
    group: `watch latency, ${label}`,
    baseline: true,
    ignore: skip,
    async fn() {
      await change(++n);
    },
  });
}

// deno bench prints no median: each store's latency median and p99.
globalThis.addEventListener("unload", () => {
  for (const [label, samples] of Object.entries(latencies)) {
    if (samples.length === 0) continue;
    const quantiles = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      const at = (q: number) =>
        sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      return `median ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms`;
    };
    console.log(
      `watch latency, ${label}, from the write's start: ${
        quantiles(samples)
      }; after the writer's acknowledgment: ${
        quantiles(afterCommit[label])
      } (${samples.length} updates)`,
    );
  }
  for (const process of children) process.kill();
  Deno.removeSync(dir, { recursive: true });
});
