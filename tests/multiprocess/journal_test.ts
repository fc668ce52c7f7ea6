// JsonStore journal mode across real processes: exact counts with
// compactions, SIGKILLs during appends and compactions, and readers that
// never see a mix of generations.

import assert from "node:assert/strict";
import { JsonStore } from "../../mod.ts";
import {
  countFlockSleeps,
  delay,
  finishAll,
  killWriters,
  spawnWorker,
  withTempDir,
} from "../_helpers.ts";

type Doc = { count: number; items: string[] };

function journalStore(path: string, warnings: string[] = []) {
  return new JsonStore<Doc>(path, {
    initial: { count: 0, items: [] },
    journal: true,
    onWarning: (message) => warnings.push(message),
  });
}

/** Each writer's items are an in-order prefix of what it added. */
function assertPrefixes(doc: Doc): void {
  assert.equal(doc.count, doc.items.length);
  const next = new Map<string, number>();
  for (const item of doc.items) {
    const [writer, n] = item.split("-");
    assert.equal(Number(n), next.get(writer) ?? 0, `out of order: ${item}`);
    next.set(writer, Number(n) + 1);
  }
}

/** `count` journal-mode store_update.ts writers of `updates` each, with `flags`. */
function writers(
  path: string,
  count: number,
  updates: number,
  flags: string[],
) {
  return Array.from(
    { length: count },
    (_, i) =>
      spawnWorker("store_update.ts", [
        path,
        String(updates),
        `w${i}`,
        "--journal",
        ...flags,
      ]),
  );
}

/** The document holds `total` distinct items, each writer's in order. */
function assertExact(doc: Doc, total: number): void {
  assert.equal(doc.count, total);
  assert.equal(new Set(doc.items).size, total);
  assertPrefixes(doc);
}

Deno.test("JsonStore journal mode keeps 8 processes x 250 updates exact, with compactions during the run", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = writers(path, 8, 250, ["--compact-at", "4096"]);
    // Compactions replace the journal file: count how often it changes.
    const generations = new Set<string>();
    let running = true;
    const watch = (async () => {
      while (running) {
        const head = await Deno.readTextFile(`${path}.journal`).catch(() => "");
        const id = /"id":"([^"]+)"/.exec(head)?.[1];
        if (id) generations.add(id);
        await delay(5);
      }
    })();
    await finishAll(children);
    running = false;
    await watch;
    assertExact(await journalStore(path).read(), 2000);
    assert.ok(generations.size >= 5, `only ${generations.size} generations`);
    // The snapshot alone is a valid, older document.
    const snapshot: Doc = JSON.parse(await Deno.readTextFile(path));
    assert.ok(snapshot.count <= 2000);
    assertPrefixes(snapshot);
  });
});

Deno.test("JsonStore journal mode with blockingLock keeps 4 processes x 100 updates exact", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = writers(path, 4, 100, [
      "--blocking",
      "--compact-at",
      "4096",
    ]);
    const sleeps = await countFlockSleeps(children, finishAll(children));
    assert.ok(sleeps > 0, "main threads were seen asleep in flock(2)");
    assertExact(await journalStore(path).read(), 400);
  });
});

Deno.test("JsonStore journal mode keeps 4 processes x 5 bursts of 40 updates started together exact, with compactions during the run", async () => {
  // Each process's bursts share fdatasyncs while the others' interleave.
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = writers(path, 4, 200, [
      "--compact-at",
      "4096",
      "--burst",
      "40",
    ]);
    const outputs = await finishAll(children);
    assertExact(await journalStore(path).read(), 800);
    const acked = outputs.flat().filter((line) => line.startsWith("ack "));
    assert.equal(acked.length, 800);
  });
});

Deno.test("JsonStore journal mode survives 200 SIGKILLs during appends and compactions", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const warnings: string[] = [];
    await killWriters(200, (prefix) =>
      spawnWorker("store_update.ts", [
        path,
        "100000",
        prefix,
        "--journal",
        "--compact-at",
        "2048",
      ]), async (acked) => {
      const doc = await journalStore(path, warnings).read();
      const items = new Set(doc.items);
      for (const id of acked) assert.ok(items.has(id), `lost ${id}`);
      assert.equal(doc.count, doc.items.length);
    });
    const store = journalStore(path, warnings);
    await store.update((d) => void d.count++);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "state.json",
      "state.json.journal",
      "state.json.lock",
    ]);
    for (const w of warnings) assert.match(w, /torn last line/);
  });
});

Deno.test("JsonStore journal mode: a reader in a tight loop during compactions sees only prefixes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = Array.from(
      { length: 3 },
      (_, i) =>
        spawnWorker("store_update.ts", [
          path,
          "300",
          `w${i}`,
          "--journal",
          "--no-durable",
          "--compact-at",
          "1024",
        ]),
    );
    const reader = journalStore(path);
    let reads = 0;
    let seen = 0;
    const done = finishAll(children).then(() => (finished = true));
    let finished = false;
    while (!finished) {
      const doc = await reader.read().catch((error) => {
        // Before the first update there may be no store yet.
        if (reads === 0) return { count: 0, items: [] };
        throw error;
      });
      assertPrefixes(doc);
      assert.ok(doc.count >= seen, "went back in time");
      seen = doc.count;
      reads++;
    }
    await done;
    assert.equal((await reader.read()).count, 900);
    assert.ok(reads > 50, `only ${reads} reads`);
  });
});
