// migrateFileStore against Python itself: random documents of every kind
// Python's json writes differently from JavaScript, dumped by Python,
// migrated, and read back from the json column by Python as it wrote them.

import assert from "node:assert/strict";
import { output, withTempDir, worker } from "../_helpers.ts";
import { pgSuite } from "./_cluster.ts";
import { migrateFileStore, PostgresBackend } from "../../src/postgres/mod.ts";

const { test: pgTest, stopAfterwards } = pgSuite("migrate");

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

pgTest(
  "migrateFileStore() stores random Python dumps so that Python reads every value back as it wrote it, and a second run finds them the same",
  async (c) => {
    const generated = await output("python3", {
      args: [worker("py_json_gen.py"), "batch", "300"],
    });
    assert.equal(generated.code, 0, decode(generated.stderr));
    // NaN and Infinity have no place in JSON: migrate refuses them (tested
    // with the CLI); the rest (about one in twelve) go in.
    const dumps = (JSON.parse(decode(generated.stdout)) as [
      number,
      boolean,
      number,
      string,
    ][]).filter(([, , , text]) => !/NaN|Infinity/.test(text));
    assert.ok(dumps.length >= 30, `only ${dumps.length} dumps without NaN`);
    await withTempDir(async (dir) => {
      await using db = await PostgresBackend.connect(c.url);
      for (const [seed, , indent, text] of dumps) {
        const path = `${dir}/doc-${seed}-${indent}.json`;
        await Deno.writeTextFile(path, text);
        const result = await migrateFileStore(
          db,
          path,
          `random/${seed}-${indent}`,
        );
        assert.equal(result.outcome, "copied");
        assert.equal(await Deno.readTextFile(path), text);
      }
      for (const [seed, , indent] of dumps) {
        const again = await migrateFileStore(
          db,
          `${dir}/doc-${seed}-${indent}.json`,
          `random/${seed}-${indent}`,
        );
        assert.equal(again.outcome, "same", `seed ${seed}`);
      }
      const stored = JSON.parse(
        await c.sql(
          "SELECT json_object_agg(name, value::text) FROM lockbox.documents WHERE name LIKE 'random/%'",
        ),
      ) as Record<string, string>;
      const cases = dumps.map(([seed, ensureAscii, indent, text]) => [
        stored[`random/${seed}-${indent}`],
        ensureAscii,
        indent,
        text,
      ]);
      await Deno.writeTextFile(`${dir}/cases.json`, JSON.stringify(cases));
      const checked = await output("python3", {
        args: [
          "-c",
          `import json, sys
cases = json.load(open(sys.argv[1]))
bad = [text for stored, ea, ind, text in cases
       if json.dumps(json.loads(stored), indent=ind, ensure_ascii=ea) != text]
print(len(cases), len(bad))
for text in bad[:3]:
    print(text)`,
          `${dir}/cases.json`,
        ],
      });
      assert.equal(checked.code, 0, decode(checked.stderr));
      assert.equal(decode(checked.stdout).trim(), `${dumps.length} 0`);
    });
  },
);

stopAfterwards();
