// `deno task bench`: multi-process read-modify-write throughput of JsonStore
// (whole-file and journal mode) beside SQLite (WAL, BEGIN IMMEDIATE: the JSON
// document in one row, and in its natural row form, a counter updated and a
// row inserted per update) and naive unlocked writes, and the cost of one
// update as the document grows.
//
// The multi-process cases run 8 processes x 250 updates on one document that
// grows to 2000 items; ops/s = 2000 / (time per iteration).

import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { JsonStore } from "../mod.ts";

const PROCESSES = 8;
const UPDATES = 250;
const worker = fileURLToPath(new URL("./_store_worker.ts", import.meta.url));
const dir = Deno.makeTempDirSync({ prefix: "lockbox_store_bench_" });
let run = 0;

function fresh(mode: string): string {
  const path = `${dir}/${mode}-${run++}`;
  if (mode.startsWith("sqlite-rows")) {
    const db = new DatabaseSync(path);
    db.exec(
      "PRAGMA journal_mode=WAL; CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); CREATE TABLE items (id INTEGER PRIMARY KEY, item TEXT NOT NULL)",
    );
    db.prepare("INSERT INTO counter VALUES (1, 0)").run();
    db.close();
  } else if (mode.startsWith("sqlite")) {
    const db = new DatabaseSync(path);
    db.exec(
      "PRAGMA journal_mode=WAL; CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    );
    db.prepare("INSERT INTO doc VALUES (1, ?)").run('{"count":0,"items":[]}');
    db.close();
  }
  return path;
}

/**
 * Per mode: CPU per update (user, system, in µs) summed over its processes,
 * and the races' wall time (ms), summed over its races.
 */
const cpu = new Map<
  string,
  { user: number; system: number; ms: number; races: number }
>();

async function race(mode: string, path: string): Promise<void> {
  const started = performance.now();
  const children = Array.from(
    { length: PROCESSES },
    (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", worker, mode, path, String(UPDATES), `p${i}`],
        stdout: "piped",
      }).output(),
  );
  const total = cpu.get(mode) ?? { user: 0, system: 0, ms: 0, races: 0 };
  const results = await Promise.all(children);
  total.ms += performance.now() - started;
  for (const result of results) {
    if (!result.success) throw new Error(`a ${mode} worker failed`);
    const line = new TextDecoder().decode(result.stdout).match(
      /^cpu (\d+) (\d+)$/m,
    );
    if (line) {
      total.user += Number(line[1]) / (PROCESSES * UPDATES);
      total.system += Number(line[2]) / (PROCESSES * UPDATES);
    }
  }
  total.races++;
  cpu.set(mode, total);
}

for (
  const [mode, label] of [
    ["json-durable", "JsonStore durable: true (fsync file + dir)"],
    ["json-fast", "JsonStore durable: false"],
    ["journal-durable", "JsonStore journal, durable: true (fdatasync)"],
    ["journal-fast", "JsonStore journal, durable: false"],
    [
      "journal-durable-block",
      "JsonStore journal, durable: true, blockingLock",
    ],
    ["journal-fast-block", "JsonStore journal, durable: false, blockingLock"],
    ["sqlite-full", "SQLite WAL synchronous=FULL"],
    ["sqlite-normal", "SQLite WAL synchronous=NORMAL"],
    ["sqlite-rows-full", "SQLite WAL synchronous=FULL, rows"],
    ["sqlite-rows-normal", "SQLite WAL synchronous=NORMAL, rows"],
    ["floor-async", "floor: flock + append + fdatasync, FsFile.lock() wait"],
    ["floor-block", "floor: flock + append + fdatasync, lockSync() wait"],
    ["floor-protocol", "floor: lockbox's system calls, no JavaScript logic"],
  ]
) {
  Deno.bench({
    name: `${label}, 8 x 250 updates`,
    group: "8 processes x 250 read-modify-writes",
    n: 3,
    warmup: 0,
    async fn(b) {
      const path = fresh(mode);
      b.start();
      await race(mode, path);
      b.end();
    },
  });
}

// What every row above spends before its first update: 8 processes that
// start, import lockbox and exit. Subtracted from a row's time, it leaves the
// time its updates take.
Deno.bench({
  name: "start-up only: 8 processes, no updates",
  group: "8 processes x 250 read-modify-writes",
  n: 3,
  warmup: 0,
  async fn(b) {
    const path = fresh("startup");
    b.start();
    await race("startup", path);
    b.end();
  },
});

Deno.bench({
  name: "naive unlocked read-modify-write, 8 x 250 updates",
  group: "8 processes x 250 read-modify-writes",
  n: 3,
  warmup: 0,
  async fn(b) {
    const path = fresh("naive");
    b.start();
    await race("naive", path);
    b.end();
    let kept = 0;
    try {
      kept = JSON.parse(Deno.readTextFileSync(path)).items.length;
    } catch {
      // Left half-written: everything is lost.
    }
    console.log(
      `naive: kept ${kept} of ${PROCESSES * UPDATES} updates, lost ${
        PROCESSES * UPDATES - kept
      }`,
    );
  },
});

// One update (bump a counter) on documents of 1k to 1M items, in one
// process: a whole-file rewrite costs O(size) per update (1M is left out: a
// second or so per update), a journal line does not.
for (const items of [1_000, 10_000, 100_000, 1_000_000]) {
  for (const journal of [false, true]) {
    if (!journal && items > 100_000) continue;
    for (const durable of [true, false]) {
      const path = `${dir}/size-${items}-${journal}-${durable}.json`;
      const store = new JsonStore(path, {
        initial: () => ({
          count: 0,
          items: Array.from({ length: items }, (_, i) => `item-${i}`),
        }),
        durable,
        journal,
        keepOpen: true, // one store for every iteration, as a server has
      });
      Deno.bench({
        name: `${
          journal ? "journal" : "whole file"
        }, ${items} items, durable: ${durable}`,
        group: `one update by document size${journal ? ", journal" : ""}`,
        async fn() {
          await store.update((d) => void d.count++);
        },
      });
    }
  }
}

globalThis.addEventListener("unload", () => {
  if (cpu.size > 0) {
    console.log(
      "\nCPU per update, 8 x 250 (every process's user + system time after its start-up, / 2000):",
    );
    for (const [mode, { user, system, races }] of cpu) {
      console.log(
        `  ${mode.padEnd(22)} ${
          (user / races).toFixed(0).padStart(5)
        } µs user + ${(system / races).toFixed(0).padStart(5)} µs system`,
      );
    }
    // Every race starts 8 processes: less the start-up race's time, what
    // remains is the time its 2000 updates took.
    const startup = cpu.get("startup");
    if (startup) {
      const base = startup.ms / startup.races;
      console.log(
        `\nTime per race less the start-up row's (${base.toFixed(0)} ms):`,
      );
      for (const [mode, { ms, races }] of cpu) {
        if (mode === "startup") continue;
        console.log(
          `  ${mode.padEnd(22)} ${
            (ms / races - base).toFixed(0).padStart(6)
          } ms`,
        );
      }
    }
  }
  Deno.removeSync(dir, { recursive: true });
});
