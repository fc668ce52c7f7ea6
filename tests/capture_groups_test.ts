// Capture groups and operations: seed 000's behaviour and file format.

import assert from "node:assert/strict";
import {
  CaptureGroups,
  CheckoutRegistry,
  CorruptStoreError,
  GroupNotFoundError,
  NotCheckedOutError,
  Operations,
} from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("CaptureGroups.create() makes a 16-hex id and leaves an existing group as it is", async () => {
  await withTempDir(async (dir) => {
    const groups = new CaptureGroups(`${dir}/groups.json`);
    const id = await groups.create();
    assert.match(id, /^[0-9a-f]{16}$/);
    await groups.addTransaction(id, "t1");
    assert.equal(await groups.create(id), id);
    assert.deepEqual(await groups.transactions(id), ["t1"]);
    assert.equal(await groups.create("custom"), "custom");
    assert.deepEqual((await groups.list()).sort(), [id, "custom"].sort());
  });
});

Deno.test("CaptureGroups keeps seed 000's file format byte for byte", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/groups.json`;
    const groups = new CaptureGroups(path);
    await groups.create("abcd");
    await groups.addTransaction("abcd", "t1");
    await groups.addTransaction("abcd", "t1");
    const created = (await groups.get("abcd"))!.created;
    assert.ok(Math.abs(created - Date.now() / 1000) < 60);
    assert.equal(
      await Deno.readTextFile(path),
      `{\n  "abcd": {\n    "created": ${created},\n    "transactions": [\n      "t1"\n    ]\n  }\n}`,
    );
    assert.ok((await Deno.lstat(`${path}.lock`)).isFile);
  });
});

Deno.test("CaptureGroups.addTransaction() throws GroupNotFoundError for a missing group", async () => {
  await withTempDir(async (dir) => {
    const groups = new CaptureGroups(`${dir}/groups.json`);
    await assert.rejects(
      groups.addTransaction("missing", "t1"),
      (e: Error) =>
        e instanceof GroupNotFoundError && e.message.includes("missing"),
    );
    assert.deepEqual(await groups.transactions("missing"), []);
    assert.equal(await groups.get("missing"), undefined);
  });
});

Deno.test("CaptureGroups.delete() and pruneOlderThan() remove groups", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/groups.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        old: { created: 1000, transactions: ["a"] },
        new: { created: Math.floor(Date.now() / 1000), transactions: [] },
      }),
    );
    const groups = new CaptureGroups(path);
    assert.deepEqual(await groups.pruneOlderThan(3600), ["old"]);
    assert.deepEqual(await groups.list(), ["new"]);
    assert.equal(await groups.delete("new"), true);
    assert.equal(await groups.delete("new"), false);
    assert.deepEqual(await groups.list(), []);
  });
});

Deno.test("CaptureGroups refuses ids that are not non-empty strings", async () => {
  await withTempDir(async (dir) => {
    const groups = new CaptureGroups(`${dir}/groups.json`);
    await assert.rejects(groups.create(""), TypeError);
    // @ts-expect-error: not a string
    await assert.rejects(groups.addTransaction(5, "t"), TypeError);
    await assert.rejects(groups.addTransaction("g", ""), TypeError);
    await assert.rejects(groups.transactions(""), TypeError);
    await assert.rejects(groups.pruneOlderThan(-1), RangeError);
  });
});

Deno.test("CaptureGroups and Operations throw on a corrupt DB and leave it untouched", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/groups.json`;
    await Deno.writeTextFile(path, '{"g": {"created": "yesterday"}}');
    const groups = new CaptureGroups(path);
    await assert.rejects(groups.list(), CorruptStoreError);
    await assert.rejects(groups.create("x"), CorruptStoreError);
    assert.equal(
      await Deno.readTextFile(path),
      '{"g": {"created": "yesterday"}}',
    );
    const opsPath = `${dir}/ops.json`;
    await Deno.writeTextFile(opsPath, "{oops");
    const ops = new Operations(opsPath, {
      groups: new CaptureGroups(`${dir}/g2.json`),
    });
    await assert.rejects(ops.list(), CorruptStoreError);
    await assert.rejects(ops.captureGroupOf("x"), CorruptStoreError);
    assert.equal(await Deno.readTextFile(opsPath), "{oops");
  });
});

Deno.test("Operations.register() needs an existing group and records seed 000's shape", async () => {
  await withTempDir(async (dir) => {
    const groups = new CaptureGroups(`${dir}/groups.json`);
    const ops = new Operations(`${dir}/ops.json`, { groups });
    await assert.rejects(ops.register("nope"), GroupNotFoundError);
    const group = await groups.create();
    const op = await ops.register(group);
    assert.match(op, /^[0-9a-f]{16}$/);
    assert.equal(await ops.captureGroupOf(op), group);
    assert.equal(await ops.captureGroupOf("unknown"), undefined);
    assert.deepEqual(await ops.list(), [op]);
    const file = JSON.parse(await Deno.readTextFile(`${dir}/ops.json`));
    assert.deepEqual(Object.keys(file[op]), ["capture_group_id", "created"]);
    assert.equal(file[op].capture_group_id, group);
  });
});

Deno.test("ids that are built-in property names (constructor, toString, __proto__) are ids like any other", async () => {
  await withTempDir(async (dir) => {
    const builtins = ["constructor", "toString", "__proto__", "hasOwnProperty"];
    const groups = new CaptureGroups(`${dir}/groups.json`);
    for (const id of builtins) {
      assert.equal(await groups.get(id), undefined, `${id} before create`);
      assert.deepEqual(await groups.transactions(id), []);
      await assert.rejects(groups.addTransaction(id, "t"), GroupNotFoundError);
      assert.equal(await groups.delete(id), false);
    }
    const ops = new Operations(`${dir}/ops.json`, { groups });
    await assert.rejects(ops.register("toString"), GroupNotFoundError);
    assert.equal(await ops.captureGroupOf("constructor"), undefined);
    for (const id of builtins) {
      assert.equal(await groups.create(id), id);
      await groups.addTransaction(id, `t-${id}`);
    }
    const db = JSON.parse(await Deno.readTextFile(`${dir}/groups.json`));
    for (const id of builtins) {
      assert.ok(Object.hasOwn(db, id), `${id} written`);
      assert.deepEqual(await groups.transactions(id), [`t-${id}`]);
    }
    assert.deepEqual(await groups.list(), builtins);
    assert.match(await ops.register("__proto__"), /^[0-9a-f]{16}$/);

    const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
    assert.equal(await registry.holder("constructor"), undefined);
    await assert.rejects(
      registry.checkin("toString", "ann"),
      NotCheckedOutError,
    );
    await registry.checkout("constructor", "ann");
    assert.equal((await registry.holder("constructor"))?.user, "ann");
    await registry.checkin("constructor", "ann");
    assert.equal(await registry.holder("constructor"), undefined);
  });
});
