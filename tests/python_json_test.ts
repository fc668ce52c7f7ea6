// JsonStore's `format: "python"` against Python itself: random documents of
// every kind Python's json writes differently from JavaScript, dumped by
// Python, read and written back unchanged by lockbox, byte for byte; and
// what changes is written as Python would write it.

import assert from "node:assert/strict";
import { appendJsonl, JsonStore, readJsonl } from "../mod.ts";
import { output, withTempDir, worker } from "./_helpers.ts";

/** Python's dumps of `count` random documents, two settings each. */
async function pythonDumps(
  count: number,
): Promise<[number, boolean, number, string][]> {
  const result = await output("python3", {
    args: [worker("py_json_gen.py"), "batch", String(count)],
  });
  assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
  return JSON.parse(new TextDecoder().decode(result.stdout));
}

Deno.test('JsonStore format "python": 60 random Python dumps come back byte for byte after an update elsewhere in the document', async () => {
  await withTempDir(async (dir) => {
    for (const [seed, ensureAscii, indent, text] of await pythonDumps(60)) {
      const path = `${dir}/doc-${seed}-${indent}.json`;
      await Deno.writeTextFile(path, text);
      const store = new JsonStore<Record<string, unknown>>(path, {
        initial: {},
        format: "python",
        ensureAscii,
        indent,
        durable: false,
      });
      // A change, then its undoing: a real write, of the same data.
      await store.update((doc) => void (doc.added = 1));
      await store.update((doc) => void delete doc.added);
      assert.equal(await Deno.readTextFile(path), text, `seed ${seed}`);
    }
  });
});

Deno.test('JsonStore format "python": new values are written as Python writes them', async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    const store = new JsonStore<Record<string, unknown>>(path, {
      initial: {},
      format: "python",
    });
    await store.write({
      small: 1.5e-7,
      big: 1e16,
      float: 0.5,
      nan: NaN,
      inf: -Infinity,
      text: "caf\u00e9\u007f",
      "10": "moved first by JavaScript",
    });
    assert.equal(
      await Deno.readTextFile(path),
      '{\n  "10": "moved first by JavaScript",\n  "small": 1.5e-07,\n  "big": 1e+16,\n  "float": 0.5,\n  "nan": NaN,\n  "inf": -Infinity,\n  "text": "caf\\u00e9\\u007f"\n}',
    );
    const read = await store.read();
    assert.ok(Number.isNaN(read.nan));
    assert.throws(
      () =>
        new JsonStore(path, { initial: {}, format: "python", journal: true }),
      TypeError,
    );
  });
});

Deno.test('appendJsonl and readJsonl with format "python": lines as json.dumps writes them, NaN read back', async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/log.jsonl`;
    await appendJsonl(path, [{ a: 1.0, b: [NaN, "\u00e9"] }], {
      format: "python",
      ensureAscii: false,
    });
    assert.equal(
      await Deno.readTextFile(path),
      '{"a": 1, "b": [NaN, "\u00e9"]}\n',
    );
    const { records, invalid } = await readJsonl<{ b: number[] }>(path, {
      format: "python",
    });
    assert.deepEqual(invalid, []);
    assert.ok(Number.isNaN(records[0].b[0]));
    // Plain JSON cannot read NaN: the line is reported, not dropped.
    assert.equal((await readJsonl(path)).invalid.length, 1);
  });
});
