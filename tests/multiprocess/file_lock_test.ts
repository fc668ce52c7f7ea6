// FileLock across real processes: exclusion, crashes, shared locks, holder
// records, fencing, safe removal, and interop with Python and flock(1).

import assert from "node:assert/strict";
import {
  FileLock,
  isLocked,
  lockHolder,
  LockTimeoutError,
  waitForRelease,
} from "../../mod.ts";
import {
  Child,
  countFlockSleeps,
  delay,
  finishAll,
  output,
  spawnWorker,
  withTempDir,
  worker,
} from "../_helpers.ts";

Deno.test("FileLock keeps 8 processes x 100 non-atomic increments exact", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}/counter`;
    const children = Array.from(
      { length: 8 },
      () => spawnWorker("increment.ts", [counter, "100"]),
    );
    await finishAll(children);
    assert.equal(await Deno.readTextFile(counter), "800");
  });
});

Deno.test("FileLock keeps all 250 transactions from 250 processes (seed 000's test)", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/group.json`;
    const children = Array.from(
      { length: 250 },
      (_, i) => spawnWorker("append_txn.ts", [file, `txn-${i}`]),
    );
    await finishAll(children);
    const doc = JSON.parse(await Deno.readTextFile(file));
    assert.equal(doc.transactions.length, 250);
    assert.equal(new Set(doc.transactions).size, 250);
  });
});

Deno.test("FileLock held by a process killed with SIGKILL is free at once", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const holder = spawnWorker("hold.ts", [path], { stdin: true });
    await holder.waitFor("locked");
    assert.equal(await FileLock.tryAcquire(path), null);
    assert.ok(await isLocked(path));
    await holder.kill();
    const lock = await FileLock.tryAcquire(path);
    assert.ok(lock, "free as soon as the holder is reaped");
    await lock.release();
  });
});

Deno.test("FileLock.acquire() with timeout 200 rejects after 200 ms and well under a second; an abort is prompt", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const holder = spawnWorker("hold.ts", [
      path,
      "--metadata",
      '{"user":"ada"}',
    ], {
      stdin: true,
    });
    await holder.waitFor("locked");
    try {
      const start = performance.now();
      await assert.rejects(
        FileLock.acquire(path, { timeout: 200 }),
        (error: Error) =>
          error instanceof LockTimeoutError &&
          error.message.includes(`${path}.lock`) &&
          error.message.includes(`pid ${holder.pid}`) &&
          error.holder?.pid === holder.pid,
      );
      const elapsed = performance.now() - start;
      assert.ok(elapsed >= 199, `rejected after ${elapsed} ms`);
      assert.ok(elapsed < 1000, `rejected after ${elapsed} ms`);

      const controller = new AbortController();
      const aborted = FileLock.acquire(path, { signal: controller.signal });
      await delay(50);
      const abortAt = performance.now();
      controller.abort(new Error("user gave up"));
      await assert.rejects(aborted, /user gave up/);
      assert.ok(performance.now() - abortAt < 100);
    } finally {
      await holder.finish();
    }
    // The abandoned kernel wait hands its lock on to the next request.
    const lock = await FileLock.acquire(path, { timeout: 10_000 });
    await lock.release();
  });
});

Deno.test("FileLock 1000 waiters over 100 paths held elsewhere all get their lock; reads stay prompt", async () => {
  await withTempDir(async (dir) => {
    const paths = Array.from({ length: 100 }, (_, i) => `${dir}/p${i}.json`);
    const holder = spawnWorker("hold.ts", paths, { stdin: true });
    await holder.waitFor("locked");
    let granted = 0;
    const waiters = Array.from({ length: 1000 }, async (_, i) => {
      const lock = await FileLock.acquire(paths[i % 100]);
      granted++;
      await lock.release();
    });
    await delay(200);
    assert.equal(granted, 0, "nobody gets a lock held by another process");
    // Ordinary async file reads still complete while 1000 waits are pending.
    const file = `${dir}/data.txt`;
    await Deno.writeTextFile(file, "hello");
    for (let i = 0; i < 50; i++) {
      assert.equal(await Deno.readTextFile(file), "hello");
    }
    assert.equal(granted, 0);
    await holder.send("release");
    await Promise.all(waiters);
    assert.equal(granted, 1000);
    await holder.finish();
  });
});

Deno.test("FileLock shared holders coexist across processes; exclusive and shared wait for each other", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const readers = Array.from(
      { length: 3 },
      () => spawnWorker("hold.ts", [path, "--shared"], { stdin: true }),
    );
    await Promise.all(readers.map((r) => r.waitFor("locked")));
    assert.equal(await FileLock.tryAcquire(path), null);
    const shared = await FileLock.tryAcquire(path, { shared: true });
    assert.ok(shared, "a shared lock joins the shared holders");
    await shared.release();

    let exclusiveAt = 0;
    const exclusive = FileLock.acquire(path).then((lock) => {
      exclusiveAt = performance.now();
      return lock;
    });
    await readers[0].finish();
    await readers[1].finish();
    await delay(50);
    assert.equal(exclusiveAt, 0, "still one shared holder");
    const lastReleasedAt = performance.now();
    await readers[2].finish();
    const lock = await exclusive;
    assert.ok(exclusiveAt >= lastReleasedAt);

    const reader = spawnWorker("hold.ts", [path, "--shared"], { stdin: true });
    await delay(300);
    assert.equal(
      reader.lines.length,
      0,
      "a shared waits for an exclusive holder",
    );
    await lock.release();
    await reader.waitFor("locked");
    await reader.finish();
  });
});

Deno.test("lockHolder() reads another process's record, never torn, and null after release or death", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const holder = spawnWorker(
      "hold.ts",
      [path, "--metadata", '{"user":"ada","message":"migrating"}'],
      { stdin: true },
    );
    const token = Number((await holder.waitFor("locked")).split(" ")[1]);
    const record = await lockHolder(path);
    assert.ok(record);
    assert.equal(record.pid, holder.pid);
    assert.equal(record.hostname, Deno.hostname());
    assert.equal(record.token, token);
    assert.equal(record.shared, false);
    assert.deepEqual(record.metadata, { user: "ada", message: "migrating" });
    assert.ok(Math.abs(Date.parse(record.acquiredAt) - Date.now()) < 60_000);
    await holder.finish();
    assert.equal(
      await lockHolder(path),
      null,
      "released: the kernel says free",
    );

    const dying = spawnWorker("hold.ts", [path], { stdin: true });
    await dying.waitFor("locked");
    assert.equal((await lockHolder(path))?.pid, dying.pid);
    await dying.kill();
    assert.equal(await lockHolder(path), null, "dead: the kernel says free");

    const churners = Array.from(
      { length: 3 },
      () => spawnWorker("churn.ts", [path, "1500"]),
    );
    const pids = new Set(churners.map((c) => c.pid));
    let seen = 0;
    // Read for 1.5 s from the first holder seen: the churners' start-up can
    // take longer than that on a loaded machine (30 s guard).
    let end = Date.now() + 30_000;
    while (Date.now() < end) {
      const r = await lockHolder(path);
      if (r === null) continue;
      if (seen++ === 0) end = Date.now() + 1500;
      assert.ok(pids.has(r.pid), `pid ${r.pid} is one of the churners`);
      assert.equal(typeof r.metadata?.n, "number");
      assert.equal(
        r.metadata?.note,
        "x".repeat(((r.metadata!.n as number) * 37) % 900),
      );
    }
    await finishAll(churners);
    assert.ok(seen > 0, "saw some holders");
  });
});

Deno.test("FileLock tokens strictly increase over 1000 acquisitions by 4 processes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const children = Array.from(
      { length: 4 },
      () => spawnWorker("tokens.ts", [path, "250"]),
    );
    const outputs = await finishAll(children);
    const all: number[] = [];
    for (const lines of outputs) {
      const tokens = lines[0].slice("tokens ".length).split(",").map(Number);
      assert.equal(tokens.length, 250);
      for (let i = 1; i < tokens.length; i++) {
        assert.ok(tokens[i] > tokens[i - 1]);
      }
      all.push(...tokens);
    }
    all.sort((a, b) => a - b);
    // One by one from the first (the clock, for a new lock file).
    assert.deepEqual(all, Array.from({ length: 1000 }, (_, i) => all[0] + i));
  });
});

Deno.test("FileLock counts stay exact while another process keeps removing the lock file by the protocol", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}/counter`;
    const remover = spawnWorker("remover.ts", [counter, "4000"]);
    // Half remove on release; two wait with blocking: true, so a removal
    // also lands while a thread sleeps in flock(2) on the old file.
    const children = Array.from(
      { length: 6 },
      (_, i) =>
        spawnWorker("increment.ts", [
          counter,
          "150",
          ...(i % 2 ? ["--remove-on-release"] : []),
          ...(i < 2 ? ["--blocking"] : []),
        ]),
    );
    await finishAll(children);
    const [removed] = await finishAll([remover]);
    assert.equal(await Deno.readTextFile(counter), "900");
    assert.ok(Number(removed[0].split(" ")[1]) > 0, "the remover did remove");
  });
});

Deno.test("FileLock and a Python fcntl.flock holder exclude each other", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/db.json`;
    const lockFile = `${path}.lock`;
    const py = new Child("python3", [worker("py_flock.py"), lockFile, "hold"], {
      stdin: true,
    });
    await py.waitFor("locked");
    assert.equal(await FileLock.tryAcquire(path), null);
    assert.ok(await isLocked(path));
    await py.finish();
    const lock = await FileLock.acquire(path, { timeout: 5_000 });
    const probe = new Child("python3", [
      worker("py_flock.py"),
      lockFile,
      "try",
    ]);
    const { lines } = await probe.finish();
    assert.deepEqual(lines, ["busy"]);
    await lock.release();
    const after = await new Child("python3", [
      worker("py_flock.py"),
      lockFile,
      "try",
    ])
      .finish();
    assert.deepEqual(after.lines, ["acquired"]);
  });
});

Deno.test("FileLock and flock(1) exclude each other", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/db.json`;
    const lockFile = `${path}.lock`;
    const flock = new Child("flock", [
      lockFile,
      "sh",
      "-c",
      "echo locked; read x",
    ], {
      stdin: true,
    });
    await flock.waitFor("locked");
    assert.equal(await FileLock.tryAcquire(path), null);
    assert.equal(await lockHolder(path), null, "flock(1) writes no record");
    await flock.finish();
    assert.ok(await waitForRelease(path, { timeout: 5_000 }));
    const lock = await FileLock.acquire(path, { timeout: 5_000 });
    const busy = await output("flock", {
      args: ["-n", lockFile, "true"],
    });
    assert.equal(busy.code, 1);
    await lock.release();
    const free = await output("flock", {
      args: ["-n", lockFile, "true"],
    });
    assert.equal(free.code, 0);
  });
});

Deno.test("FileLock 8 processes x 100 increments with blocking waits stay exact", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}/counter`;
    const children = Array.from(
      { length: 8 },
      () => spawnWorker("increment.ts", [counter, "100", "--blocking"]),
    );
    const sleeps = await countFlockSleeps(children, finishAll(children));
    assert.equal(await Deno.readTextFile(counter), "800");
    assert.ok(sleeps > 0, "main threads were seen asleep in flock(2)");
  });
});

Deno.test("FileLock blocking: true sleeps in flock(2) until flock(1) lets go, running nothing meanwhile", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/db.json`;
    const lockFile = `${path}.lock`;
    const flock = new Child("flock", [
      lockFile,
      "sh",
      "-c",
      "echo locked; sleep 0.5",
    ]);
    await flock.waitFor("locked");
    assert.equal(await FileLock.tryAcquire(path), null);
    let timerRan = false;
    const timer = setTimeout(() => timerRan = true, 0);
    const lock = await FileLock.acquire(path, { blocking: true });
    // A wait on a helper thread lets the event loop run the 0 ms timer
    // during the half second flock(1) still holds the lock.
    assert.equal(timerRan, false, "the thread itself waited");
    clearTimeout(timer);
    const busy = await output("flock", {
      args: ["-n", lockFile, "true"],
    });
    assert.equal(busy.code, 1, "held by us now");
    await lock.release();
    assert.equal((await flock.finish()).code, 0);
  });
});

Deno.test("FileLock blocking: true queues behind this process's own holder instead of blocking on it", async () => {
  await withTempDir(async (dir) => {
    // In a child, so that a thread blocked on its own lock fails the test
    // (killed after 30 s) instead of hanging it.
    const out = await output(Deno.execPath(), {
      args: ["run", "-A", worker("blocking_self.ts"), `${dir}/state.json`],
      guardMs: 30_000,
    });
    assert.equal(out.code, 0);
    assert.deepEqual(
      new TextDecoder().decode(out.stdout).trim().split("\n"),
      ["queued", "granted 1"],
    );
  });
});

Deno.test("waitForRelease() returns true when the holder lets go and false on timeout", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const holder = spawnWorker("hold.ts", [path], { stdin: true });
    await holder.waitFor("locked");
    assert.equal(await waitForRelease(path, { timeout: 100 }), false);
    const released = waitForRelease(path, { timeout: 10_000 });
    await holder.send("release");
    assert.equal(await released, true);
    assert.equal(await isLocked(path), false);
    await holder.finish();
  });
});
