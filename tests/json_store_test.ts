// JsonStore in one process: update semantics, corruption, backups, fencing
// and bad input.

import assert from "node:assert/strict";
import {
  CorruptStoreError,
  FileLock,
  isLocked,
  JsonStore,
  StaleFenceError,
  StoreError,
} from "../mod.ts";
import {
  modesUnderUmask,
  names,
  openUnder,
  output,
  straceLines,
  withFailingFsync,
  withImmutableDir,
  withTempDir,
  withTmpfs,
  worker,
} from "./_helpers.ts";

type Doc = { count: number; items: string[] };
const initial = (): Doc => ({ count: 0, items: [] });

Deno.test("JsonStore.update() writes the change and returns what fn returns", async () => {
  await withTempDir(async (dir) => {
    const store = new JsonStore<Doc>(`${dir}/s.json`, { initial });
    assert.deepEqual(await store.read(), { count: 0, items: [] });
    const r = await store.update((d) => {
      d.count++;
      d.items.push("a");
      return "result";
    });
    assert.equal(r, "result");
    assert.equal(
      await Deno.readTextFile(`${dir}/s.json`),
      JSON.stringify({ count: 1, items: ["a"] }, null, 2),
    );
    assert.deepEqual(await store.read(), { count: 1, items: ["a"] });
  });
});

Deno.test("JsonStore.update() writes nothing when fn throws, and the error is unchanged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    await store.write({ count: 1, items: [] });
    const before = await Deno.readTextFile(path);
    const boom = new Error("boom");
    await assert.rejects(
      store.update((d) => {
        d.count = 99;
        throw boom;
      }),
      (error) => error === boom,
    );
    await assert.rejects(
      store.update(async (d) => {
        d.count = 98;
        await Promise.resolve();
        throw boom;
      }),
      (error) => error === boom,
    );
    assert.equal(await Deno.readTextFile(path), before);
    assert.equal(await isLocked(path), false, "the lock was released");
  });
});

Deno.test("JsonStore.update() leaves the file alone when the value did not change", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    await store.write({ count: 1, items: [] });
    const { ino } = await Deno.stat(path);
    await store.update(() => {});
    assert.equal((await Deno.stat(path)).ino, ino, "not replaced");
    await store.update((d) => {
      d.count = 2;
    });
    assert.notEqual((await Deno.stat(path)).ino, ino, "replaced");
  });
});

const corruptions: [string, Uint8Array][] = [
  ["an empty file", new Uint8Array()],
  ["truncated JSON", new TextEncoder().encode('{"count": 1, "items": ["a"')],
  ["random bytes", new Uint8Array([0xff, 0xfe, 0x00, 0x81, 0x7b, 0x22, 0xc3])],
  ["JSON that validate rejects", new TextEncoder().encode('{"count": "x"}')],
];

function validate(value: unknown): Doc {
  const v = value as Doc;
  if (typeof v?.count !== "number" || !Array.isArray(v.items)) {
    throw new Error("not a Doc");
  }
  return v;
}

for (const [what, bytes] of corruptions) {
  Deno.test(`JsonStore.read() and update() throw CorruptStoreError on ${what}, leaving it byte for byte`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/s.json`;
      await Deno.writeFile(path, bytes);
      const store = new JsonStore<Doc>(path, { initial, validate });
      const named = (error: Error) =>
        error instanceof CorruptStoreError && error.path === path &&
        error.message.includes(path);
      await assert.rejects(store.read(), named);
      await assert.rejects(store.update((d) => void d.count++), named);
      await assert.rejects(store.write({ count: 5, items: [] }), named);
      assert.deepEqual(await Deno.readFile(path), bytes);
    });
  });
}

Deno.test("JsonStore quarantines a corrupt file and continues from the newest valid backup", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const warnings: string[] = [];
    const store = new JsonStore<Doc>(path, {
      initial,
      validate,
      backups: 3,
      onCorrupt: "quarantine",
      onWarning: (m) => warnings.push(m),
    });
    for (let i = 1; i <= 3; i++) {
      await store.update((d) => {
        d.count = i;
      });
    }
    // Backup 1 (count 2) is damaged too; backup 2 (count 1) is good.
    await Deno.writeTextFile(`${path}.bak.1`, "{ nope");
    const garbage = new TextEncoder().encode("\u0000garbage");
    await Deno.writeFile(path, garbage);
    const value = await store.read();
    assert.equal(value.count, 1);
    const moved = names(dir).filter((n) => n.startsWith("s.json.corrupt-"));
    assert.equal(moved.length, 1);
    assert.deepEqual(await Deno.readFile(`${dir}/${moved[0]}`), garbage);
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0].includes(moved[0]) && warnings[0].includes(".bak.2"));
    assert.equal(JSON.parse(await Deno.readTextFile(path)).count, 1);
  });
});

Deno.test("JsonStore quarantine with no valid backup continues from initial", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await Deno.writeTextFile(path, "[1,");
    const warnings: string[] = [];
    const store = new JsonStore<Doc>(path, {
      initial,
      onCorrupt: "quarantine",
      onWarning: (m) => warnings.push(m),
    });
    await store.update((d) => void d.items.push("after"));
    assert.deepEqual(await store.read(), { count: 0, items: ["after"] });
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0].includes("initial value"));
  });
});

Deno.test("JsonStore backups: 3 keeps the three previous versions, newest first", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial, backups: 3 });
    for (let i = 1; i <= 5; i++) {
      await store.update((d) => {
        d.count = i;
      });
    }
    const count = async (file: string) =>
      JSON.parse(await Deno.readTextFile(file)).count;
    assert.equal(await count(path), 5);
    assert.equal(await count(`${path}.bak.1`), 4);
    assert.equal(await count(`${path}.bak.2`), 3);
    assert.equal(await count(`${path}.bak.3`), 2);
    await assert.rejects(Deno.lstat(`${path}.bak.4`), Deno.errors.NotFound);
  });
});

Deno.test("JsonStore fencing refuses a write with an older fence and keeps the document's shape", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    const old = await FileLock.acquire(`${dir}/job`);
    await old.release();
    const current = await FileLock.acquire(`${dir}/job`);
    await current.release();
    assert.ok(current.token > old.token);
    await store.update((d) => void (d.count = 1), { fence: current.token });
    const before = await Deno.readTextFile(path);
    await assert.rejects(
      store.update((d) => void (d.count = 2), { fence: old.token }),
      (error: Error) =>
        error instanceof StaleFenceError && error.message.includes(path),
    );
    await assert.rejects(
      store.write({ count: 3, items: [] }, { fence: old.token }),
      StaleFenceError,
    );
    assert.equal(await Deno.readTextFile(path), before);
    await store.update((d) => void (d.count = 4), { fence: current.token });
    assert.equal(
      await Deno.readTextFile(path),
      JSON.stringify({ count: 4, items: [] }, null, 2),
    );
    await assert.rejects(store.update(() => {}, { fence: -1 }), RangeError);
  });
});

for (const journal of [false, true]) {
  Deno.test(
    `JsonStore${
      journal ? " journal mode" : ""
    }: a fenced update that changes nothing still fences out older tokens`,
    async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/s.json`;
        const store = new JsonStore<Doc>(path, { initial, journal });
        await store.update((d) => void (d.count = 1), { fence: 10 });
        // The holder of token 20 looks and decides nothing needs changing;
        // the holder of 15, paused meanwhile, must not write after it.
        await store.update(() => {}, { fence: 20 });
        await assert.rejects(
          store.update((d) => void (d.count = 2), { fence: 15 }),
          (error: Error) =>
            error instanceof StaleFenceError && error.message.includes("20"),
        );
        // So does writing the document as it already is.
        await store.write(await store.read(), { fence: 30 });
        await assert.rejects(
          store.write({ count: 3, items: [] }, { fence: 25 }),
          StaleFenceError,
        );
        assert.equal((await store.read()).count, 1);
      });
    },
  );
}

Deno.test("JsonStore refuses a path that is a directory or a symlink and changes nothing", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/d.json`);
    const asDir = new JsonStore<Doc>(`${dir}/d.json`, { initial });
    await assert.rejects(
      asDir.update((d) => void d.count++),
      (e: Error) => e instanceof StoreError && e.message.includes("directory"),
    );
    await assert.rejects(asDir.read(), StoreError);
    await Deno.writeTextFile(`${dir}/real.json`, '{"count":7,"items":[]}');
    await Deno.symlink(`${dir}/real.json`, `${dir}/link.json`);
    const viaLink = new JsonStore<Doc>(`${dir}/link.json`, { initial });
    await assert.rejects(
      viaLink.update((d) => void d.count++),
      (e: Error) =>
        e instanceof StoreError && e.message.includes("symbolic link") &&
        e.message.includes(`${dir}/link.json`),
    );
    assert.equal(
      await Deno.readTextFile(`${dir}/real.json`),
      '{"count":7,"items":[]}',
    );
    assert.ok((await Deno.lstat(`${dir}/link.json`)).isSymlink);
  });
});

Deno.test("JsonStore refuses values JSON cannot represent and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Record<string, unknown>>(path, {
      initial: {},
    });
    await store.write({ ok: true });
    const before = await Deno.readTextFile(path);
    await assert.rejects(
      store.update((d) => void (d.big = 10n)),
      (e: Error) => e instanceof TypeError && e.message.includes(path),
    );
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    await assert.rejects(store.write(cycle), TypeError);
    assert.equal(await Deno.readTextFile(path), before);
    assert.deepEqual(names(dir), ["s.json", "s.json.lock"]);
  });
});

Deno.test("JsonStore in an unwritable directory gives a clear error and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const sub = `${dir}/ro`;
    await Deno.mkdir(sub);
    const path = `${sub}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    await store.write({ count: 1, items: [] });
    await withImmutableDir(sub, async () => {
      await assert.rejects(
        store.update((d) => void d.count++),
        (e: Error) =>
          e instanceof StoreError && e.message.includes(path) &&
          e.message.includes("writable"),
      );
    });
    assert.deepEqual(await store.read(), { count: 1, items: [] });
    assert.deepEqual(names(sub), ["s.json", "s.json.lock"]);
  });
});

Deno.test("JsonStore on a full disk throws, keeps the previous file and leaves no temp file", async () => {
  await withTempDir(async (dir) => {
    const mount = `${dir}/tiny`;
    await withTmpfs(
      mount,
      "1m",
      async () => {
        const path = `${mount}/s.json`;
        const store = new JsonStore<{ blob: string }>(path, {
          initial: { blob: "" },
        });
        await store.write({ blob: "x".repeat(600_000) });
        const before = await Deno.readTextFile(path);
        await assert.rejects(
          store.update((d) => void (d.blob = "y".repeat(600_000))),
          (e: Error) =>
            e instanceof StoreError && e.message.includes(path) &&
            e.message.includes("disk is full"),
        );
        assert.equal(await Deno.readTextFile(path), before);
        assert.deepEqual(names(mount), ["s.json", "s.json.lock"]);
      },
    );
  });
});

Deno.test("JsonStore rejects bad options", () => {
  // @ts-expect-error: initial is required
  assert.throws(() => new JsonStore("x.json", {}), TypeError);
  assert.throws(
    () => new JsonStore("x.json", { initial: {}, backups: -1 }),
    RangeError,
  );
  assert.throws(
    () => new JsonStore("x.json", { initial: {}, indent: 99 }),
    RangeError,
  );
  assert.throws(
    // @ts-expect-error: not a mode
    () => new JsonStore("x.json", { initial: {}, onCorrupt: "ignore" }),
    TypeError,
  );
  // A blocked thread cannot time out: blockingLock needs lockTimeout Infinity.
  assert.throws(
    () => new JsonStore("x.json", { initial: {}, blockingLock: true }),
    (error: Error) =>
      error instanceof TypeError && error.message.includes("lockTimeout"),
  );
  new JsonStore("x.json", {
    initial: {},
    blockingLock: true,
    lockTimeout: Infinity,
  });
});

Deno.test("JsonStore.update() throws on a failed fsync, leaves the target untouched and no temp file", async () => {
  // A real failed fsync: ext4 thinks it has room, so write() succeeds into
  // the page cache, and the fsync that pushes the data to the device fails.
  await withTempDir(async (dir) => {
    await withFailingFsync(dir, async (mnt) => {
      const path = `${mnt}/s.json`;
      const store = new JsonStore<{ blob: string }>(path, {
        initial: { blob: "" },
      });
      await store.write({ blob: "old" });
      await assert.rejects(
        store.update((d) => void (d.blob = "x".repeat(8_000_000))),
        (e: Error) =>
          e instanceof StoreError && e.message.includes(path) &&
          e.message.includes("No space left"),
      );
      assert.deepEqual(await store.read(), { blob: "old" });
      assert.deepEqual(names(mnt), ["lost+found", "s.json", "s.json.lock"]);
      // Without fsync the same write succeeds: the failure was the fsync.
      const fast = new JsonStore<{ blob: string }>(path, {
        initial: { blob: "" },
        durable: false,
      });
      await fast.update((d) => void (d.blob = "y".repeat(8_000_000)));
      assert.equal((await fast.read()).blob.length, 8_000_000);
    });
  });
});

Deno.test("JsonStore.transform() replaces the document with what fn returns, and skips an equal one", async () => {
  await withTempDir(async (dir) => {
    const store = new JsonStore<number[] | string>(`${dir}/s.json`, {
      initial: [1, 2, 3],
    });
    assert.deepEqual(
      await store.transform((list) => [...(list as number[]), 4]),
      [
        1,
        2,
        3,
        4,
      ],
    );
    assert.deepEqual(await store.read(), [1, 2, 3, 4]);
    assert.equal(await store.transform(() => "text"), "text");
    assert.equal(await Deno.readTextFile(`${dir}/s.json`), '"text"');
    const before = (await Deno.stat(`${dir}/s.json`)).ino;
    await store.transform(() => "text");
    assert.equal((await Deno.stat(`${dir}/s.json`)).ino, before);
    await assert.rejects(
      store.transform(() => {
        throw new Error("no");
      }),
      /no/,
    );
    assert.equal(await store.read(), "text");
  });
});

Deno.test("JsonStore fenced writes keep working after the lock file is removed, as lockbox clean does", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    // The leader's lock fences the store's writes.
    const leader = `${dir}/leader`;
    for (let i = 0; i < 5; i++) {
      const lock = await FileLock.acquire(leader);
      await store.write({ count: i, items: [] }, { fence: lock.token });
      await lock.release();
    }
    await Deno.remove(`${leader}.lock`);
    const lock = await FileLock.acquire(leader);
    await store.write({ count: 99, items: [] }, { fence: lock.token });
    await lock.release();
    assert.equal((await store.read()).count, 99);
  });
});

Deno.test("JsonStore journal mode refuses a journal that is a symlink, and follows nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await Deno.writeTextFile(`${dir}/elsewhere`, "precious\n");
    await Deno.symlink(`${dir}/elsewhere`, `${path}.journal`);
    const store = new JsonStore<Doc>(path, { initial, journal: true });
    await assert.rejects(
      store.update((d) => void d.count++),
      (e: Error) => e instanceof StoreError && /symbolic link/.test(e.message),
    );
    assert.equal(await Deno.readTextFile(`${dir}/elsewhere`), "precious\n");
  });
});

Deno.test("JsonStore.update() makes the store, its lock, fence, backups and journal 0666 less the umask when it creates them", async () => {
  for (const [mask, mode] of [[0o002, "664"], [0o077, "600"], [0o000, "666"]]) {
    await withTempDir(async (dir) => {
      const modes = await modesUnderUmask(mask as number, dir, async () => {
        for (const journal of [false, true]) {
          const store = new JsonStore<{ n: number }>(
            `${dir}/s-${journal}.json`,
            {
              initial: { n: 0 },
              journal,
              compactAt: 0,
              backups: journal ? 0 : 1,
            },
          );
          await store.update((d) => void d.n++, { fence: 1 });
          await store.update((d) => void d.n++, { fence: 2 });
        }
      });
      assert.deepEqual(
        Object.keys(modes).sort(),
        [
          "s-false.json",
          "s-false.json.bak.1",
          "s-false.json.fence",
          "s-false.json.lock",
          "s-true.json",
          "s-true.json.fence",
          "s-true.json.journal",
          "s-true.json.lock",
        ],
      );
      for (const [name, got] of Object.entries(modes)) {
        assert.equal(got, mode, `${name} under umask ${mask.toString(8)}`);
      }
    });
  }
});

Deno.test("JsonStore.read(), update(), transform() and write() leave no descriptor of the store open once they settle", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Doc>(path, { initial });
    assert.deepEqual(await store.read(), initial());
    assert.deepEqual(openUnder(dir), []);
    await store.write({ count: 1, items: [] });
    assert.deepEqual(openUnder(dir), []);
    await store.update((d) => void d.count++, { fence: 5 });
    assert.deepEqual(openUnder(dir), []);
    await store.transform((d) => ({ ...d, count: d.count + 1 }));
    assert.deepEqual(openUnder(dir), []);
    await assert.rejects(
      store.update(() => {
        throw new Error("fn failed");
      }),
      /fn failed/,
    );
    assert.deepEqual(openUnder(dir), []);
    await assert.rejects(
      store.update((d) => void d.count++, { fence: 4 }),
      StaleFenceError,
    );
    assert.deepEqual(openUnder(dir), []);
    await Promise.all(
      Array.from({ length: 20 }, () => store.update((d) => void d.count++)),
    );
    assert.deepEqual(openUnder(dir), []);
    assert.equal((await store.read()).count, 23);
    // Nothing to close without keepOpen; close() is harmless.
    await store.close();
    assert.deepEqual(openUnder(dir), []);
  });
});

Deno.test("JsonStore with keepOpen keeps its lock file open between calls until close(), and never locks one replaced or removed meanwhile", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const lockPath = `${path}.lock`;
    {
      await using store = new JsonStore<Doc>(path, { initial, keepOpen: true });
      await store.update((d) => void d.count++);
      // Kept open (unlocked) for the next call.
      assert.deepEqual(openUnder(dir), [lockPath]);
      assert.equal(await isLocked(path), false);
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(openUnder(dir), [lockPath]);

      // Replaced meanwhile (a new inode at the path): the new file is locked.
      Deno.writeFileSync(`${lockPath}.new`, new Uint8Array());
      Deno.renameSync(`${lockPath}.new`, lockPath);
      await store.update(async (d) => {
        d.count++;
        const probe = await new Deno.Command("flock", {
          args: ["-n", lockPath, "true"],
        }).output();
        assert.equal(probe.code, 1, "the file at the lock path is locked");
      });
      assert.deepEqual(openUnder(dir), [lockPath]);

      // Removed meanwhile: made again and locked.
      Deno.removeSync(lockPath);
      await store.update(async (d) => {
        d.count++;
        assert.equal(await isLocked(path), true);
      });
      assert.ok((await Deno.lstat(lockPath)).isFile);
      assert.equal((await store.read()).count, 3);
    } // await using: closed here
    assert.deepEqual(openUnder(dir), []);

    // After close() the store still works, closing at each settle.
    const store = new JsonStore<Doc>(path, { initial, keepOpen: true });
    await store.update((d) => void d.count++);
    await store.close();
    assert.deepEqual(openUnder(dir), []);
    await store.update((d) => void d.count++);
    assert.deepEqual(openUnder(dir), []);
    assert.equal((await store.read()).count, 5);
  });
});

for (const journal of [false, true]) {
  Deno.test(
    `JsonStore${
      journal ? " journal mode" : ""
    } keeps the fences of FileLock tokens and counter tokens apart, so neither family fences the other out`,
    async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/s.json`;
        const store = new JsonStore<Doc>(path, { initial, journal });
        const older = await FileLock.acquire(`${dir}/leader`);
        await older.release();
        const lock = await FileLock.acquire(`${dir}/leader`);
        await store.update((d) => void d.count++, { fence: lock.token });
        // A counter token (a PostgreSQL lock's, say) after a FileLock one.
        await store.update((d) => void d.count++, { fence: 2 });
        await assert.rejects(
          store.update((d) => void d.count++, { fence: 1 }),
          (error) => error instanceof StaleFenceError && error.highest === 2,
        );
        // And FileLock tokens are still compared among themselves.
        await assert.rejects(
          store.update((d) => void d.count++, { fence: older.token }),
          (error) =>
            error instanceof StaleFenceError && error.highest === lock.token,
        );
        await store.update((d) => void d.count++, { fence: lock.token });
        await store.update((d) => void d.count++, { fence: 3 });
        await lock.release();
        assert.equal((await store.read()).count, 4);
        assert.equal(
          await Deno.readTextFile(`${path}.fence`),
          `${lock.token} 3\n`,
        );
        // A fence file of one number, as lockbox wrote before, is read by
        // its range: a counter's here, so a FileLock token passes.
        await Deno.writeTextFile(`${path}.fence`, "7\n");
        const next = await FileLock.acquire(`${dir}/leader`);
        await store.update((d) => void d.count++, { fence: next.token });
        await next.release();
        await assert.rejects(
          store.update((d) => void d.count++, { fence: 6 }),
          StaleFenceError,
        );
        assert.equal(
          await Deno.readTextFile(`${path}.fence`),
          `${next.token} 7\n`,
        );
        await Deno.writeTextFile(`${path}.fence`, "7 x\n");
        await assert.rejects(
          store.update((d) => void d.count++, { fence: 8 }),
          (error) =>
            error instanceof StoreError && /reset-fence/.test(error.message),
        );
      });
    },
  );
}

for (const journal of [false, true]) {
  Deno.test(
    `JsonStore.close()${
      journal ? " in journal mode" : ""
    } lets an update in flight close its files as it settles`,
    async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/s.json`;
        const store = new JsonStore<Doc>(path, {
          initial,
          journal,
          keepOpen: true,
        });
        await store.update((d) => void d.count++);
        let proceed!: () => void;
        const gate = new Promise<void>((resolve) => proceed = resolve);
        let entered!: () => void;
        const inside = new Promise<void>((resolve) => entered = resolve);
        const inFlight = store.update(async (d) => {
          entered();
          await gate;
          d.count++;
        });
        await inside;
        await store.close();
        assert.ok(openUnder(dir).length > 0, "the update holds its lock");
        proceed();
        await inFlight;
        assert.deepEqual(openUnder(dir), []);
        assert.equal((await store.read()).count, 2);
        assert.deepEqual(openUnder(dir), []);
      });
    },
  );
}

/**
 * The events of one whole-file update by another process, traced by strace
 * in order: "lock", "fsync-temp", "rename", "unlock", "fsync-dir" and "ack"
 * (the update resolved). Deno fsyncs on a duplicate of the descriptor, so
 * duplicates are followed (closing one releases nothing).
 */
async function traceUpdate(dir: string): Promise<string[]> {
  const path = `${dir}/s.json`;
  // The store exists first, so that the traced update only replaces it.
  const first = await output(Deno.execPath(), {
    args: ["run", "-A", worker("store_update.ts"), path, "1", "a"],
  });
  assert.ok(first.success, new TextDecoder().decode(first.stderr));
  const out = await output("strace", {
    args: [
      "-f",
      "-e",
      "trace=openat,flock,fsync,fdatasync,rename,renameat,renameat2,fcntl,dup,dup2,dup3,close,write",
      "-o",
      `${dir}/trace.txt`,
      Deno.execPath(),
      "run",
      "-A",
      worker("store_update.ts"),
      path,
      "1",
      "b",
    ],
  });
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const lines = straceLines(await Deno.readTextFile(`${dir}/trace.txt`));
  const kindOf = new Map<string, { kind: string; copy: boolean }>();
  const events: string[] = [];
  for (const line of lines) {
    const result = line.match(/= (\d+)$/)?.[1];
    const open = line.match(/openat\(AT_FDCWD, "([^"]+)"/);
    if (open && result) {
      const kind = open[1] === `${path}.lock`
        ? "lock"
        : open[1].endsWith(".lockbox-tmp")
        ? "temp"
        : open[1] === dir
        ? "dir"
        : null;
      if (kind) kindOf.set(result, { kind, copy: false });
      else kindOf.delete(result);
      continue;
    }
    const dup = line.match(/(?:dup\d?\((\d+)|fcntl\((\d+), F_DUPFD)/);
    if (dup && result) {
      const original = kindOf.get(dup[1] ?? dup[2]);
      if (original) kindOf.set(result, { kind: original.kind, copy: true });
      continue;
    }
    const locked = line.match(/flock\((\d+), (LOCK_\w+)/);
    if (locked && kindOf.get(locked[1])?.kind === "lock") {
      events.push(locked[2] === "LOCK_UN" ? "unlock" : "lock");
      continue;
    }
    const sync = line.match(/f(?:data)?sync\((\d+)/);
    if (sync && kindOf.has(sync[1])) {
      events.push(`fsync-${kindOf.get(sync[1])!.kind}`);
      continue;
    }
    const closed = line.match(/close\((\d+)\)/);
    if (closed) {
      const open = kindOf.get(closed[1]);
      if (open?.kind === "lock" && !open.copy) events.push("unlock");
      kindOf.delete(closed[1]);
      continue;
    }
    if (/rename/.test(line) && line.includes(`, "${path}"`)) {
      events.push("rename");
    }
    if (/write\(1, "ack b-0/.test(line)) events.push("ack");
  }
  return events;
}

/** Whether strace runs here. */
async function haveStrace(): Promise<boolean> {
  try {
    return (await output("strace", { args: ["-V"] })).code === 0;
  } catch {
    return false;
  }
}

Deno.test(
  "JsonStore.update() fsyncs the temp file, renames, fsyncs the directory, then releases the lock and resolves (strace)",
  {
    ignore: !await haveStrace(),
  },
  async () => {
    await withTempDir(async (dir) => {
      assert.deepEqual(await traceUpdate(dir), [
        "lock",
        "fsync-temp",
        "rename",
        "fsync-dir",
        "unlock",
        "ack",
      ]);
    });
  },
);
