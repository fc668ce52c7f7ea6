// The Windows smoke tier: run by Deno for Windows under Wine through
// tests/windows/run.sh (not by the Linux suite: the name does not end in
// _test.ts). Real files, real processes, every one a Windows deno.exe.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  FileLock,
  isLocked,
  JsonStore,
  listLocks,
  lockHolder,
  withLock,
} from "../../mod.ts";

const WORKERS = new URL("../multiprocess/workers/", import.meta.url);
const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));
const DENO = [Deno.execPath(), "run", "--allow-all", "--quiet", "--no-check"];

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lockbox_win_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

/** A worker that holds a lock until killed; resolves once it holds it. */
async function holder(path: string, metadata: Record<string, unknown>) {
  const child = new Deno.Command(DENO[0], {
    args: [
      ...DENO.slice(1),
      new URL("hold.ts", WORKERS).href,
      path,
      "--metadata",
      JSON.stringify(metadata),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("locked")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the holder exited before locking: ${seen}`);
    seen += value;
  }
  return {
    child,
    token: Number(/locked (\d+)/.exec(seen)![1]),
    async stop(): Promise<void> {
      await child.stdin.close().catch(() => {});
      await reader.cancel();
      await child.status;
    },
  };
}

Deno.test("withLock() excludes 4 processes x 25 increments on Windows", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}\\counter.txt`;
    const results = await Promise.all(
      [0, 1, 2, 3].map(() =>
        run([...DENO, new URL("increment.ts", WORKERS).href, counter, "25"])
      ),
    );
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    assert.equal(Deno.readTextFileSync(counter), "100");
    // The record beside the lock file, in the documented format.
    const record = Deno.readTextFileSync(`${counter}.lock.lockbox`);
    assert.match(record, /^\{"token":\d+,"pid":\d+,.*\n#lockbox [0-9a-f]{8}\n/);
    assert.equal(await isLocked(counter), false);
  });
});

Deno.test("JsonStore.update() with default options counts 4 processes x 25 updates on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}\\store.json`;
    const results = await Promise.all(
      ["a", "b", "c", "d"].map((prefix) =>
        run([
          ...DENO,
          new URL("store_update.ts", WORKERS).href,
          path,
          "25",
          prefix,
        ])
      ),
    );
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const data = JSON.parse(Deno.readTextFileSync(path));
    assert.equal(data.count, 100);
    assert.equal(new Set(data.items).size, 100);
  });
});

Deno.test("lockHolder() reads another process's record while it holds the lock on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}\\job`;
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
      // A shared lock cannot be had beside it; a timeout ends the wait.
      await assert.rejects(
        FileLock.acquire(path, { shared: true, timeout: 200 }),
        { name: "LockTimeoutError" },
      );
    } finally {
      await held.stop();
    }
    // Released: the next holder's token is larger.
    await using lock = await FileLock.acquire(path, { timeout: 10_000 });
    assert.ok(lock.token > held.token);
  });
});

Deno.test("FileLock.acquire() gets a lock whose holder was killed on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}\\job`;
    const held = await holder(path, {});
    held.child.kill("SIGKILL");
    await held.stop();
    await using lock = await FileLock.acquire(path, { timeout: 10_000 });
    assert.ok(lock.token > held.token);
  });
});

Deno.test("FileLock.acquire() takes shared locks together and an exclusive one after them on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}\\shared`;
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
    assert.ok(Deno.statSync(`${path}.lock`).isFile);
  });
});

Deno.test("FileLock tokens: after a holder whose clock is 5 hours behind is refused, the next holders are above the fence on Windows", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}\\s.json`;
    const leader = `${dir}\\leader`;
    const store = new JsonStore<{ by: string }>(path, { initial: { by: "" } });
    for (let i = 0; i < 3; i++) {
      await using lock = await FileLock.acquire(leader);
      await store.write({ by: "on time" }, { fence: lock.token });
    }
    // The lock file and its record gone, as on a new disk.
    await Deno.remove(`${leader}.lock`);
    await Deno.remove(`${leader}.lock.lockbox`);
    const once = async (hours: string) => {
      const { code, stdout, stderr } = await run([
        ...DENO,
        new URL("behind_clock_fenced_write.ts", WORKERS).href,
        hours,
        leader,
        path,
        "1",
      ]);
      assert.equal(code, 0, stderr);
      return stdout.trim();
    };
    assert.match(await once("5"), /^stale \d+ \d+$/);
    assert.match(await once("5"), /^wrote \d+$/);
    assert.match(await once("0"), /^wrote \d+$/);
    assert.equal((await store.read()).by, "behind");
  });
});

Deno.test("lockbox store set, store get and run work on Windows", async () => {
  await withTempDir(async (dir) => {
    const store = `${dir}\\s.json`;
    const lockFile = `${dir}\\job.lock`;
    // Three independent checks at once: each deno.exe starts slowly under Wine.
    const [got, ran, descriptor] = await Promise.all([
      (async () => {
        const set = await run([
          ...DENO,
          CLI,
          "store",
          "set",
          store,
          "/n",
          "41",
        ]);
        assert.equal(set.code, 0, set.stderr);
        return await run([...DENO, CLI, "store", "get", store, "/n"]);
      })(),
      // The command runs while the lock is held; its exit code comes back.
      run([
        ...DENO,
        CLI,
        "run",
        lockFile,
        Deno.execPath(),
        "eval",
        `import { isLocked } from ${
          JSON.stringify(new URL("../../mod.ts", import.meta.url).href)
        }; console.log("held", await isLocked(${
          JSON.stringify(lockFile)
        }, { lockPath: ${JSON.stringify(lockFile)} })); Deno.exit(3);`,
      ]),
      run([...DENO, CLI, "run", "-n", "9"]),
    ]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout.trim(), "41");
    assert.equal(ran.code, 3, ran.stderr);
    assert.match(ran.stdout, /held true/);
    assert.notEqual(descriptor.code, 0);
    assert.match(descriptor.stderr, /not on Windows/);
  });
});
