// Which file each lock entry point flocks: `{ lockFile }` that file,
// `{ guards }` its sidecar `<file>.lock`, a bare path what the parameter
// says. Checked from another process with flock(1) -n, which exits 7 (-E 7)
// when the file is held.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  acquireInstanceLock,
  FileLock,
  isLocked,
  LockBusyError,
  lockHolder,
  lockInfo,
  runWithLock,
  waitForRelease,
  withLock,
} from "../mod.ts";
import { output, withTempDir } from "./_helpers.ts";

/** Whether another process holds a flock on `file` (which must exist). */
async function heldElsewhere(file: string): Promise<boolean> {
  assert.ok(existsSync(file), `${file} should exist`);
  const out = await output("flock", { args: ["-n", "-E", "7", file, "true"] });
  assert.ok(out.code === 0 || out.code === 7, `flock(1) exited ${out.code}`);
  return out.code === 7;
}

Deno.test("FileLock.acquire() flocks the lock file itself when given { lockFile }", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/nightly.lock`;
    const lock = await FileLock.acquire({ lockFile: file });
    try {
      assert.equal(lock.lockPath, file);
      assert.equal(lock.path, file);
      assert.ok(await heldElsewhere(file));
      assert.ok(!existsSync(`${file}.lock`));
    } finally {
      await lock.release();
    }
    assert.ok(!await heldElsewhere(file));
  });
});

Deno.test("FileLock.tryAcquire() flocks the sidecar when given { guards }, and never creates the guarded file", async () => {
  await withTempDir(async (dir) => {
    const data = `${dir}/state.json`;
    const lock = await FileLock.tryAcquire({ guards: data });
    assert.ok(lock !== null);
    try {
      assert.equal(lock.lockPath, `${data}.lock`);
      assert.equal(lock.path, data);
      assert.ok(await heldElsewhere(`${data}.lock`));
      assert.ok(!existsSync(data));
    } finally {
      await lock.release();
    }
  });
});

Deno.test("FileLock.tryAcquire() on a URL { lockFile } flocks that file", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/job.lock`;
    const lock = await FileLock.tryAcquire({
      lockFile: new URL(`file://${file}`),
    });
    assert.ok(lock !== null);
    try {
      assert.ok(await heldElsewhere(file));
      assert.equal(await FileLock.tryAcquire({ lockFile: file }), null);
    } finally {
      await lock.release();
    }
  });
});

Deno.test("withLock() still flocks the sidecar of a bare path, as before", async () => {
  await withTempDir(async (dir) => {
    const data = `${dir}/count.txt`;
    await withLock(data, async (lock) => {
      assert.equal(lock.lockPath, `${data}.lock`);
      assert.ok(await heldElsewhere(`${data}.lock`));
    });
    await withLock({ lockFile: `${dir}/m.lock` }, async () => {
      assert.ok(await heldElsewhere(`${dir}/m.lock`));
    });
  });
});

Deno.test("FileLock.tryAcquire() warns once per process when a bare path ending in .lock locks a sidecar", async () => {
  await withTempDir(async (dir) => {
    const mod = new URL("../mod.ts", import.meta.url).href;
    const script = `
      import { FileLock, withLock } from ${JSON.stringify(mod)};
      const dir = ${JSON.stringify(dir)};
      await (await FileLock.tryAcquire({ guards: dir + "/quiet.lock" })).release();
      await (await FileLock.tryAcquire(dir + "/data.json")).release();
      await (await FileLock.tryAcquire({ lockFile: dir + "/own.lock" })).release();
      const lock = await FileLock.tryAcquire(dir + "/nightly.lock");
      console.log(lock.lockPath);
      await lock.release();
      await withLock(dir + "/other.lock", () => {});
    `;
    const out = await output(Deno.execPath(), {
      args: ["eval", "--no-check", script],
    });
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      `${dir}/nightly.lock.lock`,
    );
    const warnings = stderr.split("\n").filter((l) => l.startsWith("lockbox:"));
    assert.deepEqual(warnings, [
      `lockbox: FileLock.tryAcquire('${dir}/nightly.lock') locks '${dir}/nightly.lock.lock', the sidecar of the file it guards; ` +
      `pass { lockFile: '${dir}/nightly.lock' } to lock that file itself, or { guards: '${dir}/nightly.lock' } to keep the sidecar without this warning`,
    ]);
  });
});

Deno.test("runWithLock() flocks a bare path and { lockFile } itself, and the sidecar for { guards }", async () => {
  await withTempDir(async (dir) => {
    const probe = (file: string) => ["flock", "-n", "-E", "7", file, "true"];
    const file = `${dir}/job.lock`;
    assert.equal((await runWithLock(file, probe(file))).code, 7);
    assert.equal((await runWithLock({ lockFile: file }, probe(file))).code, 7);
    const data = `${dir}/state.json`;
    assert.equal(
      (await runWithLock({ guards: data }, probe(`${data}.lock`))).code,
      7,
    );
    assert.ok(!existsSync(data));
    assert.ok(!existsSync(`${file}.lock`));
  });
});

Deno.test("lockInfo() reads a bare path and { lockFile } as the lock file, { guards } as its sidecar", async () => {
  await withTempDir(async (dir) => {
    const data = `${dir}/state.json`;
    const lock = await FileLock.acquire({ guards: data });
    try {
      const viaGuards = await lockInfo({ guards: data });
      assert.equal(viaGuards.lockPath, `${data}.lock`);
      assert.ok(viaGuards.held);
      assert.ok((await lockInfo(`${data}.lock`)).held);
      assert.ok((await lockInfo({ lockFile: `${data}.lock` })).held);
    } finally {
      await lock.release();
    }
    assert.ok(!(await lockInfo({ guards: data })).held);
  });
});

Deno.test("acquireInstanceLock() flocks a bare path and { lockFile } itself, and the sidecar for { guards }", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/archiver.lock`;
    for (const target of [file, { lockFile: file }]) {
      const instance = await acquireInstanceLock(target);
      try {
        assert.equal(instance.lockPath, file);
        assert.ok(await heldElsewhere(file));
        await assert.rejects(acquireInstanceLock(file), LockBusyError);
      } finally {
        await instance.release();
      }
    }
    assert.ok(!existsSync(`${file}.lock`));
    const data = `${dir}/state.json`;
    const instance = await acquireInstanceLock({ guards: data });
    try {
      assert.equal(instance.lockPath, `${data}.lock`);
      assert.ok(await heldElsewhere(`${data}.lock`));
      assert.ok(!existsSync(data));
    } finally {
      await instance.release();
    }
  });
});

Deno.test("isLocked(), lockHolder() and waitForRelease() look at { lockFile } itself and at the sidecar of { guards } or a bare path", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/nightly.lock`;
    const lock = await FileLock.acquire({ lockFile: file });
    try {
      assert.ok(await isLocked({ lockFile: file }));
      assert.ok(!await isLocked({ guards: file }));
      // A bare path is the file guarded: the sidecar of `nightly` is `file`.
      assert.ok(await isLocked(`${dir}/nightly`));
      assert.ok(await isLocked(`${dir}/data`, { lockPath: file }));
      assert.equal((await lockHolder({ lockFile: file }))?.pid, Deno.pid);
      assert.equal(await lockHolder({ guards: file }), null);
      assert.equal(
        await waitForRelease({ lockFile: file }, { timeout: 0 }),
        false,
      );
      assert.ok(await waitForRelease({ guards: file }, { timeout: 0 }));
    } finally {
      await lock.release();
    }
  });
});

Deno.test("FileLock.acquire() throws a TypeError for a target with both or neither of lockFile and guards, or { lockFile } with lockPath", async () => {
  await withTempDir(async (dir) => {
    const bad = [
      {},
      { lockFile: `${dir}/a`, guards: `${dir}/b` },
    ] as unknown as { lockFile: string }[];
    for (const target of bad) {
      await assert.rejects(FileLock.acquire(target), TypeError);
    }
    await assert.rejects(
      FileLock.acquire({ lockFile: `${dir}/a` }, { lockPath: `${dir}/b` }),
      (error: Error) =>
        error instanceof TypeError &&
        error.message.includes("the lockPath option cannot name another"),
    );
    assert.ok(!existsSync(`${dir}/a`) && !existsSync(`${dir}/b`));
  });
});
