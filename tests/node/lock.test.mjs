// FileLock on Node, against the built package: exclusion, timeout, abort,
// shared locks, holder records, and a wait handed over from another process.

import assert from "node:assert/strict";
import {
  closeSync,
  constants,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { lockbox } from "./workers/_lockbox.mjs";

const {
  FileLock,
  isLocked,
  lockHolder,
  LockTimeoutError,
} = lockbox;
import { Child, nodeWorker, PACKAGE, run, withTempDir } from "./_helpers.mjs";

/**
 * The pids the kernel lists in /proc/locks as waiting for a flock on
 * `lockFile` (lines with "->").
 */
function waitersOn(lockFile) {
  const { ino } = statSync(lockFile);
  return readFileSync("/proc/locks", "utf8").split("\n")
    .map((line) => line.split(/\s+/))
    .filter((f) => f[1] === "->" && f[2] === "FLOCK")
    .filter((f) => Number(f[6].split(":")[2]) === ino)
    .map((f) => Number(f[5]));
}

/** flock(1) holding `lockFile` until a line comes on its stdin. */
async function flockHolder(lockFile) {
  const flock = new Child("flock", [
    lockFile,
    "sh",
    "-c",
    "echo locked; read line",
  ]);
  await flock.waitFor("locked");
  return flock;
}

/** Polls `fn` every 10 ms until it returns true (hang guard: 60 s). */
async function until(fn, what) {
  for (let i = 0; i < 6_000; i++) {
    if (fn()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never: ${what}`);
}

/** The pids of this process's child processes. */
function children() {
  return readdirSync("/proc").filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) ===
          process.pid;
      } catch {
        return false;
      }
    });
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

test("FileLock.acquire() waits in a thread of this process: the kernel lists this pid as waiter and holder, no process starts, and 8 waits leave fs calls running", async () => {
  await withTempDir(async (dir) => {
    const holders = [];
    for (let i = 0; i < 8; i++) {
      holders.push(
        new Child("flock", [
          `${dir}/l${i}.lock`,
          "sh",
          "-c",
          "echo locked; read line",
        ]),
      );
    }
    for (const holder of holders) await holder.waitFor("locked");
    const before = new Set(children());
    const waits = holders.map((_, i) => FileLock.acquire(`${dir}/l${i}`));
    for (let i = 0; i < 8; i++) {
      await until(
        () => waitersOn(`${dir}/l${i}.lock`).includes(process.pid),
        `this process waiting for l${i}.lock`,
      );
    }
    // Waiting started no process (flock(1) helpers did, one per wait).
    assert.deepEqual(children().filter((pid) => !before.has(pid)), []);
    // Eight waits, and libuv's four pool threads still serve fs calls.
    const { readFile } = await import("node:fs/promises");
    for (let i = 0; i < 8; i++) await readFile(`${dir}/l${i}.lock`);
    for (const holder of holders) holder.process.stdin.end("done\n");
    const locks = await Promise.all(waits);
    for (let i = 0; i < 8; i++) {
      assert.equal((await lockHolder(`${dir}/l${i}`))?.pid, process.pid);
    }
    for (const lock of locks) await lock.release();
    for (const holder of holders) assert.equal((await holder.finish()).code, 0);
  });
});

test("FileLock.acquire() gets 20 locks waited for at once, past the pool's one wait and the 16 waiting threads", async () => {
  await withTempDir(async (dir) => {
    const paths = Array.from({ length: 20 }, (_, i) => `${dir}/l${i}`);
    // One holder process for all twenty.
    const holder = new Child("python3", [
      "-c",
      `import fcntl, sys
files = [open(p + ".lock", "w") for p in sys.argv[1:]]
for f in files: fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()`,
      ...paths,
    ]);
    await holder.waitFor("locked");
    const waits = paths.map((path) => FileLock.acquire(path));
    await until(
      () =>
        paths.filter((p) => waitersOn(`${p}.lock`).includes(process.pid))
          .length === 17,
      "17 waits in the kernel: one on libuv's pool, 16 in waiting threads",
    );
    // And no more: the other three poll.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(
      paths.filter((p) => waitersOn(`${p}.lock`).includes(process.pid)).length,
      17,
    );
    holder.process.stdin.end("done\n");
    const locks = await Promise.all(waits);
    assert.equal(locks.length, 20);
    for (const lock of locks) await lock.release();
    assert.equal((await holder.finish()).code, 0);
  });
});

test("FileLock.acquire() parks a process's first wait on a thread of libuv's pool: no thread starts, and a stray SIGURG does not end it", async () => {
  await withTempDir(async (dir) => {
    const flock = await flockHolder(`${dir}/a.lock`);
    const waiter = nodeWorker("park.mjs", [`${dir}/a`]);
    await waiter.waitFor("parked");
    const [before, now, tid] = waiter.lines[0].split(" ").slice(1);
    assert.notEqual(tid, "null");
    assert.equal(now, before, "threads before the wait and while it lasts");
    assert.deepEqual(waitersOn(`${dir}/a.lock`), [waiter.pid]);
    // SIGURG interrupts that flock (its handler has no SA_RESTART): the
    // wait parks again instead of failing.
    const kill = run("python3", [
      "-c",
      `import ctypes, sys
libc = ctypes.CDLL(None)
print(sum(libc.tgkill(int(sys.argv[1]), int(sys.argv[2]), 23) for _ in range(3)))`,
      String(waiter.pid),
      tid,
    ]);
    assert.equal(kill.stdout, "0\n", kill.stderr);
    await until(
      () => waitersOn(`${dir}/a.lock`).includes(waiter.pid),
      "the wait parked again",
    );
    assert.equal(waiter.process.exitCode, null, waiter.stderr);
    assert.deepEqual(waiter.lines.slice(1), []);
    flock.process.stdin.end("done\n");
    await waiter.waitFor("locked");
    assert.deepEqual(await waiter.finish(), { code: 0, signal: null });
    assert.equal((await flock.finish()).code, 0);
  });
});

for (
  const [way, code] of [["exit-in-exit", 3], ["throw-in-exit", null], [
    "really-exit",
    4,
  ]]
) {
  test(`a wait parked on libuv's pool ends with the process when ${way} skips lockbox's exit listener, the lock never taken`, async () => {
    await assertWaitEnds(
      async (path) => {
        const waiter = nodeWorker("exit_ways.mjs", [way, path]);
        await waiter.waitFor("parked");
        return waiter;
      },
      async (waiter) => {
        waiter.process.stdin.write("exit\n");
        // The hang guard: the lock is held until after this returns.
        const ended = await waiter.finish(60_000);
        assert.deepEqual(waiter.lines, ["parked"], waiter.stderr);
        // Node keeps the code process.exit() was given when a listener throws.
        if (code !== null) assert.equal(ended.code, code, waiter.stderr);
        else assert.match(waiter.stderr, /an exit listener that throws/);
      },
    );
  });
}

test("a wait parks in a waiting thread, not on libuv's pool, when UV_THREADPOOL_SIZE was below 4 as the pool started, whatever it is set to later", async () => {
  await withTempDir(async (dir) => {
    const flock = await flockHolder(`${dir}/a.lock`);
    const waiter = nodeWorker("park.mjs", [`${dir}/a`, "--pool-size-later"], {
      env: { ...process.env, UV_THREADPOOL_SIZE: "1" },
    });
    await waiter.waitFor("parked");
    const [before, now] = waiter.lines[0].split(" ").slice(1).map(Number);
    // A waiting thread (a worker: several threads) rather than the pool's
    // one thread, which fs calls need.
    assert.ok(now > before, waiter.lines[0]);
    flock.process.stdin.end("done\n");
    await waiter.waitFor("locked");
    assert.deepEqual(await waiter.finish(), { code: 0, signal: null });
    assert.equal((await flock.finish()).code, 0);
  });
});

test("process.exit() while a wait's flock is still queued behind busy pool threads ends once they are done, the lock never taken", async () => {
  await withTempDir(async (dir) => {
    const flock = await flockHolder(`${dir}/a.lock`);
    // The pool's four threads block opening these until a writer opens them.
    const fifos = [0, 1, 2, 3].map((i) => `${dir}/fifo${i}`);
    for (const fifo of fifos) assert.equal(run("mkfifo", [fifo]).code, 0);
    const waiter = nodeWorker("exit_queued.mjs", [`${dir}/a`, ...fifos], {
      env: { ...process.env, UV_THREADPOOL_SIZE: "4" },
    });
    await waiter.waitFor("queued");
    // Exiting, libuv joins its threads, which are still in open().
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(waiter.process.exitCode, null);
    for (const fifo of fifos) {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    }
    // Then the queued flock runs: it must not park on the held lock.
    assert.deepEqual(await waiter.finish(60_000), { code: 0, signal: null });
    assert.deepEqual(waiter.lines, ["queued"]);
    flock.process.stdin.end("done\n");
    assert.equal((await flock.finish()).code, 0);
    assert.equal(await isLocked(`${dir}/a`), false);
  });
});

/**
 * While flock(1) holds `<dir>/a.lock`, `start(path)` begins waits in
 * another Node process (or thread) and `end(waiter)` ends them; it must end
 * at once, long before the lock comes free, without the lock ever taken.
 */
async function assertWaitEnds(start, end) {
  await withTempDir(async (dir) => {
    const path = `${dir}/a`;
    const flock = await flockHolder(`${path}.lock`);
    const waiter = await start(path);
    await until(() => waitersOn(`${path}.lock`).length > 0, "a waiter");
    await end(waiter);
    assert.deepEqual(waitersOn(`${path}.lock`), []);
    flock.process.stdin.end("done\n");
    assert.equal((await flock.finish()).code, 0);
    // Nobody took it afterwards.
    assert.equal(await isLocked(path), false);
  });
}

/**
 * The two places a wait parks: libuv's pool (the default) and a waiting
 * thread of lockbox's own (with fewer than four pool threads).
 */
const PARKING = [
  { where: "on libuv's pool", env: process.env },
  {
    where: "in a waiting thread",
    env: { ...process.env, UV_THREADPOOL_SIZE: "2" },
  },
];

for (const { where, env } of PARKING) {
  for (const sigurg of [false, true]) {
    test(`process.exit() with lock waits pending ${where} ends the process while the lock is still held elsewhere${sigurg ? ", with a SIGURG listener" : ""}`, async () => {
      await assertWaitEnds(
        async (path) => {
          const waiter = nodeWorker("waits.mjs", [
            ...(sigurg ? ["--sigurg"] : []),
            path,
            path,
          ], { env });
          await waiter.waitFor("waiting");
          return waiter;
        },
        async (waiter) => {
          waiter.process.stdin.write("exit\n");
          // The hang guard: the lock is held until after this returns.
          assert.deepEqual(await waiter.finish(60_000), {
            code: 0,
            signal: null,
          });
          assert.deepEqual(waiter.lines, ["waiting"]);
        },
      );
    });
  }
}

test("Worker.terminate() of a thread waiting for a lock ends it while the lock is still held elsewhere", async () => {
  // The thread lives in a process of its own, which stays alive until the
  // waits have been checked.
  let child;
  await assertWaitEnds(
    async (path) => {
      child = nodeWorker("thread_waits.mjs", [path]);
      await child.waitFor("started");
      return child;
    },
    async () => {
      child.process.stdin.write("terminate\n");
      await child.waitFor("terminated");
    },
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

for (const { where, env } of PARKING) {
  test(`process.exit() does not wait for a lock wait ${where} that timed out`, async () => {
    await withTempDir(async (dir) => {
      const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
      try {
        await holder.waitFor("locked");
        const waiter = nodeWorker("give_up.mjs", [`${dir}/a`], { env });
        const { code } = await waiter.finish(30_000);
        assert.equal(code, 5, waiter.stderr);
        assert.deepEqual(waiter.lines, ["timed out"]);
      } finally {
        await holder.finish();
      }
    });
  });
}

test("process.exit() while a waiting thread loads koffi lets the load finish first (stopped halfway, koffi aborts the process)", async () => {
  await withTempDir(async (dir) => {
    const holder = nodeWorker("hold.mjs", [`${dir}/a`]);
    try {
      await holder.waitFor("locked");
      const loads = `${dir}/loads`;
      writeFileSync(loads, "");
      const waiter = new Child(process.execPath, [
        "--require",
        fileURLToPath(
          new URL("./workers/slow_addon_load.cjs", import.meta.url),
        ),
        fileURLToPath(new URL("./workers/give_up.mjs", import.meta.url)),
        `${dir}/a`,
      ], {
        // Fewer than four pool threads: the wait parks in a thread of its own.
        env: {
          ...process.env,
          LOCKBOX_TEST_LOADS: loads,
          UV_THREADPOOL_SIZE: "2",
        },
      });
      const { code } = await waiter.finish(30_000);
      assert.equal(code, 5, waiter.stderr);
      assert.deepEqual(waiter.lines, ["timed out"]);
      assert.match(readFileSync(loads, "utf8"), /koffi\.node\n/);
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
