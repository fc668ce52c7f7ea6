// FileLock on Node, against the built package: exclusion, timeout, abort,
// shared locks, holder records, and a wait handed over from another process.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { test } from "node:test";
import { lockbox } from "./workers/_lockbox.mjs";

const {
  FileLock,
  isLocked,
  lockHolder,
  LockTimeoutError,
} = lockbox;
import { Child, nodeWorker, PACKAGE, run, withTempDir } from "./_helpers.mjs";

/** The flock(1) processes (any parent) waiting on or holding `lockFile`. */
function flocksOn(lockFile) {
  const found = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (
        readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("flock\0") &&
        readlinkSync(`/proc/${pid}/fd/3`) === lockFile
      ) found.push(pid);
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

test("withLock() from 6 Node processes x 50 keeps every increment", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}/counter`;
    const children = Array.from(
      { length: 6 },
      () => nodeWorker("increment.mjs", [counter, "50"]),
    );
    for (const child of children) {
      const { code } = await child.finish();
      assert.equal(code, 0, child.stderr);
    }
    assert.equal(readFileSync(counter, "utf8"), "300");
  });
});

test("FileLock.acquire() times out on a lock another process holds, naming it", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
    try {
      await holder.waitFor("locked");
      const started = Date.now();
      await assert.rejects(
        FileLock.acquire(`${dir}/a`, { timeout: 200 }),
        (error) =>
          error instanceof LockTimeoutError && error.holder?.pid === holder.pid,
      );
      assert.ok(Date.now() - started >= 190);
      assert.equal(await FileLock.tryAcquire(`${dir}/a`), null);
    } finally {
      await holder.finish();
    }
  });
});

test("FileLock.acquire() rejects with signal.reason when aborted", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
    try {
      await holder.waitFor("locked");
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error("gave up")), 100);
      await assert.rejects(
        FileLock.acquire(`${dir}/a`, { signal: controller.signal }),
        /gave up/,
      );
    } finally {
      await holder.finish();
    }
  });
});

test("FileLock waits in a helper process and gets the lock, in its own name, when the holder lets go", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
    await holder.waitFor("locked");
    // Many waits at once on different paths must not starve Node's fs pool.
    const others = [];
    for (let i = 0; i < 6; i++) {
      others.push(nodeWorker("hold.mjs", [`${dir}/b${i}`]));
    }
    for (const other of others) await other.waitFor("locked");
    const waits = [
      FileLock.acquire(`${dir}/a`),
      ...others.map((_, i) => FileLock.acquire(`${dir}/b${i}`)),
    ];
    // Meanwhile, file system calls still run.
    const { readFile } = await import("node:fs/promises");
    for (let i = 0; i < 5; i++) await readFile(`${dir}/a.lock`);
    setTimeout(() => holder.finish(), 100);
    for (const other of others) setTimeout(() => other.finish(), 150);
    const locks = await Promise.all(waits);
    assert.ok(locks[0].token > 1);
    // The kernel lists this process as the holder, not the helper.
    assert.equal((await lockHolder(`${dir}/a`))?.pid, process.pid);
    for (const lock of locks) await lock.release();
  });
});

/**
 * While flock(1) holds `<dir>/a.lock`, `start(path)` begins a wait on it
 * (which starts a helper: a second flock(1) on the file) and `end(waiter)`
 * ends the waiter; then the helper must be gone, well before the lock comes
 * free, leaving only the holder's flock(1).
 */
async function assertHelperDiesWith(start, end, what) {
  await withTempDir(async (dir) => {
    const path = `${dir}/a`;
    const flock = new Child("flock", [
      `${path}.lock`,
      "sh",
      "-c",
      "echo locked; read line",
    ]);
    await flock.waitFor("locked");
    const waiter = await start(path);
    for (let i = 0; i < 500 && flocksOn(`${path}.lock`).length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(flocksOn(`${path}.lock`).length, 2, "no helper started");
    await end(waiter);
    for (let i = 0; i < 200 && flocksOn(`${path}.lock`).length > 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(
      flocksOn(`${path}.lock`).length,
      1,
      `a helper outlived its ${what}`,
    );
    flock.process.stdin.end("done\n");
    assert.equal((await flock.finish()).code, 0);
  });
}

test("a Node process SIGKILLed while it waits leaves no flock(1) helper behind to take the lock", async () => {
  await assertHelperDiesWith(
    (path) => nodeWorker("hold.mjs", [path]),
    async (waiter) => {
      waiter.process.kill("SIGKILL");
      await waiter.finish();
    },
    "process",
  );
});

test("a worker thread terminated while it waits leaves no flock(1) helper behind", async () => {
  // The thread lives in a process of its own (see the worker's comment),
  // which stays alive until the helper count has been checked.
  let child;
  await assertHelperDiesWith(
    async (path) => {
      child = nodeWorker("thread_waits.mjs", [path]);
      await child.waitFor("started");
      return child;
    },
    async () => {
      child.process.stdin.write("terminate\n");
      await child.waitFor("terminated");
    },
    "worker",
  );
  assert.deepEqual(await child.finish(), { code: 0, signal: null });
});

test("FileLock blocking: true waits in this thread until flock(1) lets go", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a`;
    const flock = new Child("flock", [
      `${path}.lock`,
      "sh",
      "-c",
      "echo locked; sleep 0.5",
    ]);
    await flock.waitFor("locked");
    let timerRan = false;
    const timer = setTimeout(() => timerRan = true, 0);
    const lock = await FileLock.acquire(path, { blocking: true });
    // Waiting in a helper would have let the 0 ms timer run meanwhile.
    assert.equal(timerRan, false);
    clearTimeout(timer);
    assert.equal((await lockHolder(path))?.pid, process.pid);
    await lock.release();
    assert.equal((await flock.finish()).code, 0);
  });
});

test("shared locks coexist across processes and exclude an exclusive one", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`, "--shared"]);
    try {
      await holder.waitFor("locked");
      const shared = await FileLock.tryAcquire(`${dir}/a`, { shared: true });
      assert.ok(shared);
      assert.equal(await FileLock.tryAcquire(`${dir}/a`), null);
      await shared.release();
      assert.equal(await isLocked(`${dir}/a`), true);
    } finally {
      await holder.finish();
    }
    assert.equal(await isLocked(`${dir}/a`), false);
  });
});

test("lockHolder() reads the holding process's record", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [
      `${dir}/a`,
      "--metadata",
      '{"user":"ann"}',
    ]);
    try {
      await holder.waitFor("locked");
      const record = await lockHolder(`${dir}/a`);
      assert.equal(record?.pid, holder.pid);
      assert.deepEqual(record?.metadata, { user: "ann" });
      assert.equal(record?.shared, false);
    } finally {
      await holder.finish();
    }
    assert.equal(await lockHolder(`${dir}/a`), null);
  });
});

test("process.exit() does not wait for a lock wait that timed out", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
    try {
      await holder.waitFor("locked");
      const waiter = nodeWorker("give_up.mjs", [`${dir}/a`]);
      const { code } = await waiter.finish(30_000);
      assert.equal(code, 5, waiter.stderr);
      assert.deepEqual(waiter.lines, ["timed out"]);
    } finally {
      await holder.finish();
    }
  });
});

test("FileLock.signal on Node aborts on release and when the lock file is removed, and its check never keeps the process alive", async () => {
  await withTempDir(async (dir) => {
    const first = await FileLock.acquire(`${dir}/a`);
    const signal = first.signal;
    assert.equal(signal.aborted, false);
    await first.release();
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason.name, "LockLostError");
    const second = await FileLock.acquire(`${dir}/a`);
    const lost = new Promise((resolve) =>
      second.signal.addEventListener(
        "abort",
        () => resolve(second.signal.reason),
      )
    );
    const { rmSync } = await import("node:fs");
    rmSync(second.lockPath);
    // The check's timer keeps nothing alive; this guard keeps the test's.
    let guard;
    const reason = await Promise.race([
      lost,
      new Promise((resolve) => guard = setTimeout(resolve, 10_000, "guard")),
    ]);
    clearTimeout(guard);
    assert.match(reason.message, /removed or replaced/);
    await second.release();
  });
  // A process that only holds a lock and reads its signal still ends.
  const ended = run(process.execPath, [
    "--input-type=module",
    "-e",
    `import { FileLock } from ${
      JSON.stringify(new URL(`file://${PACKAGE}mod.js`).href)
    };
     const lock = await FileLock.acquire(process.argv[1]);
     lock.signal;
     console.log("held");`,
    `${tmpdir()}/lockbox_node_signal_${process.pid}`,
  ]);
  assert.equal(ended.code, 0, ended.stderr);
  assert.equal(ended.stdout.trim(), "held");
});

test("FileLock pidFile writes the pid alone over a longer record and keeps the token in <lockPath>.lockbox", async () => {
  await withTempDir(async (dir) => {
    const before = await FileLock.acquire(`${dir}/a.json`);
    await before.release();
    const lock = await FileLock.acquire(`${dir}/a.json`, { pidFile: true });
    try {
      assert.equal(
        readFileSync(`${dir}/a.json.lock`, "utf8"),
        String(process.pid),
      );
      assert.equal(lock.token, before.token + 1);
      const holder = await lockHolder(`${dir}/a.json`);
      assert.equal(holder?.pid, process.pid);
      assert.equal(holder?.token, lock.token);
    } finally {
      await lock.release();
    }
  });
});

test("lockInfo() in another PID namespace reports held a lock this process holds outside it", async () => {
  await withTempDir(async (dir) => {
    const lock = await FileLock.acquire(`${dir}/a.json`);
    try {
      const out = run("unshare", [
        "--pid",
        "--fork",
        "--mount-proc",
        process.execPath,
        "--input-type=module",
        "-e",
        `const { lockInfo } = await import(${
          JSON.stringify(`${PACKAGE}mod.js`)
        });
console.log(JSON.stringify(await lockInfo(process.argv[1])));`,
        `${dir}/a.json.lock`,
      ]);
      assert.equal(out.code, 0, out.stderr);
      const info = JSON.parse(out.stdout);
      assert.equal(info.held, true);
      assert.equal(info.mode, "exclusive");
      assert.equal(info.record?.pid, process.pid);
    } finally {
      await lock.release();
    }
  });
});

test("FileLock.acquire() flocks { lockFile } itself and the sidecar of { guards }, as flock(1) -n sees from another process", async () => {
  await withTempDir(async (dir) => {
    const busy = (file) =>
      run("flock", ["-n", "-E", "7", file, "true"]).code === 7;
    const mutex = await FileLock.acquire({ lockFile: `${dir}/nightly.lock` });
    const data = await FileLock.acquire({ guards: `${dir}/state.json` });
    try {
      assert.equal(mutex.lockPath, `${dir}/nightly.lock`);
      assert.ok(busy(`${dir}/nightly.lock`));
      assert.equal(data.lockPath, `${dir}/state.json.lock`);
      assert.ok(busy(`${dir}/state.json.lock`));
      assert.deepEqual(readdirSync(dir).sort(), [
        "nightly.lock",
        "state.json.lock",
      ]);
      assert.ok(await isLocked({ lockFile: `${dir}/nightly.lock` }));
    } finally {
      await mutex.release();
      await data.release();
    }
  });
});
