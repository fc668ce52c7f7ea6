// JsonStore journal mode in one process: replay, repair, refusal, recovery.

import assert from "node:assert/strict";
import {
  CaptureGroups,
  CorruptStoreError,
  JsonStore,
  StaleFenceError,
  StoreError,
} from "../mod.ts";
import { _fnv1a } from "../src/base/checksum.ts";
import {
  delay,
  guarded,
  names,
  openPaths,
  openUnder,
  output,
  seededRandom,
  withFailingFsync,
  withTempDir,
  withTmpfs,
  worker,
} from "./_helpers.ts";

type Doc = Record<string, unknown>;

function open(path: string, options: Partial<Parameters<typeof make>[1]> = {}) {
  return make(path, options);
}
function make(
  path: string,
  options: {
    warnings?: string[];
    onCorrupt?: "throw" | "quarantine";
    compactAt?: number;
    keepOpen?: boolean;
    durable?: boolean;
  },
) {
  return new JsonStore<Doc>(path, {
    initial: () => ({}),
    journal: true,
    durable: options.durable ?? false,
    keepOpen: options.keepOpen,
    compactAt: options.compactAt,
    onCorrupt: options.onCorrupt,
    onWarning: (m) =>
      options.warnings ? options.warnings.push(m) : assert.fail(m),
  });
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/**
 * Does what a compaction does before replacing the snapshot: writes
 * journal.next for `snapshot` and appends a seal line (update `seq`) to the
 * journal.
 */
async function beginCompaction(
  path: string,
  snapshot: string,
  seq: number,
): Promise<void> {
  const next = {
    "lockbox-journal": 1,
    id: "next",
    base: await sha256(snapshot),
  };
  await Deno.writeTextFile(`${path}.journal.next`, JSON.stringify(next) + "\n");
  const seal = `{"n":${seq},"o":[],"seal":"next"}`;
  const bytes = new TextEncoder().encode(seal);
  const sum = _fnv1a(bytes, bytes.length).toString(16).padStart(8, "0");
  await Deno.writeTextFile(`${path}.journal`, `${sum} ${seal}\n`, {
    append: true,
  });
}

Deno.test("JsonStore journal mode replays every kind of change exactly, in another instance", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const writer = open(path);
    const expected = await writer.update((d) => {
      d.list = [1, 2, 3, 4, 5];
      d.obj = { a: { b: 1 }, gone: true, undef: 1 };
      d.__proto__ = { polluted: true };
      return null;
    }).then(() =>
      writer.update((d) => {
        const list = d.list as number[];
        list.push(6);
        list.shift();
        list.splice(1, 1, 9, 9);
        list.reverse();
        list.length = 4;
        const obj = d.obj as Record<string, unknown>;
        delete obj.gone;
        obj.undef = undefined;
        (obj.a as Record<string, unknown>).b = new Date(0);
        obj.nan = NaN;
        obj.late = obj.a; // an alias until the update ends, as in whole-file mode
        (obj.a as Record<string, unknown>).c = 2;
        d.first = "moved"; // a new key goes last
        delete d.list;
        d.list = list.map((n) => n * 10);
        return JSON.parse(JSON.stringify(d));
      })
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const fresh = await open(path).read();
    assert.equal(JSON.stringify(fresh), JSON.stringify(expected));
    assert.deepEqual(Object.keys(fresh), ["obj", "__proto__", "first", "list"]);
    assert.deepEqual((fresh.obj as Doc).late, {
      b: "1970-01-01T00:00:00.000Z",
      c: 2,
    });
    assert.equal((fresh.obj as Doc).nan, null);
    // The journal holds changes, not documents.
    const journal = await Deno.readTextFile(`${path}.journal`);
    assert.equal(journal.trimEnd().split("\n").length, 3);
    assert.match(journal, /\["d",\["obj","gone"\]\]/);
  });
});

Deno.test("JsonStore journal mode: a draft kept past its update can be read but not changed", async () => {
  await withTempDir(async (dir) => {
    const store = open(`${dir}/s.json`);
    let kept: Doc = {};
    await store.update((d) => {
      d.list = [1];
      kept = d;
    });
    assert.deepEqual(kept.list, [1]);
    assert.throws(() => (kept.list as number[]).push(2), TypeError);
    assert.throws(() => void (kept.n = 1), /after its update has ended/);
    assert.throws(() => delete kept.list, TypeError);
    assert.deepEqual(await store.update((d) => JSON.parse(JSON.stringify(d))), {
      list: [1],
    });
  });
});

Deno.test("JsonStore journal mode writes nothing when fn throws, and goes on from the files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path);
    await store.update((d) => void (d.n = 1));
    const before = await Deno.readTextFile(`${path}.journal`);
    await assert.rejects(
      store.update((d) => {
        d.n = 99;
        throw new Error("no");
      }),
      /no/,
    );
    assert.equal(await Deno.readTextFile(`${path}.journal`), before);
    assert.equal(await store.update((d) => (d.n as number) + 1), 2);
    assert.equal((await open(path).read()).n, 1);
  });
});

Deno.test("JsonStore journal mode cuts a torn last line and says so", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await open(path).update((d) => void (d.n = 1));
    await Deno.writeTextFile(`${path}.journal`, '0badc0de {"n":2,"o":[["s"', {
      append: true,
    });
    assert.equal((await open(path).read()).n, 1);
    const warnings: string[] = [];
    const store = open(path, { warnings });
    await store.update((d) => void (d.n = 3));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /Cut a torn last line \(25 bytes\)/);
    assert.equal((await open(path).read()).n, 3);
    assert.ok((await Deno.readTextFile(`${path}.journal`)).endsWith("]]}\n"));
  });
});

Deno.test("JsonStore journal mode refuses a damaged line in the middle, or quarantines it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path);
    for (let n = 1; n <= 3; n++) await store.update((d) => void (d.n = n));
    const journal = `${path}.journal`;
    const text = await Deno.readTextFile(journal);
    const damaged = text.replace('"o":[["s",["n"],2]]', '"o":[["s",["n"],7]]');
    assert.notEqual(damaged, text);
    await Deno.writeTextFile(journal, damaged);
    await assert.rejects(
      open(path).update((d) => void (d.n = 4)),
      (error: unknown) =>
        error instanceof CorruptStoreError &&
        error.message.includes("update 2") &&
        error.message.includes("checksum"),
    );
    await assert.rejects(open(path).read(), CorruptStoreError);
    assert.equal(await Deno.readTextFile(journal), damaged);

    const warnings: string[] = [];
    const healed = open(path, { warnings, onCorrupt: "quarantine" });
    assert.equal((await healed.read()).n, 1); // what the lines before give
    assert.equal(warnings.length, 1);
    const aside = names(dir).find((n) =>
      n.startsWith("s.json.journal.corrupt-")
    );
    assert.ok(aside);
    assert.equal(await Deno.readTextFile(`${dir}/${aside}`), damaged);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { n: 1 });
  });
});

Deno.test("JsonStore journal mode refuses a line that is not UTF-8 even with a good checksum", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await open(path).update((d) => void (d.n = 1));
    // Lines 2 (a string holding the byte 0xff) and 3, both checksummed.
    const line = (json: Uint8Array) => {
      const sum = _fnv1a(json, json.length).toString(16).padStart(8, "0");
      return new Uint8Array([
        ...new TextEncoder().encode(`${sum} `),
        ...json,
        0x0a,
      ]);
    };
    const bad = new TextEncoder().encode('{"n":2,"o":[["s",["n"],"?"]]}');
    bad[bad.indexOf(0x3f)] = 0xff;
    const good = new TextEncoder().encode('{"n":3,"o":[["s",["n"],3]]}');
    await Deno.writeFile(`${path}.journal`, line(bad), { append: true });
    await Deno.writeFile(`${path}.journal`, line(good), { append: true });
    await assert.rejects(
      open(path).update((d) => void (d.n = 4)),
      (error: unknown) =>
        error instanceof CorruptStoreError &&
        error.message.includes("update 2") &&
        error.message.includes("not JSON"),
    );
    const warnings: string[] = [];
    const healed = open(path, { warnings, onCorrupt: "quarantine" });
    assert.equal((await healed.read()).n, 1); // line 1 applied, 2 refused
    assert.equal(warnings.length, 1);
  });
});

Deno.test("JsonStore journal mode refuses a snapshot another writer replaced", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await open(path).update((d) => void (d.n = 1));
    // A whole-file store refuses to write past the journal...
    await assert.rejects(
      new JsonStore<Doc>(path, { initial: {} }).write({ n: 50 }),
      /journal mode/,
    );
    // ...but another tool may still replace the file.
    await Deno.writeTextFile(path, JSON.stringify({ n: 50 }));
    await assert.rejects(
      open(path).update((d) => void (d.n = 2)),
      (error: unknown) =>
        error instanceof CorruptStoreError &&
        error.message.includes("not the snapshot"),
    );
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { n: 50 });
  });
});

Deno.test("JsonStore journal mode finishes a compaction that stopped between its renames", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path);
    for (let n = 1; n <= 3; n++) {
      await store.update((d) => void (d[`k${n}`] = n));
    }
    // What a compaction does before its last rename: journal.next for the new
    // snapshot, a seal line in the old journal, then the snapshot itself.
    const snapshot = JSON.stringify({ k1: 1, k2: 2, k3: 3 }, null, 2);
    await beginCompaction(path, snapshot, 4);
    await Deno.writeTextFile(path, snapshot);
    // The instance that wrote the old journal has it cached, and must still
    // notice.
    await store.update((d) => void (d.k4 = 4));
    await open(path).update((d) => void (d.k5 = 5));
    assert.deepEqual(await open(path).read(), {
      k1: 1,
      k2: 2,
      k3: 3,
      k4: 4,
      k5: 5,
    });
    assert.deepEqual(names(dir), ["s.json", "s.json.journal", "s.json.lock"]);
    assert.match(await Deno.readTextFile(`${path}.journal`), /"id":"next"/);
  });
});

Deno.test("JsonStore journal mode compacts past compactAt, keeping the snapshot a plain document", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path, { compactAt: 300 });
    for (let n = 0; n < 40; n++) {
      await store.update((d) => void (d[`k${n}`] = n));
    }
    const journal = await Deno.stat(`${path}.journal`);
    assert.ok(journal.size < 400, `journal is ${journal.size} bytes`);
    const snapshot = JSON.parse(await Deno.readTextFile(path));
    assert.ok(Object.keys(snapshot).length > 30);
    assert.equal(Object.keys(await store.read()).length, 40);
  });
});

Deno.test("JsonStore journal mode refuses a stale fence", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path);
    await store.update((d) => void (d.n = 1), { fence: 5 });
    await assert.rejects(
      store.update((d) => void (d.n = 2), { fence: 4 }),
      StaleFenceError,
    );
    assert.equal((await store.read()).n, 1);
  });
});

Deno.test("CaptureGroups take { journal: true } and keep seed 000's file shape in the snapshot", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/groups.json`;
    const groups = new CaptureGroups(db, { journal: true, durable: false });
    const id = await groups.create("g");
    for (let i = 0; i < 5; i++) await groups.addTransaction(id, `t${i}`);
    assert.equal(
      (await new CaptureGroups(db, { journal: true }).transactions(id)).length,
      5,
    );
    assert.ok(names(dir).includes("groups.json.journal"));
    const snapshot = JSON.parse(await Deno.readTextFile(db));
    assert.deepEqual(snapshot, {}); // as of the last compaction: before the group
  });
});

Deno.test("JsonStore journal mode keeps the journal when a compaction died before the snapshot", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = open(path);
    for (let n = 1; n <= 3; n++) {
      await store.update((d) => void (d[`k${n}`] = n));
    }
    // Its snapshot would have been this; the old one is still in place.
    const folded = JSON.stringify({ k1: 1, k2: 2, k3: 3 }, null, 2);
    await beginCompaction(path, folded, 4);
    await store.update((d) => void (d.k4 = 4));
    await open(path).update((d) => void (d.k5 = 5));
    assert.deepEqual(Object.keys(await open(path).read()), [
      "k1",
      "k2",
      "k3",
      "k4",
      "k5",
    ]);
    assert.deepEqual(names(dir), ["s.json", "s.json.journal", "s.json.lock"]);
  });
});

Deno.test("JsonStore journal mode: read() writes nothing, before the first update or after", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    assert.deepEqual(await open(path).read(), {});
    assert.deepEqual(names(dir), []);
    await Deno.writeTextFile(path, '{"n": 1}'); // a whole-file store, say
    assert.deepEqual(await open(path).read(), { n: 1 });
    assert.deepEqual(names(dir), ["s.json"]);
    await open(path).update((d) => void (d.n = 2));
    assert.deepEqual(await open(path).read(), { n: 2 });
  });
});

Deno.test("JsonStore journal mode removes the temp files of a writer killed mid-compaction", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await open(path).update((d) => void (d.n = 1));
    await Deno.writeTextFile(`${dir}/.s.json.lockbox-tmp`, '{"half": ');
    await Deno.writeTextFile(`${dir}/s.json.journal.next`, '{"lockbox-jou');
    await open(path).update((d) => void (d.n = 2));
    assert.deepEqual(names(dir), ["s.json", "s.json.journal", "s.json.lock"]);
    assert.equal((await open(path).read()).n, 2);
  });
});

Deno.test("JsonStore journal mode on a full disk: an update rejects only if it did not happen", async () => {
  await withTempDir(async (dir) => {
    const mount = `${dir}/mnt`;
    await withTmpfs(
      mount,
      "1m",
      async () => {
        const path = `${mount}/s.json`;
        const warnings: string[] = [];
        const store = new JsonStore<{ items: Record<string, string> }>(path, {
          initial: { items: {} },
          journal: true,
          compactAt: 200_000,
          onWarning: (message) => warnings.push(message),
        });
        const resolved: string[] = [];
        const rejected: string[] = [];
        for (let i = 0; i < 400 && rejected.length < 20; i++) {
          const id = `item${i}`;
          try {
            await store.update((d) => void (d.items[id] = "x".repeat(3000)));
            resolved.push(id);
          } catch (error) {
            assert.ok(error instanceof StoreError, String(error));
            rejected.push(id);
          }
        }
        assert.ok(rejected.length > 0, "the disk never filled");
        const fresh = new JsonStore<{ items: Record<string, string> }>(path, {
          initial: { items: {} },
          journal: true,
        });
        const saved = Object.keys((await fresh.read()).items);
        // Every acknowledged update is there; no rejected one is.
        assert.deepEqual(saved.sort(), [...resolved].sort());
        // A compaction ran out of space after its update was saved.
        assert.ok(
          warnings.some((w) => /is saved, but folding its journal/.test(w)),
          warnings.join("\n"),
        );
      },
    );
  });
});

/**
 * Earlier quarantines of `file` under every name a quarantine could take in
 * the next `ms` milliseconds: a new one must go beside them, never over.
 */
async function earlierQuarantines(file: string, ms: number): Promise<string[]> {
  const made: string[] = [];
  const now = Date.now();
  for (let t = now; t < now + ms; t++) {
    const stamp = new Date(t).toISOString().replace(/[:.]/g, "-");
    const name = `${file}.corrupt-${stamp}`;
    await Deno.writeTextFile(name, `earlier ${t}`);
    made.push(name);
  }
  return made;
}

Deno.test("JsonStore never lets a quarantine replace an earlier one, journal or whole file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const journal = `${path}.journal`;
    const store = open(path);
    for (let n = 1; n <= 3; n++) await store.update((d) => void (d.n = n));
    const text = await Deno.readTextFile(journal);
    const damaged = text.replace(/"o":\[\["s"/, '"o":[["S"');
    await Deno.writeTextFile(journal, damaged);
    const earlier = await earlierQuarantines(journal, 3_000);
    await open(path, { warnings: [], onCorrupt: "quarantine" }).read();
    for (const name of earlier) {
      assert.match(await Deno.readTextFile(name), /^earlier /, name);
    }
    const asides = names(dir).filter((n) =>
      n.startsWith("s.json.journal.corrupt-")
    );
    assert.equal(asides.length, earlier.length + 1);

    const whole = `${dir}/w.json`;
    await Deno.writeTextFile(whole, "{ broken");
    const before = await earlierQuarantines(whole, 3_000);
    await new JsonStore(whole, {
      initial: {},
      onCorrupt: "quarantine",
      onWarning: () => {},
    }).read();
    for (const name of before) {
      assert.match(await Deno.readTextFile(name), /^earlier /, name);
    }
    const all = names(dir).filter((n) => n.startsWith("w.json.corrupt-"));
    assert.equal(all.length, before.length + 1);
  });
});

Deno.test("JsonStore journal mode refuses backups instead of ignoring them, and a transform may clone its document", async () => {
  await withTempDir(async (dir) => {
    assert.throws(
      () =>
        new JsonStore(`${dir}/s.json`, {
          initial: {},
          journal: true,
          backups: 2,
        }),
      /Cannot keep backups in journal mode/,
    );
    const store = new JsonStore<{ n: number }>(`${dir}/s.json`, {
      initial: { n: 0 },
      journal: true,
    });
    // The draft of a transform is a plain object: structuredClone works.
    await store.transform((d) => ({ ...structuredClone(d), n: d.n + 1 }));
    const size = Deno.statSync(`${dir}/s.json.journal`).size;
    await store.transform((d) => structuredClone(d));
    assert.equal(Deno.statSync(`${dir}/s.json.journal`).size, size);
    assert.deepEqual(await store.read(), { n: 1 });
  });
});

Deno.test("JsonStore journal mode with keepOpen keeps its journal open between updates until close(), and never appends to one moved or replaced meanwhile", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const journal = `${path}.journal`;
    const store = open(path, { warnings: [], keepOpen: true });
    await store.update((d) => {
      d.n = 0; // creates the journal
    });
    await store.update((d) => {
      d.n = 1;
    });
    // Kept open, even once the caller has moved on to other work.
    await delay(10);
    assert.deepEqual(openPaths(".journal"), [journal]);
    // A foreign tool moves it away: the next update must not append there.
    Deno.renameSync(journal, `${dir}/moved.journal`);
    const moved = Deno.readFileSync(`${dir}/moved.journal`);
    await store.update((d) => {
      d.m = 2;
    });
    assert.deepEqual(Deno.readFileSync(`${dir}/moved.journal`), moved);
    assert.equal((await store.read()).m, 2);
    // Replaced by a copy (a new inode at the path): the same.
    await store.update((d) => {
      d.k = 3;
    });
    Deno.copyFileSync(journal, `${journal}.copy`);
    const before = Deno.readFileSync(journal);
    Deno.renameSync(`${journal}.copy`, journal);
    await store.update((d) => {
      d.j = 4;
    });
    assert.equal(Deno.readFileSync(journal).length > before.length, true);
    assert.deepEqual(await store.read(), { m: 2, k: 3, j: 4 });
    await store.close();
    assert.deepEqual(openUnder(dir), []);
  });
});

Deno.test("JsonStore journal mode: update(), read(), a rejected update and concurrent updates leave no descriptor of the store open once they settle", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    for (const durable of [true, false]) {
      const store = open(path, { durable });
      await store.update((d) => void (d.n = 0));
      assert.deepEqual(openUnder(dir), []);
      await store.update((d) => void (d.n = (d.n as number) + 1));
      assert.deepEqual(openUnder(dir), []);
      assert.equal((await store.read()).n, 1);
      assert.deepEqual(openUnder(dir), []);
      await assert.rejects(
        store.update(() => {
          throw new Error("fn failed");
        }),
        /fn failed/,
      );
      assert.deepEqual(openUnder(dir), []);
      // Concurrent updates share the journal (and one fdatasync); the last
      // to settle closes it.
      await Promise.all(
        Array.from(
          { length: 20 },
          () => store.update((d) => void (d.n = (d.n as number) + 1)),
        ),
      );
      assert.deepEqual(openUnder(dir), []);
      assert.equal((await store.read()).n, 21);
      // A compaction on the way.
      const small = open(`${dir}/small.json`, { durable, compactAt: 100 });
      for (let i = 0; i < 10; i++) {
        await small.update((d) => void (d[`k${i}`] = "x".repeat(20)));
        assert.deepEqual(openUnder(dir), []);
      }
    }
  });
});

Deno.test("JsonStore journal mode: a watch reads on from the lines it has, yields copies, and reads everything again when the journal is no longer the one it read", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const journal = `${path}.journal`;
    const header = () =>
      new TextDecoder().decode(Deno.readFileSync(journal)).split("\n")[0];
    const store = open(path);
    for (let n = 1; n <= 3; n++) await store.update((d) => void (d.n = n));
    // The third update's line, taken back out, to be appended by hand.
    const bytes = Deno.readFileSync(journal);
    const cut = bytes.lastIndexOf(0x0a, bytes.length - 2) + 1;
    const line = bytes.slice(cut);
    Deno.truncateSync(journal, cut);

    const controller = new AbortController();
    const versions = store.watch({
      signal: controller.signal,
      recheckInterval: 20,
    })[Symbol.asyncIterator]();
    // Each version comes within a few rechecks; the guard only stops a hang.
    const next = async () =>
      (await guarded(versions.next(), 10_000, "the next version")).value
        ?.value;
    try {
      assert.deepEqual(await next(), { n: 2 });
      // Half a line is no version: several rechecks go by without one.
      Deno.writeFileSync(journal, line.subarray(0, 12), { append: true });
      const pending = next();
      assert.equal(await Promise.race([pending, delay(300)]), undefined);
      Deno.writeFileSync(journal, line.subarray(12), { append: true });
      assert.deepEqual(await pending, { n: 3 });

      // What the watch yields is the caller's: changing it changes nothing
      // the watch yields later.
      const mine = await (async () => {
        await open(path).update((d) => void (d.n = 4));
        return await next();
      })();
      assert.deepEqual(mine, { n: 4 });
      (mine as Doc).mine = true;
      await store.update((d) => void (d.n = 5));
      assert.deepEqual(await next(), { n: 5 });

      // A compaction starts a new journal: read whole, even when the new
      // one has grown past where the watch was, with a line there that
      // looks like the next (same lengths, next sequence number).
      const first = header();
      await open(path, { compactAt: 0 }).update((d) => void (d.x = 1));
      assert.notEqual(header(), first);
      for (const n of [6, 7, 8, 9, 0, 1]) {
        await store.update((d) => void (d.n = n));
      }
      assert.deepEqual(await next(), { n: 1, x: 1 });
      await store.update((d) => void (d.n = 7));
      assert.deepEqual(await next(), { n: 7, x: 1 });

      // A foreign tool cuts the journal back to its header: read whole, as
      // read() does (the snapshot's n is 5).
      Deno.truncateSync(journal, header().length + 1);
      assert.deepEqual(await next(), { n: 5, x: 1 });
      assert.deepEqual(await store.read(), { n: 5, x: 1 });
    } finally {
      controller.abort();
      await versions.return?.();
    }
  });
});

/** The fdatasync calls of a journal_updates.ts run, and what it printed. */
async function countSyncs(
  dir: string,
  count: number,
  mode: "burst" | "sequential",
): Promise<{ syncs: number; printed: string }> {
  const out = await output("strace", {
    args: [
      "-f",
      "-e",
      "trace=fdatasync",
      "-o",
      `${dir}/trace.txt`,
      Deno.execPath(),
      "run",
      "-A",
      worker("journal_updates.ts"),
      `${dir}/${mode}.json`,
      String(count),
      mode,
    ],
  });
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const trace = Deno.readTextFileSync(`${dir}/trace.txt`);
  return {
    syncs:
      trace.split("\n").filter((line) => /fdatasync\(\d+\) += 0/.test(line))
        .length,
    printed: new TextDecoder().decode(out.stdout).trim(),
  };
}

Deno.test("JsonStore journal mode: updates started together in one process share fdatasyncs; one after another, each waits for its own (strace)", async () => {
  await withTempDir(async (dir) => {
    const burst = await countSyncs(dir, 100, "burst");
    assert.equal(burst.printed, "101");
    assert.ok(
      burst.syncs >= 1 && burst.syncs <= 10,
      `${burst.syncs} fdatasyncs for 101 updates`,
    );
    const sequential = await countSyncs(dir, 20, "sequential");
    assert.equal(sequential.printed, "21");
    assert.equal(sequential.syncs, 21);
  });
});

Deno.test("JsonStore journal mode: when the fdatasync updates started together share fails, every one of them rejects", async () => {
  await withTempDir(async (dir) => {
    await withFailingFsync(dir, async (mnt) => {
      // No compaction (its awaits would end the burst early): the ten
      // appends share one fdatasync, and 4 MB do not fit.
      const store = new JsonStore<Doc>(`${mnt}/s.json`, {
        initial: {},
        journal: true,
        compactAt: 1e9,
        onWarning: () => {},
      });
      await store.update((d) => void (d.first = 1));
      const results = await Promise.allSettled(
        Array.from(
          { length: 10 },
          (_, i) =>
            store.update((d) => void (d[`big${i}`] = "x".repeat(400_000))),
        ),
      );
      for (const result of results) {
        assert.equal(result.status, "rejected");
        const error = (result as PromiseRejectedResult).reason;
        assert.ok(error instanceof StoreError, String(error));
        // ENOSPC, or EIO where the block layer reports it so.
        assert.match(
          error.message,
          /fdatasync failed \((No space left|Input\/output error)/,
        );
        assert.match(error.message, /may not survive a power loss/);
      }
    });
  });
});

/**
 * An update fn making random changes, the same ones for the same seed and
 * document: values set, deleted and moved by array methods, objects stored and
 * then changed through the caller's own reference, parts of the document
 * stored in a second place. (Left out: what differs only inside one fn, where
 * whole-file mode's plain object still has JavaScript's holes and undefined
 * and journal mode's draft already has the null both write, so that a sort in
 * the same fn could order them differently.)
 */
function randomChanges(seed: number): (d: Doc) => void {
  // deno-lint-ignore no-explicit-any
  type Any = any;
  return (d) => {
    const random = seededRandom(seed);
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
    const value = (depth = 0): unknown => {
      const r = random();
      if (depth > 2 || r < 0.4) {
        return pick([1, -0, 2.5, "s", "", null, true, false, NaN, Infinity]);
      }
      if (r < 0.55) return new Date(Math.floor(random() * 1e12));
      if (r < 0.75) {
        return Array.from(
          { length: Math.floor(random() * 4) },
          () => value(depth + 1),
        );
      }
      const object: Doc = {};
      for (let i = 0; i < Math.floor(random() * 4); i++) {
        object[pick(["x", "y", "z", "constructor", "0"])] = value(depth + 1);
      }
      return object;
    };
    const kept: Any[] = [];
    for (let change = 0; change < 1 + random() * 4; change++) {
      let c: Any = d;
      for (let i = 0; i < 3; i++) {
        const inner = Object.keys(c).sort().filter((k) =>
          typeof c[k] === "object" && c[k] !== null && !(c[k] instanceof Date)
        );
        if (inner.length === 0 || random() < 0.4) break;
        c = c[pick(inner)];
      }
      const r = random();
      if (Array.isArray(c)) {
        if (r < 0.2) c.push(value());
        else if (r < 0.3) c.pop();
        else if (r < 0.4) c.shift();
        else if (r < 0.5) c.unshift(value());
        else if (r < 0.6) {
          c.splice(Math.floor(random() * 3), Math.floor(random() * 2), value());
        } else if (r < 0.65) c.reverse();
        else if (r < 0.7) c.length = Math.min(c.length, random() * 5 | 0);
        else if (r < 0.75) c[Math.floor(random() * 6)] = value();
        else if (r < 0.8) delete c[Math.floor(random() * 3)];
        else if (r < 0.9) {
          const stored = { k: [1] };
          c.push(stored);
          kept.push(stored);
        } else {
          c.sort((x: unknown, y: unknown) =>
            JSON.stringify(x) < JSON.stringify(y) ? -1 : 1
          );
        }
      } else {
        const key = pick(["p", "q", "r", "constructor", "a", "o", "1"]);
        if (r < 0.4) c[key] = value();
        else if (r < 0.55) delete c[key];
        else if (r < 0.7) {
          const stored = { k: [] as unknown[] };
          c[key] = stored;
          kept.push(stored);
        } else if (r < 0.8 && kept.length > 0) c[key] = pick(kept);
        else if (r < 0.9) {
          const other = pick(
            Object.keys(c).sort().filter((k) => c[k] !== undefined),
          );
          if (typeof c[other] === "object" && c[other] !== null) {
            c[key] = c[other];
          }
        } else c[key] = undefined;
      }
      // Changes through the caller's own references, after storing.
      for (const stored of kept) {
        if (random() < 0.5) {
          stored.k.push(value());
          stored.later = random() < 0.5 ? undefined : 1;
        }
      }
    }
  };
}

/** JSON with every object's keys sorted: key order is not compared. */
function canonical(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : typeof v === "object" && v !== null
      ? Object.fromEntries(
        Object.keys(v).sort().map((k) => [k, sorted((v as Doc)[k])]),
      )
      : v;
  return JSON.stringify(sorted(value));
}

Deno.test("JsonStore journal mode stores what whole-file mode stores, over 600 random updates", async () => {
  await withTempDir(async (dir) => {
    for (const seed of [1, 7, 13]) {
      const initial = () => ({ a: [], o: {} });
      const whole = new JsonStore<Doc>(`${dir}/whole-${seed}.json`, {
        initial,
        durable: false,
      });
      const journalPath = `${dir}/journal-${seed}.json`;
      const journal = new JsonStore<Doc>(journalPath, {
        initial,
        durable: false,
        journal: true,
        compactAt: 2000, // compactions during the run
      });
      const random = seededRandom(seed);
      for (let round = 0; round < 200; round++) {
        const changes = randomChanges(Math.floor(random() * 1e9));
        const where = `seed ${seed}, update ${round + 1}`;
        // A change may close a circle, which JSON cannot hold: both refuse.
        const outcome = (store: JsonStore<Doc>) =>
          store.update(changes).then(
            () => "stored",
            (error: Error) => `${error.name}: nothing written`,
          );
        assert.equal(await outcome(journal), await outcome(whole), where);
        const expected = canonical(await whole.read());
        assert.equal(canonical(await journal.read()), expected, where);
        // Another process's replay, and this process's own cached document.
        const replayed = await new JsonStore<Doc>(journalPath, {
          initial,
          journal: true,
        }).read();
        assert.equal(canonical(replayed), expected, where);
        assert.equal(
          canonical(await journal.update((d) => JSON.parse(JSON.stringify(d)))),
          expected,
          where,
        );
      }
    }
  });
});

Deno.test("JsonStore journal mode: a watch's copies keep an own __proto__ key and are the caller's own", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/copies.json`;
    type Dated = { list: { n: number }[] };
    const store = new JsonStore<Dated>(path, {
      initial: { list: [] },
      journal: true,
    });
    await store.write({ list: [{ n: 1 }] });
    const controller = new AbortController();
    const versions = store.watch({
      signal: controller.signal,
      recheckInterval: 20,
    })
      [Symbol.asyncIterator]();
    const next = async (): Promise<Dated> =>
      (await guarded(versions.next(), 10_000, "the next version")).value!
        .value as Dated;
    try {
      const first = await next();
      first.list[0].n = 99;
      await store.update((d) => {
        d.list.push(JSON.parse('{"__proto__": {"x": 1}, "n": 2}'));
      });
      const second = await next();
      assert.equal(second.list[0].n, 1);
      assert.ok(Object.hasOwn(second.list[1], "__proto__"));
      assert.deepEqual(Object.keys(second.list[1]), ["__proto__", "n"]);
      assert.equal(Object.getPrototypeOf(second.list[1]), Object.prototype);
      second.list[1].n = 7;
      await store.update((d) => void (d.list[0].n = 3));
      const third = await next();
      assert.deepEqual(third.list.map((item) => item.n), [3, 2]);
    } finally {
      controller.abort();
      await versions.return?.();
    }
  });
});
