// The seed systems across real processes: seed 000's 250-process test,
// interop with a Python writer on the same DB, and the archiver's
// single-instance lock.

import assert from "node:assert/strict";
import {
  acquireInstanceLock,
  CaptureGroups,
  LockBusyError,
} from "../../mod.ts";
import {
  Child,
  delay,
  finishAll,
  output,
  spawnWorker,
  withTempDir,
  worker,
} from "../_helpers.ts";

Deno.test("CaptureGroups.addTransaction() from 250 processes keeps all 250 (seed 000's test)", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/capture_groups.json`;
    const groups = new CaptureGroups(db);
    const group = await groups.create();
    const children = Array.from(
      { length: 250 },
      (_, i) => spawnWorker("groups_add.ts", [db, group, `txn-${i}`]),
    );
    await finishAll(children);
    const txns = await groups.transactions(group);
    assert.equal(txns.length, 250);
    assert.equal(new Set(txns).size, 250);
  });
});

Deno.test("CaptureGroups and a Python seed-000 writer on one DB lose nothing on either side", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/capture_groups.json`;
    const groups = new CaptureGroups(db);
    const group = await groups.create("0123456789abcdef");
    const python = Array.from(
      { length: 2 },
      (_, i) =>
        new Child("python3", [
          worker("py_groups.py"),
          db,
          group,
          `py${i}`,
          "60",
        ]),
    );
    const deno = Array.from(
      { length: 3 },
      (_, i) =>
        spawnWorker(
          "groups_add.ts",
          [db, group, ...Array.from({ length: 40 }, (_, j) => `dn${i}-${j}`)],
        ),
    );
    await finishAll([...python, ...deno]);
    const txns = await groups.transactions(group);
    assert.equal(txns.length, 2 * 60 + 3 * 40);
    assert.equal(new Set(txns).size, txns.length);
    // The last writer may have been Python: its file reads back identically,
    // and lockbox writes the same bytes Python's json.dump(indent=2) does.
    const pythonBytes = await Deno.readTextFile(db);
    const parsed = JSON.parse(pythonBytes);
    assert.deepEqual(await groups.get(group), parsed[group]);
    const dumped = await output("python3", {
      args: [
        "-c",
        "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=2), end='')",
        db,
      ],
    });
    await groups.addTransaction(group, "last");
    await groups.delete("nothing-to-delete");
    const ours = await Deno.readTextFile(db);
    const expected = JSON.parse(new TextDecoder().decode(dumped.stdout));
    expected[group].transactions.push("last");
    assert.equal(ours, JSON.stringify(expected, null, 2));
  });
});

Deno.test("acquireInstanceLock() in a second process throws LockBusyError; after SIGKILL a new one succeeds at once", async () => {
  await withTempDir(async (dir) => {
    const lockFile = `${dir}/archiver.lock`;
    const first = spawnWorker("instance_hold.ts", [lockFile], { stdin: true });
    await first.waitFor("locked");
    const second = spawnWorker("instance_hold.ts", [lockFile]);
    const busy = await second.waitFor("busy");
    await second.finish();
    assert.ok(busy.startsWith(`busy ${first.pid} `), busy);
    await assert.rejects(
      acquireInstanceLock(lockFile),
      (e: Error) =>
        e instanceof LockBusyError && e.message.includes(`pid ${first.pid}`),
    );
    await first.kill();
    const instance = await acquireInstanceLock(lockFile);
    assert.ok(await instance.isValid());
    await instance.release();
  });
});

Deno.test("InstanceLock.isValid() turns false and onLost fires when the lock file is removed or replaced", async () => {
  await withTempDir(async (dir) => {
    const lockFile = `${dir}/archiver.lock`;
    const instance = await acquireInstanceLock(lockFile);
    let lost = 0;
    instance.monitor({ intervalMs: 20, onLost: () => lost++ });
    await delay(60);
    assert.equal(lost, 0);
    await Deno.remove(lockFile);
    for (let i = 0; i < 100 && lost === 0; i++) await delay(20);
    assert.equal(lost, 1);
    assert.equal(await instance.isValid(), false);
    await instance.release();

    const second = await acquireInstanceLock(lockFile);
    let lostAgain = 0;
    second.monitor({ intervalMs: 20, onLost: () => lostAgain++ });
    await Deno.writeTextFile(`${dir}/other`, "");
    await Deno.rename(`${dir}/other`, lockFile);
    for (let i = 0; i < 100 && lostAgain === 0; i++) await delay(20);
    assert.equal(lostAgain, 1);
    await delay(60);
    assert.equal(lostAgain, 1, "fires once");
    await second.release();
  });
});
