// Checkout, the document store and batch work across real processes.

import assert from "node:assert/strict";
import { DocumentStore, processFiles } from "../../mod.ts";
import type { AuditEvent, FileResult } from "../../mod.ts";
import { finishAll, spawnWorker, withTempDir } from "../_helpers.ts";

Deno.test("FileService.checkout() from 20 processes as 20 users lets exactly one win", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/repo`);
    await Deno.writeTextFile(`${dir}/repo/part.mcam`, "G0 X0");
    const registry = `${dir}/checkouts.json`;
    const children = Array.from(
      { length: 20 },
      (_, i) =>
        spawnWorker("checkout_once.ts", [
          `${dir}/repo`,
          registry,
          "part.mcam",
          `user${i}`,
        ]),
    );
    const outputs = (await finishAll(children)).map((lines) => lines[0]);
    const winners = outputs
      .map((line, i) => line === "won" ? `user${i}` : null)
      .filter((user) => user !== null);
    assert.equal(winners.length, 1);
    const losers = outputs.filter((line) => line !== "won");
    assert.equal(losers.length, 19);
    for (const line of losers) assert.equal(line, `lost ${winners[0]}`);
    const saved = JSON.parse(await Deno.readTextFile(registry));
    assert.deepEqual(Object.keys(saved), ["part.mcam"]);
    assert.equal(saved["part.mcam"].user, winners[0]);
  });
});

Deno.test("DocumentStore.save() from 8 processes to one document loses no audit event", async () => {
  await withTempDir(async (dir) => {
    const children = Array.from(
      { length: 8 },
      (_, i) => spawnWorker("doc_save.ts", [dir, "shared", `actor${i}`, "25"]),
    );
    await finishAll(children);
    const docs = new DocumentStore(dir, { onWarning: assert.fail });
    const events: AuditEvent[] = await docs.history("shared");
    assert.equal(events.length, 200);
    assert.equal(new Set(events.map((e) => e.action_id)).size, 200);
    for (let i = 0; i < 8; i++) {
      const mine = events.filter((e) => e.actor === `actor${i}`);
      assert.equal(mine.length, 25);
    }
    // Every save but the very first backed up the version before it.
    assert.equal(events.filter((e) => e.payload.backup).length, 199);
    assert.equal((await docs.backups("shared")).length, 3);
    assert.deepEqual(await docs.list(), ["shared"]);
  });
});

Deno.test("processFiles() finishes the free files and reports the held ones as locked", async () => {
  await withTempDir(async (dir) => {
    const files = Array.from({ length: 6 }, (_, i) => `${dir}/f${i}.txt`);
    for (const file of files) await Deno.writeTextFile(file, "x");
    const holder = spawnWorker("hold.ts", [files[1], files[4]], {
      stdin: true,
    });
    try {
      await holder.waitFor("locked");
      const progress: [number, number, string][] = [];
      const results = await processFiles(
        files,
        async (file) => {
          await Deno.writeTextFile(file, "done");
          return file.length;
        },
        {
          lockTimeout: 200,
          concurrency: 3,
          onProgress: (done, total, result: FileResult<number>) =>
            progress.push([done, total, result.file]),
        },
      );
      assert.deepEqual(results.map((r) => r.file), files);
      assert.deepEqual(results.map((r) => r.ok), [
        true,
        false,
        true,
        true,
        false,
        true,
      ]);
      for (const i of [1, 4]) {
        const r = results[i];
        assert.ok(!r.ok && r.locked);
        assert.equal(r.error, `locked by another process (pid ${holder.pid})`);
        assert.equal(await Deno.readTextFile(files[i]), "x");
      }
      for (const i of [0, 2, 3, 5]) {
        assert.equal(await Deno.readTextFile(files[i]), "done");
      }
      assert.deepEqual(progress.map((p) => p[0]), [1, 2, 3, 4, 5, 6]);
      assert.ok(progress.every((p) => p[1] === 6));
      assert.deepEqual(progress.map((p) => p[2]).sort(), [...files].sort());
    } finally {
      await holder.send("release");
      await holder.finish();
    }
  });
});
