// `lockbox groups`, `ops`, `state` and `files`: the seed systems' files
// driven from the shell.

import assert from "node:assert/strict";
import { withTempDir } from "../_helpers.ts";
import { lockbox } from "./_cli.ts";

Deno.test("lockbox groups, ops, state and files drive the seed systems' files", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/groups.json`;
    const id = (await lockbox(["groups", "--db", db, "create"])).stdout.trim();
    assert.match(id, /^[0-9a-f]{16}$/);
    assert.equal(
      (await lockbox(["groups", "--db", db, "add", id, "t1", "t2"])).code,
      0,
    );
    const shown = JSON.parse(
      (await lockbox(["groups", "--db", db, "show", id])).stdout,
    );
    assert.deepEqual(shown.transactions, ["t1", "t2"]);
    assert.equal(
      (await lockbox(["groups", "--db", db, "show", "missing"])).code,
      1,
    );
    const ops = ["ops", "--db", `${dir}/ops.json`, "--groups-db", db];
    const op = (await lockbox([...ops, "register", id])).stdout.trim();
    assert.equal((await lockbox([...ops, "get", op])).stdout.trim(), id);
    assert.equal((await lockbox([...ops, "register", "missing"])).code, 1);
    assert.equal(
      (await lockbox(["groups", "--db", db, "prune", "--older-than", "1h"]))
        .stdout,
      "",
    );
    assert.equal(
      (await lockbox(["groups", "--db", db, "list"])).stdout.trim(),
      id,
    );

    const state = [
      "state",
      "--state",
      `${dir}/state.json`,
      "--failures",
      `${dir}/fail.log`,
    ];
    const recorded = await lockbox([
      ...state,
      "record",
      "--succeeded",
      "101,102,104-105",
      "--failed",
      "103",
    ]);
    assert.equal(recorded.code, 0, recorded.stderr);
    assert.deepEqual(JSON.parse(recorded.stdout), {
      last_contiguous_run: 102,
      last_attempted_run: 105,
    });
    assert.equal((await lockbox([...state, "next"])).stdout.trim(), "105");
    assert.equal(await Deno.readTextFile(`${dir}/fail.log`), "103\n");
    assert.equal(
      (await lockbox([...state, "record", "--succeeded", "1-x"])).code,
      2,
    );

    await Deno.mkdir(`${dir}/repo`);
    await Deno.writeTextFile(`${dir}/repo/part.mcam`, "G0");
    const files = [
      "files",
      "--repo",
      `${dir}/repo`,
      "--registry",
      `${dir}/reg.json`,
    ];
    assert.equal(
      (await lockbox([
        ...files,
        "checkout",
        "part.mcam",
        "--user",
        "ann",
        "-m",
        "fix",
      ])).code,
      0,
    );
    const taken = await lockbox([
      ...files,
      "checkout",
      "part.mcam",
      "--user",
      "bob",
    ]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /checked out by ann/);
    assert.match(
      (await lockbox([...files, "list"])).stdout,
      /^part\.mcam\t2\t.*\tchecked out by ann\n$/,
    );
    assert.equal(
      (await lockbox([...files, "checkin", "part.mcam", "--user", "bob"])).code,
      1,
    );
    // A name that leaves the repository is a malformed argument: usage.
    assert.equal(
      (await lockbox([...files, "checkout", "../x.mcam", "--user", "bob"]))
        .code,
      2,
    );
    assert.equal(
      (await lockbox([...files, "checkin", "part.mcam", "--user", "ann"])).code,
      0,
    );
  });
});
