// JsonStore and the capture groups on Node, against the built package.

import assert from "node:assert/strict";
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";
import { test } from "node:test";
import { lockbox } from "./workers/_lockbox.mjs";

const {
  appendJsonl,
  CaptureGroups,
  CorruptStoreError,
  FileLock,
  JsonStore,
} = lockbox;
import { nodeWorker, withTempDir } from "./_helpers.mjs";

for (const journal of [false, true]) {
  test(`JsonStore${journal ? " journal mode" : ""} keeps 4 Node processes x 50 updates exact`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.json`;
      const children = Array.from(
        { length: 4 },
        (_, i) =>
          nodeWorker("store_update.mjs", [
            path,
            "50",
            `w${i}`,
            ...(journal ? ["--journal"] : []),
          ]),
      );
      for (const child of children) {
        const { code } = await child.finish();
        assert.equal(code, 0, child.stderr);
      }
      const doc = await new JsonStore(path, { initial: {}, journal }).read();
      assert.equal(doc.count, 200);
      assert.equal(new Set(doc.items).size, 200);
    });
  });
}

test("JsonStore on Node writes and reads back documents below, at and above the 1 MiB read-at-once limit, byte for byte", async () => {
  await withTempDir(async (dir) => {
    // Sizes around the limit (the file is the text plus a newline) and
    // well above it, where reads and writes go through libuv's pool.
    for (
      const size of [
        10,
        2 ** 20 - 40,
        2 ** 20 - 12,
        2 ** 20 + 50,
        5 * 2 ** 20 + 3,
      ]
    ) {
      const path = `${dir}/s${size}.json`;
      const store = new JsonStore(path, { initial: { text: "" }, indent: 0 });
      const text = Array.from(
        { length: size },
        (_, i) => String.fromCharCode(97 + (i * 7) % 26),
      ).join("");
      await store.update((doc) => {
        doc.text = text;
      });
      assert.equal(JSON.parse(readFileSync(path, "utf8")).text, text);
      const again = new JsonStore(path, { initial: { text: "" } });
      assert.equal((await again.read()).text, text);
      // A read-modify-write on top of it sees the whole document.
      await again.update((doc) => {
        doc.text += "!";
      });
      assert.equal(JSON.parse(readFileSync(path, "utf8")).text, `${text}!`);
    }
  });
});

test("JsonStore throws CorruptStoreError on a damaged file and leaves it", async () => {
  await withTempDir(async (dir) => {
    writeFileSync(`${dir}/s.json`, "{nope");
    const store = new JsonStore(`${dir}/s.json`, { initial: {} });
    await assert.rejects(store.update(() => {}), CorruptStoreError);
    assert.equal(readFileSync(`${dir}/s.json`, "utf8"), "{nope");
  });
});

test("CaptureGroups write seed 000's JSON on Node", async () => {
  await withTempDir(async (dir) => {
    const groups = new CaptureGroups(`${dir}/groups.json`);
    const id = await groups.create("g1");
    await groups.addTransaction(id, "t1");
    const db = JSON.parse(readFileSync(`${dir}/groups.json`, "utf8"));
    assert.deepEqual(db.g1.transactions, ["t1"]);
    assert.equal(typeof db.g1.created, "number");
    assert.equal(
      readFileSync(`${dir}/groups.json`, "utf8"),
      JSON.stringify(db, null, 2),
    );
  });
});

test("JsonStore.watch on Node: whole-file and journal, a break and an abort end it with nothing left running", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const store = new JsonStore(`${dir}/w${journal}.json`, {
        initial: { n: 0 },
        journal,
      });
      for await (const { value, version } of store.watch()) {
        assert.deepEqual([value, version], [{ n: 0 }, 1]);
        break;
      }
      const controller = new AbortController();
      const seen = [];
      const watching = (async () => {
        for await (
          const { value } of store.watch({ signal: controller.signal })
        ) {
          seen.push(value.n);
          if (value.n === 3) controller.abort();
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (let i = 0; i < 3; i++) await store.update((d) => void d.n++);
      await watching;
      assert.equal(seen[0], 0);
      assert.equal(seen.at(-1), 3);
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1]);
    }
    // A watcher or timer left open would keep this test file's process
    // alive past the test runner's timeout.
  });
});

/** FNV-1a, 32 bits: the checksum of a journal line. */
function fnv1a(bytes) {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

test("JsonStore journal mode on Node: a journal line naming __proto__ where the document has none is damage, never the prototype", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await new JsonStore(path, { initial: {}, journal: true }).update((d) => {
      d.a = 1;
    });
    // A line another tool could write, with a valid checksum: Node, unlike
    // Deno, reads obj.__proto__ as the prototype.
    const body = Buffer.from(
      '{"n":2,"o":[["s",["__proto__","polluted"],true]]}',
    );
    appendFileSync(
      `${path}.journal`,
      `${fnv1a(body).toString(16).padStart(8, "0")} ${body}\n`,
    );
    await assert.rejects(
      new JsonStore(path, { initial: {}, journal: true }).read(),
      (error) =>
        error instanceof CorruptStoreError &&
        /does not apply/.test(error.message),
    );
    assert.equal({}.polluted, undefined);
  });
});

test("JsonStore, FileLock and appendJsonl on Node make their files 0666 less the umask", async () => {
  await withTempDir(async (dir) => {
    const before = process.umask(0o002);
    try {
      for (const journal of [false, true]) {
        const store = new JsonStore(`${dir}/s-${journal}.json`, {
          initial: { n: 0 },
          journal,
          compactAt: 0,
        });
        await store.update((d) => void d.n++, { fence: 1 });
      }
      await (await FileLock.acquire(`${dir}/job`)).release();
      await appendJsonl(`${dir}/audit.jsonl`, [{ n: 1 }]);
      await appendJsonl(`${dir}/audit.jsonl`, [{ n: 2 }]);
    } finally {
      process.umask(before);
    }
    const names = readdirSync(dir).sort();
    assert.deepEqual(names, [
      "audit.jsonl",
      "audit.jsonl.lock",
      "job.lock",
      "s-false.json",
      "s-false.json.fence",
      "s-false.json.lock",
      "s-true.json",
      "s-true.json.fence",
      "s-true.json.journal",
      "s-true.json.lock",
    ]);
    for (const name of names) {
      assert.equal(lstatSync(`${dir}/${name}`).mode & 0o7777, 0o664, name);
    }
    assert.equal(
      readFileSync(`${dir}/audit.jsonl`, "utf8").split("\n").length,
      3,
    );
  });
});

test("JsonStore.watch on Node watches the store's directory again when it is deleted and made again", async () => {
  await withTempDir(async (dir) => {
    const sub = `${dir}/sub`;
    for (const journal of [false, true]) {
      mkdirSync(sub);
      const store = new JsonStore(`${sub}/s.json`, {
        initial: { n: 0 },
        journal,
      });
      await store.write({ n: 1 });
      const controller = new AbortController();
      // Only the kernel's events can wake it within the test's timeout.
      const versions = store.watch({
        signal: controller.signal,
        recheckInterval: 2 ** 31 - 1,
      })[Symbol.asyncIterator]();
      try {
        const next = async () => (await versions.next()).value?.value;
        assert.deepEqual(await next(), { n: 1 });
        rmSync(sub, { recursive: true });
        assert.deepEqual(await next(), { n: 0 });
        mkdirSync(sub);
        await store.write({ n: 2 });
        assert.deepEqual(await next(), { n: 2 });
        await store.write({ n: 3 });
        assert.deepEqual(await next(), { n: 3 });
      } finally {
        controller.abort();
        await versions.return?.();
      }
      rmSync(sub, { recursive: true });
    }
  });
});
