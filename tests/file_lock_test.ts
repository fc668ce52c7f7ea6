// FileLock inside one process: queueing, re-entry, options and bad input.

import assert from "node:assert/strict";
import {
  FileLock,
  isLocked,
  isProcessRunning,
  JsonStore,
  LockError,
  lockHolder,
  LockLostError,
  LockTimeoutError,
  waitForRelease,
  withLock,
} from "../mod.ts";
import {
  _encodeRecord,
  _isoTime,
  _recordText,
} from "../src/lock/_holder_record.ts";
import {
  delay,
  modesUnderUmask,
  names,
  openUnder,
  sh,
  withImmutableDir,
  withTempDir,
} from "./_helpers.ts";

Deno.test("withLock() runs 200 concurrent calls on one path in order, beside a second path", async () => {
  await withTempDir(async (dir) => {
    const a = `${dir}/a.json`;
    const b = `${dir}/b.json`;
    const order: Record<string, number[]> = { a: [], b: [] };
    let inside = { a: 0, b: 0 };
    let maxInside = { a: 0, b: 0 };
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    const calls = [];
    for (let i = 0; i < 300; i++) {
      const key = i % 3 === 2 ? "b" : "a";
      calls.push(withLock(key === "a" ? a : b, async () => {
        inside = { ...inside, [key]: inside[key as "a"] + 1 };
        maxInside = {
          ...maxInside,
          [key]: Math.max(maxInside[key as "a"], inside[key as "a"]),
        };
        order[key].push(i);
        await delay(0);
        inside = { ...inside, [key]: inside[key as "a"] - 1 };
      }));
    }
    await Promise.all(calls);
    clearInterval(ticker);
    assert.equal(order.a.length, 200);
    assert.equal(order.b.length, 100);
    assert.deepEqual(order.a, [...order.a].sort((x, y) => x - y));
    assert.deepEqual(order.b, [...order.b].sort((x, y) => x - y));
    assert.deepEqual(maxInside, { a: 1, b: 1 });
    assert.ok(ticks > 0, "the event loop kept running");
  });
});

Deno.test("withLock() inside withLock() on the same path throws LockError at once", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    await withLock(path, async () => {
      await assert.rejects(
        withLock(path, () => "never"),
        (error: Error) =>
          error instanceof LockError && !(error instanceof LockTimeoutError) &&
          error.message.includes("not re-entrant") &&
          error.message.includes(`${path}.lock`),
      );
      await assert.rejects(FileLock.acquire(path), LockError);
      // A different path is fine inside.
      assert.equal(await withLock(`${dir}/other.json`, () => 7), 7);
    });
    // Outside, the path is free again.
    assert.equal(await withLock(path, () => 1), 1);
  });
});

Deno.test("withLock() does not mistake a later call from a released context for re-entry", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    let later: Promise<number> | undefined;
    await withLock(path, () => {
      later = delay(20).then(() => withLock(path, () => 2));
    });
    assert.equal(await later, 2);
  });
});

Deno.test("FileLock.tryAcquire() returns null while another in-process holder has it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/job`;
    const first = await FileLock.tryAcquire(path);
    assert.ok(first);
    assert.equal(await FileLock.tryAcquire(path), null);
    await assert.rejects(
      FileLock.acquire(path, { timeout: 0 }),
      LockTimeoutError,
    );
    await first.release();
    const again = await FileLock.tryAcquire(path);
    assert.ok(again);
    await again.release();
  });
});

Deno.test("FileLock.acquire() rejects with signal.reason when aborted, leaving nothing queued", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const holder = await FileLock.acquire(path);
    const controller = new AbortController();
    const waiting = FileLock.acquire(path, { signal: controller.signal });
    const reason = new Error("stop waiting");
    setTimeout(() => controller.abort(reason), 20);
    await assert.rejects(waiting, (error) => error === reason);
    await assert.rejects(
      FileLock.acquire(path, { signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
    await holder.release();
    // Nothing was left queued: the lock is immediately free.
    const next = await FileLock.tryAcquire(path);
    assert.ok(next);
    await next.release();
  });
});

Deno.test("FileLock.release() is idempotent and await using releases", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    let outer: FileLock;
    {
      await using lock = await FileLock.acquire(path);
      outer = lock;
      assert.ok(lock.held);
      assert.ok(await isLocked(path));
    }
    assert.equal(outer.held, false);
    assert.equal(await isLocked(path), false);
    await outer.release();
    assert.equal(await isLocked(path), false);
  });
});

Deno.test("FileLock shared locks coexist in one process and exclude an exclusive one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const s1 = await FileLock.acquire(path, { shared: true });
    const s2 = await FileLock.acquire(path, { shared: true, timeout: 0 });
    assert.ok(s1.shared && s2.shared);
    assert.equal(await FileLock.tryAcquire(path), null);
    let got = false;
    const exclusive = FileLock.acquire(path).then((lock) => {
      got = true;
      return lock;
    });
    await s1.release();
    await delay(20);
    assert.equal(got, false, "the exclusive waits for every shared holder");
    await s2.release();
    const lock = await exclusive;
    assert.equal(lock.shared, false);
    await lock.release();
  });
});

Deno.test("FileLock tokens grow by one per exclusive acquisition; shared ones keep it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const before = Date.now();
    const tokens: number[] = [];
    for (let i = 0; i < 5; i++) {
      const lock = await FileLock.acquire(path);
      tokens.push(lock.token);
      await lock.release();
    }
    // A new lock file starts from the clock (microseconds), then grows by one.
    assert.ok(tokens[0] >= before * 1000, `${tokens[0]}`);
    assert.deepEqual(tokens, [0, 1, 2, 3, 4].map((i) => tokens[0] + i));
    const shared = await FileLock.acquire(path, { shared: true });
    assert.equal(shared.token, tokens[4]);
    await shared.release();
  });
});

Deno.test("a holder record's acquiredAt is what Date's toISOString gives, on leap days, century ends and every millisecond field", async () => {
  const times = [
    0,
    Date.UTC(1999, 11, 31, 23, 59, 59, 999),
    Date.UTC(2000, 1, 29, 12, 0, 0, 1),
    Date.UTC(2000, 2, 1),
    Date.UTC(2100, 1, 28, 23, 59, 59, 999),
    Date.UTC(2100, 2, 1),
    Date.UTC(2400, 1, 29, 1, 2, 3, 45),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
  ];
  // And a day every 37 days, at a time of day that moves with it, from
  // 1970 to 2300.
  for (
    let ms = 0;
    ms < Date.UTC(2300, 0, 1);
    ms += 37 * 86_400_000 + 3_723_457
  ) {
    times.push(ms);
  }
  for (const ms of times) {
    assert.equal(_isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
  await withTempDir(async (dir) => {
    const before = Date.now();
    const lock = await FileLock.acquire(`${dir}/state.json`);
    const after = Date.now();
    const holder = await lockHolder(`${dir}/state.json`);
    await lock.release();
    const at = Date.parse(holder!.acquiredAt);
    assert.ok(at >= before && at <= after, holder!.acquiredAt);
  });
});

Deno.test("FileLock tokens are at least 2^50 (FileLock's family of fences) even after a record with a smaller token", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    // A record another lockbox-compatible tool wrote, with token 7.
    await Deno.writeFile(
      `${path}.lock`,
      _encodeRecord(_recordText(7, 1, "host", false, undefined), 0).slice(),
    );
    const shared = await FileLock.acquire(path, { shared: true });
    assert.equal(shared.token, 7, "a shared lock keeps the token");
    await shared.release();
    const lock = await FileLock.acquire(path);
    await lock.release();
    assert.equal(lock.token, 2 ** 50);
    const next = await FileLock.acquire(path);
    await next.release();
    assert.equal(next.token, 2 ** 50 + 1);
  });
});

Deno.test("FileLock tokens keep growing after the lock file is removed, emptied by another tool, or damaged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lockFile = `${path}.lock`;
    const take = async () => {
      const lock = await FileLock.acquire(path);
      await lock.release();
      return lock.token;
    };
    let last = await take();
    for (let i = 0; i < 50; i++) last = await take();
    // Removed (as cleanup does, or by hand).
    await Deno.remove(lockFile);
    let next = await take();
    assert.ok(next > last, `after removal: ${next} <= ${last}`);
    last = next;
    // Truncated, as py-filelock does on every attempt.
    await Deno.writeTextFile(lockFile, "");
    next = await take();
    assert.ok(next > last, `after truncation: ${next} <= ${last}`);
    last = next;
    // A damaged record (bad checksum) is repaired, not kept at token 0.
    const bytes = await Deno.readFile(lockFile);
    bytes[12] = bytes[12] === 0x31 ? 0x32 : 0x31; // a digit of the pid
    await Deno.writeFile(lockFile, bytes);
    next = await take();
    assert.ok(next > last, `after damage: ${next} <= ${last}`);
    assert.equal(await take(), next + 1, "the record was rewritten");
  });
});

Deno.test("FileLock.verify() turns false when the lock file is removed or replaced", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lock = await FileLock.acquire(path);
    assert.equal(await lock.verify(), true);
    await Deno.remove(lock.lockPath);
    assert.equal(await lock.verify(), false);
    await lock.release();

    const second = await FileLock.acquire(path);
    assert.equal(await second.verify(), true);
    await Deno.writeTextFile(`${dir}/other`, "");
    await Deno.rename(`${dir}/other`, second.lockPath);
    assert.equal(await second.verify(), false);
    await second.release();
    assert.equal(await second.verify(), false);
  });
});

Deno.test("FileLock removeOnRelease removes the lock file, and a new lock recreates it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lock = await FileLock.acquire(path, { removeOnRelease: true });
    await lock.release();
    if (Deno.env.get("LOCKBOX_NO_PROC") === "1") {
      // Without /proc no one can be shown not to have it open: kept.
      assert.ok((await Deno.lstat(`${path}.lock`)).isFile);
    } else {
      await assert.rejects(Deno.lstat(`${path}.lock`), Deno.errors.NotFound);
    }
    const again = await FileLock.acquire(path);
    assert.ok((await Deno.lstat(`${path}.lock`)).isFile);
    await again.release();
  });
});

Deno.test("FileLock.acquire() creates a missing parent directory", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a/b/state.json`;
    const lock = await FileLock.acquire(path);
    assert.ok((await Deno.lstat(`${dir}/a/b/state.json.lock`)).isFile);
    await lock.release();
  });
});

Deno.test("FileLock.acquire() refuses a lock path that is a symlink, and follows nothing", async () => {
  await withTempDir(async (dir) => {
    const target = `${dir}/target`;
    await Deno.symlink(target, `${dir}/state.json.lock`);
    await assert.rejects(
      FileLock.acquire(`${dir}/state.json`),
      (error: Error) =>
        error instanceof LockError && error.message.includes("symbolic link") &&
        error.message.includes(`${dir}/state.json.lock`),
    );
    await assert.rejects(Deno.lstat(target), Deno.errors.NotFound);
    // An existing target is neither locked nor changed.
    await Deno.writeTextFile(target, "precious");
    await assert.rejects(FileLock.acquire(`${dir}/state.json`), LockError);
    assert.equal(await Deno.readTextFile(target), "precious");
    await assert.rejects(isLocked(`${dir}/state.json`), LockError);
  });
});

Deno.test("FileLock.acquire() refuses a lock file it locked before once it is a symlink, a directory or a FIFO, and makes a removed one again", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lockPath = `${path}.lock`;
    // Locked once, the path is opened without an lstat from then on: the
    // check after the lock must catch what replaced the file.
    await (await FileLock.acquire(path)).release();
    const target = `${dir}/target`;
    await Deno.writeTextFile(target, "precious");
    await Deno.remove(lockPath);
    await Deno.symlink(target, lockPath);
    await assert.rejects(
      FileLock.acquire(path, { timeout: 1000 }),
      (error: Error) =>
        error instanceof LockError && error.message.includes("symbolic link"),
    );
    assert.equal(await Deno.readTextFile(target), "precious");
    // The target was not left locked either.
    await sh("flock", "-n", target, "true");

    await Deno.remove(lockPath);
    await (await FileLock.acquire(path)).release();
    await Deno.remove(lockPath);
    await Deno.mkdir(lockPath);
    await assert.rejects(
      FileLock.acquire(path, { timeout: 1000 }),
      (error: Error) =>
        error instanceof LockError && error.message.includes("directory"),
    );

    await Deno.remove(lockPath);
    await (await FileLock.acquire(path)).release();
    await Deno.remove(lockPath);
    await sh("mkfifo", lockPath);
    await assert.rejects(
      FileLock.acquire(path, { timeout: 1000 }),
      (error: Error) => error instanceof LockError,
    );

    // Removed: made again, and the token goes on from a fresh file.
    await Deno.remove(lockPath);
    await (await FileLock.acquire(path)).release();
    await Deno.remove(lockPath);
    const again = await FileLock.acquire(path);
    assert.ok((await Deno.lstat(lockPath)).isFile);
    assert.ok(again.token >= 1);
    await again.release();
  });
});

Deno.test("FileLock.acquire() refuses a lock path that is a directory", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/state.json.lock`);
    await assert.rejects(
      FileLock.acquire(`${dir}/state.json`),
      (error: Error) =>
        error instanceof LockError && error.message.includes("directory") &&
        error.message.includes(`${dir}/state.json.lock`),
    );
  });
});

Deno.test("FileLock.acquire() reports an unwritable directory and creates nothing", async () => {
  await withTempDir(async (dir) => {
    const locked = `${dir}/ro`;
    await Deno.mkdir(locked);
    await withImmutableDir(locked, async () => {
      await assert.rejects(
        FileLock.acquire(`${locked}/state.json`),
        (error: Error) =>
          error instanceof LockError &&
          error.message.includes(`${locked}/state.json.lock`) &&
          error.message.includes("writable"),
      );
      assert.deepEqual(names(locked), []);
    });
  });
});

Deno.test("FileLock.acquire() rejects bad options with TypeError and RangeError", async () => {
  await assert.rejects(FileLock.acquire(""), TypeError);
  await assert.rejects(FileLock.acquire("x", { timeout: -1 }), RangeError);
  await assert.rejects(FileLock.acquire("x", { timeout: NaN }), RangeError);
  await assert.rejects(
    FileLock.acquire("x", { metadata: { big: "x".repeat(70_000) } }),
    RangeError,
  );
  await assert.rejects(waitForRelease("x", { timeout: -5 }), RangeError);
  // Metadata is a plain object, so that every holder record can be read back.
  const badMetadata: [unknown, RegExp][] = [
    [null, /got null/],
    [new Date(), /got a Date/],
    ["ann", /got string/],
    [{ toJSON: () => "text" }, /toJSON\(\) does not give an object/],
    [{
      toJSON: () => {
        throw new Error("boom");
      },
    }, /not JSON-serializable \(boom\)/],
    [{ n: 1n }, /not JSON-serializable/],
  ];
  for (const [metadata, message] of badMetadata) {
    await assert.rejects(
      FileLock.acquire("x", { metadata: metadata as Record<string, unknown> }),
      (error: Error) =>
        error instanceof TypeError && message.test(error.message),
      String(message),
    );
  }
  // A thread blocked in flock(2) cannot be woken by a timer or a signal.
  await assert.rejects(
    FileLock.acquire("x", { blocking: true, timeout: 200 }),
    (error: Error) =>
      error instanceof TypeError && error.message.includes("timeout of 200"),
  );
  await assert.rejects(
    FileLock.acquire("x", {
      blocking: true,
      signal: new AbortController().signal,
    }),
    (error: Error) =>
      error instanceof TypeError && error.message.includes("abort signal"),
  );
});

Deno.test("FileLock blocking: true with timeout 0 tries once, like tryAcquire", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const held = await FileLock.acquire(path);
    await assert.rejects(
      FileLock.acquire(path, { blocking: true, timeout: 0 }),
      LockTimeoutError,
    );
    await held.release();
    const lock = await FileLock.acquire(path, { blocking: true, timeout: 0 });
    assert.ok(lock.held);
    await lock.release();
  });
});

Deno.test("FileLock never writes into a lock file whose content it did not write", async () => {
  await withTempDir(async (dir) => {
    const script = `${dir}/job.sh`;
    const content = "#!/bin/sh\necho this script locks itself\n".repeat(40);
    await Deno.writeTextFile(script, content);
    const lock = await FileLock.acquire(script, { lockPath: script });
    assert.equal(lock.token, 0);
    assert.equal(await FileLock.tryAcquire(script, { lockPath: script }), null);
    assert.equal(await isLocked(script, { lockPath: script }), true);
    await lock.release();
    assert.equal(await Deno.readTextFile(script), content);
    // An empty file is lockbox's to write: it gets a record.
    await Deno.writeTextFile(`${dir}/empty.lock`, "");
    const recorded = await FileLock.acquire(dir, {
      lockPath: `${dir}/empty.lock`,
    });
    assert.ok(recorded.token > 1);
    await recorded.release();
    assert.match(
      await Deno.readTextFile(`${dir}/empty.lock`),
      new RegExp(`^\\{"token":${recorded.token},`),
    );
  });
});

Deno.test("FileLock locks a file it may not write, read-only, as flock(1) does, when its content is not lockbox's", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/frozen.lock`;
    await Deno.writeTextFile(file, "4242\n"); // a pid another tool wrote
    await sh("chattr", "+i", file);
    try {
      const lock = await FileLock.acquire(file, { lockPath: file });
      assert.equal(lock.token, 0);
      assert.equal(await FileLock.tryAcquire(file, { lockPath: file }), null);
      await lock.release();
      assert.equal(await Deno.readTextFile(file), "4242\n");
    } finally {
      await sh("chattr", "-i", file);
    }
  });
});

Deno.test("FileLock.acquire() refuses an exclusive lock on a lock file it may not write when the file is lockbox's (empty or a record), and a shared one keeps the recorded token", async () => {
  await withTempDir(async (dir) => {
    const empty = `${dir}/empty.lock`;
    await Deno.writeTextFile(empty, "");
    const recorded = `${dir}/recorded.lock`;
    const first = await FileLock.acquire(recorded, { lockPath: recorded });
    await first.release();
    const before = await Deno.readTextFile(recorded);
    await sh("chattr", "+i", empty, recorded);
    try {
      for (const file of [empty, recorded]) {
        await assert.rejects(
          FileLock.acquire(file, { lockPath: file }),
          (error: Error) =>
            error instanceof LockError && error.message.includes(file) &&
            /may not write it.*fencing token/.test(error.message),
        );
        // Refused, not left held.
        assert.equal(await isLocked(file, { lockPath: file }), false);
      }
      const shared = await FileLock.acquire(recorded, {
        lockPath: recorded,
        shared: true,
      });
      assert.equal(shared.token, first.token);
      await shared.release();
      assert.equal(await Deno.readTextFile(recorded), before);
    } finally {
      await sh("chattr", "-i", empty, recorded);
    }
  });
});

Deno.test("FileLock.acquire() waits, not fails, with a timeout past 2^31 - 1 ms", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    for (const timeout of [2 ** 31, 3_000_000_000, Number.MAX_SAFE_INTEGER]) {
      const holder = await FileLock.acquire(path);
      let settled = false;
      const waiting = FileLock.acquire(path, { timeout }).finally(() =>
        settled = true
      );
      // A timer given more than 2^31 - 1 ms fires after about 1 ms.
      await delay(200);
      assert.equal(settled, false, `timeout ${timeout} fired early`);
      await holder.release();
      await (await waiting).release();
    }
  });
});

Deno.test("JsonStore.update() and withLock() inside an update of the same store fail at once instead of waiting for themselves", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const path = `${dir}/state-${journal}.json`;
      const store = new JsonStore<{ n: number }>(path, {
        initial: { n: 0 },
        journal,
        lockTimeout: Infinity, // a wait on itself would never end
      });
      await assert.rejects(
        store.update(async (d) => {
          d.n = 1;
          await store.update((inner) => void (inner.n = 2));
        }),
        LockError,
      );
      await assert.rejects(
        store.update(() => withLock(path, () => {})),
        LockError,
      );
      await assert.rejects(
        store.update(async () => {
          await new Promise((resolve) => setTimeout(resolve, 1));
          await store.write({ n: 3 });
        }),
        LockError,
      );
      // Nothing was written, and the store works afterwards.
      assert.deepEqual(await store.read(), { n: 0 });
      await store.update((d) => void d.n++);
      assert.deepEqual(await store.read(), { n: 1 });
    }
  });
});

Deno.test("isProcessRunning() refuses a pid a C int cannot hold instead of wrapping it", () => {
  assert.equal(isProcessRunning(Deno.pid), true);
  for (const pid of [2 ** 32, 2 ** 31, 0, -1, 1.5]) {
    assert.throws(() => isProcessRunning(pid), RangeError, String(pid));
  }
});

Deno.test("FileLock.signal aborts with LockLostError on release, and when the lock file is removed or replaced", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const first = await FileLock.acquire(path);
    const signal = first.signal;
    assert.equal(signal.aborted, false);
    await first.release();
    assert.ok(signal.reason instanceof LockLostError);
    assert.match(signal.reason.message, /it was released/);
    // Read after release: already aborted.
    assert.equal(first.signal.aborted, true);

    const second = await FileLock.acquire(path);
    const watched = second.signal;
    const lost = new Promise<unknown>((resolve) =>
      watched.addEventListener("abort", () => resolve(watched.reason))
    );
    await Deno.remove(second.lockPath);
    // Seen by the once-a-second check, with no one reading the signal. (That
    // timer does not keep a process alive: this guard keeps the test's.)
    let guard: ReturnType<typeof setTimeout> | undefined;
    const reason = await Promise.race([
      lost,
      new Promise((resolve) => guard = setTimeout(resolve, 10_000, "guard")),
    ]);
    clearTimeout(guard);
    assert.ok(reason instanceof LockLostError);
    assert.match((reason as Error).message, /removed or replaced/);
    await second.release();

    // A replaced file is seen at once when the signal is read.
    const third = await FileLock.acquire(path);
    assert.equal(third.signal.aborted, false);
    await Deno.writeTextFile(`${dir}/other`, "");
    await Deno.rename(`${dir}/other`, third.lockPath);
    assert.equal(third.signal.aborted, true);
    await third.release();
  });
});

Deno.test("FileLock.release() and withLock() leave no descriptor of the lock file open once they resolve", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lock = await FileLock.acquire(path);
    assert.deepEqual(openUnder(dir), [`${path}.lock`]);
    await lock.release();
    assert.deepEqual(openUnder(dir), []);
    await withLock(path, () => {});
    assert.deepEqual(openUnder(dir), []);
    await assert.rejects(
      withLock(path, () => Promise.reject(new Error("fn failed"))),
      /fn failed/,
    );
    assert.deepEqual(openUnder(dir), []);
    // Back to back, shared, and many at once in this process (each handed
    // the lock file of the one before): nothing left once all resolved.
    for (let i = 0; i < 50; i++) await withLock(path, () => {});
    assert.deepEqual(openUnder(dir), []);
    const shared = await Promise.all(
      [1, 2, 3].map(() => FileLock.acquire(path, { shared: true })),
    );
    await Promise.all(shared.map((held) => held.release()));
    assert.deepEqual(openUnder(dir), []);
    await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => withLock(i % 2 ? path : `${dir}/other`, () => delay(0)),
      ),
    );
    assert.deepEqual(openUnder(dir), []);
    for (let i = 0; i < 100; i++) {
      await (await FileLock.acquire(`${dir}/f${i}`)).release();
    }
    assert.deepEqual(openUnder(dir), []);
    const busy = await FileLock.acquire(path);
    assert.equal(await FileLock.tryAcquire(path), null);
    await assert.rejects(
      FileLock.acquire(path, { timeout: 10 }),
      LockTimeoutError,
    );
    await busy.release();
    assert.deepEqual(openUnder(dir), []);
  });
});

Deno.test("FileLock.release() hands its lock file to a waiting request of this process, which never locks it if it was replaced meanwhile", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lockPath = `${path}.lock`;
    const first = await FileLock.acquire(path);
    const next = FileLock.acquire(path);
    // Replaced while held (a new inode at the path): the waiting request
    // must lock the new file, not the one handed to it.
    Deno.writeFileSync(`${lockPath}.new`, new Uint8Array());
    Deno.renameSync(`${lockPath}.new`, lockPath);
    await first.release();
    const second = await next;
    assert.ok(await second.verify());
    const probe = await new Deno.Command("flock", {
      args: ["-n", lockPath, "true"],
    }).output();
    assert.equal(
      probe.code,
      1,
      "the file now at the lock path must be the one locked",
    );
    // Removed while held: made again and locked.
    const third = FileLock.acquire(path);
    Deno.removeSync(lockPath);
    await second.release();
    const again = await third;
    assert.ok((await Deno.lstat(lockPath)).isFile);
    assert.ok(await again.verify());
    await again.release();
    assert.deepEqual(openUnder(dir), []);
  });
});

Deno.test("FileLock pidFile writes the pid alone and keeps the record and growing tokens in <lockPath>.lockbox", async () => {
  await withTempDir(async (dir) => {
    const lockFile = `${dir}/a.json.lock`;
    // A lock file from before, with a lockbox record: its token carries on.
    const before = await FileLock.acquire(`${dir}/a.json`);
    await before.release();
    const sizeBefore = (await Deno.stat(lockFile)).size;
    assert.ok(sizeBefore > String(Deno.pid).length);
    const tokens = [];
    for (let i = 0; i < 3; i++) {
      const lock = await FileLock.acquire(`${dir}/a.json`, {
        pidFile: true,
        metadata: { user: "ada" },
      });
      assert.equal(await Deno.readTextFile(lockFile), String(Deno.pid));
      const holder = await lockHolder(`${dir}/a.json`);
      assert.equal(holder?.pid, Deno.pid);
      assert.equal(holder?.token, lock.token);
      assert.deepEqual(holder?.metadata, { user: "ada" });
      tokens.push(lock.token);
      await lock.release();
    }
    assert.deepEqual(tokens, [1, 2, 3].map((n) => before.token + n));
    // Removed (as seed 001's cleanup and release do): the token still grows.
    await Deno.remove(lockFile);
    const after = await FileLock.acquire(`${dir}/a.json`, { pidFile: true });
    assert.equal(after.token, before.token + 4);
    await after.release();
    assert.deepEqual(names(dir), ["a.json.lock", "a.json.lock.lockbox"]);
  });
});

Deno.test("FileLock pidFile never writes a lock file with other content, nor through a symlinked record file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/s.lock`, "#!/bin/sh\necho hi\n");
    const lock = await FileLock.acquire(`${dir}/s`, { pidFile: true });
    assert.equal(lock.token, 0);
    await lock.release();
    assert.equal(
      await Deno.readTextFile(`${dir}/s.lock`),
      "#!/bin/sh\necho hi\n",
    );
    assert.deepEqual(names(dir), ["s.lock"]);

    await Deno.writeTextFile(`${dir}/target`, "keep me");
    await Deno.symlink(`${dir}/target`, `${dir}/t.lock.lockbox`);
    await assert.rejects(
      FileLock.acquire(`${dir}/t`, { pidFile: true }),
      LockError,
      "t.lock.lockbox': it is a symbolic link",
    );
    assert.equal(await Deno.readTextFile(`${dir}/target`), "keep me");
  });
});

Deno.test("FileLock.acquire() makes a lock file 0666 less the umask, as touch does", async () => {
  for (const [mask, mode] of [[0o002, "664"], [0o027, "640"]]) {
    await withTempDir(async (dir) => {
      const modes = await modesUnderUmask(mask as number, dir, async () => {
        await (await FileLock.acquire(`${dir}/state.json`)).release();
      });
      assert.deepEqual(modes, { "state.json.lock": mode });
    });
  }
});
