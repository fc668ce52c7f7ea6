// JsonStore and the capture groups on Node, against the built package.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { lockbox } from "./workers/_lockbox.mjs";

const {
  CaptureGroups,
  CorruptStoreError,
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
