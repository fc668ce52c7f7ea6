// JsonStore.watch on files, across real processes: a Deno and a Node
// watcher beside 4 writer processes (whole-file and journal mode, journal
// compactions included), a writer SIGKILLed mid-update, and a watch that
// ends when its loop breaks or its signal aborts, leaving nothing open.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { JsonStore } from "../../mod.ts";
import {
  checkWatcher,
  Child,
  finishAll,
  guarded,
  spawnWorker,
  withTempDir,
} from "../_helpers.ts";

const NODE_PACKAGE = fileURLToPath(
  new URL("../../dist/node-src/", import.meta.url),
);

function watcher(runtime: "Deno" | "Node", args: string[]): Child {
  return runtime === "Deno" ? spawnWorker("watch_store.ts", args) : new Child(
    "node",
    [
      fileURLToPath(
        new URL("../node/workers/watch_store.mjs", import.meta.url),
      ),
      ...args,
    ],
    { env: { LOCKBOX_NODE_PACKAGE: NODE_PACKAGE } },
  );
}

for (const journal of [false, true]) {
  const mode = journal ? "journal (compacting every ~2 KiB)" : "whole-file";
  Deno.test(`JsonStore.watch, ${mode}: Deno and Node watchers see 4 processes x 100 updates grow, never half of one, and end on the final document`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.json`;
      const flags = journal ? ["--journal"] : [];
      const watchers = [
        watcher("Deno", [path, "400", ...flags]),
        watcher("Node", [path, "400", ...flags]),
      ];
      for (const w of watchers) await w.waitFor("ready");
      const writers = [0, 1, 2, 3].map((i) =>
        spawnWorker("store_update.ts", [
          path,
          "100",
          `w${i}`,
          "--no-durable",
          ...(journal ? ["--journal", "--compact-at", "2048"] : []),
        ])
      );
      await finishAll(writers);
      for (const lines of await finishAll(watchers)) checkWatcher(lines, 400);
      if (journal) {
        // Compactions happened while they watched.
        const snapshot = JSON.parse(await Deno.readTextFile(path));
        assert.ok(snapshot.count > 0, "no compaction ran");
      }
    });
  });
}

for (const runtime of ["Deno", "Node"] as const) {
  Deno.test(`JsonStore.watch: a writer SIGKILLed mid-update shows a ${runtime} watcher no half-written state, and the watch goes on`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.json`;
      const watching = watcher(runtime, [path, "1050"]);
      await watching.waitFor("ready");
      const doomed = spawnWorker("store_update.ts", [
        path,
        "100000",
        "doomed",
        "--no-durable",
      ]);
      await doomed.waitFor("ack doomed-20");
      await doomed.kill();
      await doomed.finish();
      const store = new JsonStore<{ count: number; items: string[] }>(path, {
        initial: { count: 0, items: [] },
      });
      const left = (await store.read()).count;
      assert.equal((await store.read()).items.length, left);
      const writer = spawnWorker("store_update.ts", [
        path,
        String(1050 - left),
        "after",
        "--no-durable",
      ]);
      assert.equal((await writer.finish()).code, 0);
      const result = await watching.finish();
      assert.equal(result.code, 0, result.stderr);
      checkWatcher(result.lines, 1050);
    });
  });
}

Deno.test("JsonStore.watch ends when the loop breaks or the signal aborts, with nothing left open", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const store = new JsonStore<{ n: number }>(`${dir}/s${journal}.json`, {
        initial: { n: 0 },
        journal,
      });
      // break after the first version
      for await (const { value, version } of store.watch()) {
        assert.deepEqual([value, version], [{ n: 0 }, 1]);
        break;
      }
      // abort while it waits for a change: the loop ends, nothing thrown
      const controller = new AbortController();
      const versions: number[] = [];
      const watching = (async () => {
        for await (
          const { value } of store.watch({ signal: controller.signal })
        ) {
          versions.push(value.n);
          if (value.n === 1) setTimeout(() => controller.abort(), 20);
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await store.update((d) => void d.n++);
      await watching;
      assert.deepEqual(versions, [0, 1]);
      // an aborted signal ends it at once
      const aborted = AbortSignal.abort();
      for await (const _ of store.watch({ signal: aborted })) {
        assert.fail("an aborted watch yields nothing");
      }
    }
    // Deno's sanitizers check that no watcher or timer outlives the test.
    // A bad interval is refused when watch() is called, before any loop.
    const store = new JsonStore(`${dir}/never.json`, { initial: {} });
    assert.throws(() => store.watch({ recheckInterval: 1 }), RangeError);
  });
});

Deno.test("JsonStore.watch() watches the store's directory again when it is deleted and made again, with no re-check to fall back on", async () => {
  await withTempDir(async (dir) => {
    const sub = `${dir}/sub`;
    for (const journal of [false, true]) {
      await Deno.mkdir(sub);
      const store = new JsonStore<{ n: number }>(`${sub}/s.json`, {
        initial: { n: 0 },
        journal,
      });
      await store.write({ n: 1 });
      const controller = new AbortController();
      // Past any test's length: only the kernel's events can wake the watch.
      const versions = store.watch({
        signal: controller.signal,
        recheckInterval: 2 ** 31 - 1,
      })[Symbol.asyncIterator]();
      try {
        const next = async (what: string) =>
          (await guarded(versions.next(), 30_000, what)).value?.value;
        assert.deepEqual(await next("the first version"), { n: 1 });
        await Deno.remove(sub, { recursive: true });
        assert.deepEqual(await next("the store gone"), { n: 0 });
        await Deno.mkdir(sub);
        await store.write({ n: 2 });
        assert.deepEqual(await next("a write in the new directory"), { n: 2 });
        // And it stays watched: a later write is seen too.
        await store.write({ n: 3 });
        assert.deepEqual(await next("a second write"), { n: 3 });
      } finally {
        controller.abort();
        await versions.return?.();
      }
      await Deno.remove(sub, { recursive: true });
    }
  });
});
