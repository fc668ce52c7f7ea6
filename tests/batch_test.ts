import assert from "node:assert/strict";
import { FileLock, processFiles, withLock } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("processFiles() turns an error thrown by fn into a failed result and goes on", async () => {
  await withTempDir(async (dir) => {
    const files = ["a", "b", "c"].map((n) => `${dir}/${n}`);
    const results = await processFiles(files, (file) => {
      if (file.endsWith("b")) return Promise.reject(new Error("bad input"));
      return Promise.resolve(file.at(-1));
    }, { concurrency: 1 });
    assert.deepEqual(results, [
      { file: files[0], ok: true, value: "a" },
      { file: files[1], ok: false, locked: false, error: "bad input" },
      { file: files[2], ok: true, value: "c" },
    ]);
  });
});

Deno.test("processFiles() holds each file's lock while fn runs", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/a`;
    const results = await processFiles(
      [file],
      async () => await FileLock.tryAcquire(file) === null,
    );
    assert.deepEqual(results[0], { file, ok: true, value: true });
    // Waiting for it from inside fn would wait for itself: refused at once.
    const nested = await processFiles([file], () => withLock(file, () => 1));
    assert.equal(nested[0].ok, false);
    assert.match(nested[0].error ?? "", /already holds it/);
    const unlocked = await processFiles(
      [file],
      async () =>
        await FileLock.tryAcquire(file).then(async (l) => {
          await l?.release();
          return l === null;
        }),
      { lock: false },
    );
    assert.deepEqual(unlocked[0], { file, ok: true, value: false });
  });
});

Deno.test("processFiles() retries a held lock after retryDelay", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/a`;
    const held = await FileLock.acquire(file);
    setTimeout(() => held.release(), 150);
    const results = await processFiles([file], () => Promise.resolve(1), {
      lockTimeout: 0,
      retries: 20,
      retryDelay: 25,
    });
    assert.deepEqual(results[0], { file, ok: true, value: 1 });
    const again = await FileLock.acquire(file);
    const none = await processFiles([file], () => Promise.resolve(1), {
      lockTimeout: 0,
      retries: 1,
      retryDelay: 10,
    });
    await again.release();
    assert.equal(none[0].ok, false);
  });
});

Deno.test("processFiles() rejects with the reason when the signal aborts", async () => {
  await withTempDir(async (dir) => {
    const files = Array.from({ length: 5 }, (_, i) => `${dir}/${i}`);
    const controller = new AbortController();
    const seen: string[] = [];
    await assert.rejects(
      processFiles(files, (file) => {
        seen.push(file);
        controller.abort(new Error("stop"));
        return Promise.resolve();
      }, { concurrency: 1, signal: controller.signal }),
      /stop/,
    );
    assert.deepEqual(seen, [files[0]]);
  });
});

Deno.test("processFiles() checks its options", async () => {
  await assert.rejects(
    processFiles([], () => Promise.resolve(), { concurrency: 0 }),
    RangeError,
  );
  await assert.rejects(
    processFiles([], () => Promise.resolve(), { lockTimeout: -1 }),
    RangeError,
  );
});

Deno.test("processFiles() reports a file whose lock cannot be made as failed and goes on with the others (seed 001: non-fatal)", async () => {
  await withTempDir(async (dir) => {
    const files = ["a", "b", "c", "d"].map((n) => `${dir}/${n}.txt`);
    // b.txt's lock file cannot be created: a directory has its name.
    await Deno.mkdir(`${dir}/b.txt.lock`);
    const ran: string[] = [];
    const results = await processFiles(files, (file) => {
      ran.push(file);
      return Promise.resolve("done");
    }, { concurrency: 1 });
    assert.deepEqual(ran, [files[0], files[2], files[3]]);
    assert.equal(results.length, 4);
    assert.deepEqual(results.map((r) => r.ok), [true, false, true, true]);
    const failed = results[1];
    assert.ok(!failed.ok && !failed.locked);
    assert.match(failed.ok ? "" : failed.error, /b\.txt\.lock/);
  });
});
