// JsonStore across real processes: no lost updates, crash safety under
// SIGKILL, and whole JSONL lines from concurrent appenders.

import assert from "node:assert/strict";
import { basename } from "node:path";
import {
  cleanupStaleLocks,
  FileLock,
  JsonStore,
  readJsonl,
} from "../../mod.ts";
import {
  finishAll,
  killWriters,
  names,
  spawnWorker,
  withTempDir,
} from "../_helpers.ts";

type Doc = { count: number; items: string[] };

Deno.test("JsonStore keeps 8 processes x 250 updates exact", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = Array.from(
      { length: 8 },
      (_, i) => spawnWorker("store_update.ts", [path, "250", `w${i}`]),
    );
    await finishAll(children);
    const doc: Doc = JSON.parse(await Deno.readTextFile(path));
    assert.equal(doc.count, 2000);
    assert.equal(doc.items.length, 2000);
    assert.equal(new Set(doc.items).size, 2000);
  });
});

Deno.test("JsonStore survives 200 SIGKILLs: the file parses and every acknowledged update is there", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    await killWriters(
      200,
      (prefix) => spawnWorker("store_update.ts", [path, "100000", prefix]),
      async (acked) => {
        const doc: Doc = JSON.parse(await Deno.readTextFile(path));
        const items = new Set(doc.items);
        for (const id of acked) assert.ok(items.has(id), `lost ${id}`);
        assert.equal(doc.count, doc.items.length);
      },
    );
    // The next update removes any temp file a killed writer left.
    const store = new JsonStore<Doc>(path, {
      initial: { count: 0, items: [] },
    });
    await store.update((d) => void d.count++);
    assert.deepEqual(names(dir), ["state.json", "state.json.lock"]);
  });
});

Deno.test("appendJsonl() from 8 processes x 500 calls gives 4000 whole lines", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    const children = Array.from(
      { length: 8 },
      (_, i) => spawnWorker("jsonl_append.ts", [path, "500", `w${i}`]),
    );
    await finishAll(children);
    const log = await readJsonl<{ writer: string; i: number; pad: string }>(
      path,
    );
    assert.equal(log.torn, 0);
    assert.deepEqual(log.invalid, []);
    assert.equal(log.records.length, 4000);
    for (let w = 0; w < 8; w++) {
      const mine = log.records.filter((r) => r.writer === `w${w}`);
      assert.deepEqual(mine.map((r) => r.i), [...Array(500).keys()]);
      assert.ok(mine.every((r) => r.pad === "x".repeat(r.i % 300)));
    }
  });
});

for (const pidFile of [false, true]) {
  Deno.test(`FileLock tokens: after a holder whose clock is 5 hours behind is refused and exits, the next holder of any process is above the fence, its clock behind or not${pidFile ? " (pidFile)" : ""}`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/s.json`;
      const leader = `${dir}/leader`;
      const store = new JsonStore<{ by: string }>(path, {
        initial: { by: "" },
      });
      for (let i = 0; i < 3; i++) {
        await using lock = await FileLock.acquire(leader, { pidFile });
        await store.write({ by: "on time" }, { fence: lock.token });
      }
      await cleanupStaleLocks(dir, { staleAfter: 0 });
      // A pid file's record lives beside it: gone too, as after a new disk.
      if (pidFile) await Deno.remove(`${leader}.lock.lockbox`);
      // One try each, in a process of its own: a cron job's, or a CLI's.
      const once = async (hours: string) => {
        const child = spawnWorker("behind_clock_fenced_write.ts", [
          hours,
          leader,
          path,
          "1",
          ...(pidFile ? ["pid-file"] : []),
        ]);
        const { code, lines, stderr } = await child.finish();
        assert.equal(code, 0, stderr);
        assert.equal(lines.length, 1, lines.join("\n"));
        return lines[0];
      };
      // The first, from a lock file it made with its clock: refused.
      assert.match(await once("5"), /^stale \d+ \d+$/);
      assert.equal((await store.read()).by, "on time");
      // The next holders are not (a clock behind too, then one on time).
      assert.match(await once("5"), /^wrote \d+$/);
      assert.match(await once("0"), /^wrote \d+$/);
      assert.equal((await store.read()).by, "behind");
    });
  });
}

Deno.test("FileLock tokens: a holder whose clock is 5 hours behind, on a lock file made again after lockbox clean, is refused once and gets a token above the fence when it takes the lock again", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const leader = `${dir}/leader`;
    const store = new JsonStore<{ by: string }>(path, { initial: { by: "" } });
    for (let i = 0; i < 3; i++) {
      await using lock = await FileLock.acquire(leader);
      await store.write({ by: "on time" }, { fence: lock.token });
    }
    // lockbox clean removes the free lock files.
    const cleaned = await cleanupStaleLocks(dir, { staleAfter: 0 });
    assert.deepEqual(
      cleaned.removed.map((p) => basename(p)).sort(),
      ["leader.lock", "s.json.lock"],
    );
    const child = spawnWorker("behind_clock_fenced_write.ts", [
      "5",
      leader,
      path,
    ]);
    const { code, lines, stderr } = await child.finish();
    assert.equal(code, 0, stderr);
    assert.equal(lines.length, 2, lines.join("\n"));
    const stale = lines[0].match(/^stale (\d+) (\d+)$/);
    assert.ok(stale, lines.join("\n"));
    const written = Number(lines[1].match(/^wrote (\d+)$/)?.[1]);
    assert.ok(written > Number(stale[2]), lines.join("\n"));
    assert.equal((await store.read()).by, "behind");
  });
});
