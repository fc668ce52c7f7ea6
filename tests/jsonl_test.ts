// JSONL logs: torn tails, bad middle lines, and appends after a crash.

import assert from "node:assert/strict";
import { appendJsonl, readJsonl } from "../mod.ts";
import { modesUnderUmask, openUnder, withTempDir } from "./_helpers.ts";

Deno.test("readJsonl() reports a torn last line and returns the good records", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await Deno.writeTextFile(path, '{"a":1}\n{"a":2}\n{"a":3');
    const log = await readJsonl<{ a: number }>(path);
    assert.deepEqual(log.records, [{ a: 1 }, { a: 2 }]);
    assert.equal(log.torn, 1);
    assert.deepEqual(log.invalid, []);
  });
});

Deno.test("readJsonl() lists a bad line in the middle instead of hiding it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await Deno.writeTextFile(path, '{"a":1}\nnot json\n\n{"a":2}\n');
    const log = await readJsonl(path);
    assert.deepEqual(log.records, [{ a: 1 }, { a: 2 }]);
    assert.equal(log.torn, 0);
    assert.deepEqual(log.invalid, [{ line: 2, text: "not json" }]);
  });
});

Deno.test("readJsonl() of a missing file is an empty log", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await readJsonl(`${dir}/none.jsonl`), {
      records: [],
      torn: 0,
      invalid: [],
    });
  });
});

Deno.test("appendJsonl() after a torn tail keeps the new records whole", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await Deno.writeTextFile(path, '{"a":1}\n{"a":');
    await appendJsonl(path, [{ a: 2 }, { a: 3 }]);
    const log = await readJsonl(path);
    assert.deepEqual(log.records, [{ a: 1 }, { a: 2 }, { a: 3 }]);
    assert.deepEqual(log.invalid, [{ line: 2, text: '{"a":' }]);
    assert.equal(log.torn, 0);
  });
});

Deno.test("appendJsonl() refuses records that are not JSON and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await assert.rejects(appendJsonl(path, [{ ok: 1 }, { n: 1n }]), TypeError);
    await assert.rejects(appendJsonl(path, [undefined]), TypeError);
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  });
});

Deno.test("appendJsonl() makes a log and its lock file 0666 less the umask", async () => {
  await withTempDir(async (dir) => {
    const modes = await modesUnderUmask(0o002, dir, async () => {
      await appendJsonl(`${dir}/audit.jsonl`, [{ n: 1 }]);
      await appendJsonl(`${dir}/audit.jsonl`, [{ n: 2 }]);
    });
    assert.deepEqual(modes, {
      "audit.jsonl": "664",
      "audit.jsonl.lock": "664",
    });
  });
});

Deno.test("appendJsonl() leaves no descriptor of the log or its lock open once it resolves", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await appendJsonl(path, [{ a: 1 }]);
    assert.deepEqual(openUnder(dir), []);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => appendJsonl(path, [{ b: i }])),
    );
    assert.deepEqual(openUnder(dir), []);
    assert.equal((await readJsonl(path)).records.length, 11);
    assert.deepEqual(openUnder(dir), []);
  });
});
