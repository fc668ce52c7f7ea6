// Deno, Node and Python processes on the same lock files: the Node builds
// (dist/npm, the bundle from `deno task build:npm --install`, and
// dist/node-src, each module transpiled on its own as JSR serves Node, from
// `deno task build:node-sources --install`) and the Deno source exclude each
// other, and a Python fcntl.flock holder excludes Node.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { FileLock, isLocked } from "../../mod.ts";
import {
  Child,
  finishAll,
  spawnWorker,
  withTempDir,
  worker,
} from "../_helpers.ts";

const NODE_WORKERS = new URL("../node/workers/", import.meta.url);
/** The Node builds, by the task that makes each. */
const BUILDS = {
  "build:npm": new URL("../../dist/npm/", import.meta.url),
  "build:node-sources": new URL("../../dist/node-src/", import.meta.url),
};

function nodeWorker(
  name: string,
  args: string[],
  stdin = false,
  build: keyof typeof BUILDS = "build:npm",
): Child {
  const dir = BUILDS[build];
  try {
    Deno.statSync(new URL("node_modules/koffi/", dir));
  } catch {
    throw new Error(
      `The Node build in ${
        fileURLToPath(dir)
      } is missing: run \`deno task ${build} --install\` first (deno task test does)`,
    );
  }
  return new Child(
    "node",
    [fileURLToPath(new URL(name, NODE_WORKERS)), ...args],
    { stdin, env: { LOCKBOX_NODE_PACKAGE: fileURLToPath(dir) } },
  );
}

for (const build of Object.keys(BUILDS) as (keyof typeof BUILDS)[]) {
  Deno.test(`Deno and Node (${build}) processes incrementing one counter under FileLock keep every increment`, async () => {
    await withTempDir(async (dir) => {
      const counter = `${dir}/counter`;
      await finishAll([
        spawnWorker("increment.ts", [counter, "100"]),
        spawnWorker("increment.ts", [counter, "100"]),
        nodeWorker("increment.mjs", [counter, "100"], false, build),
        nodeWorker("increment.mjs", [counter, "100"], false, build),
      ]);
      assert.equal(await Deno.readTextFile(counter), "400");
    });
  });
}

Deno.test("a Node holder excludes Deno, and a Deno holder excludes Node", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const node = nodeWorker("hold.mjs", [path], true);
    try {
      await node.waitFor("locked");
      assert.equal(await FileLock.tryAcquire(path), null);
      assert.equal(await isLocked(path), true);
    } finally {
      await node.finish();
    }
    const deno = spawnWorker("hold.ts", [path], { stdin: true });
    try {
      await deno.waitFor("locked");
      const tried = nodeWorker("try.mjs", [path]);
      assert.deepEqual((await finishAll([tried]))[0], ["busy"]);
    } finally {
      await deno.send("release");
      await deno.finish();
    }
    const free = nodeWorker("try.mjs", [path]);
    assert.deepEqual((await finishAll([free]))[0], ["acquired"]);
  });
});

Deno.test("a Python fcntl.flock holder excludes Node", async () => {
  await withTempDir(async (dir) => {
    const lockFile = `${dir}/db.json.lock`;
    const python = new Child("python3", [
      worker("py_flock.py"),
      lockFile,
      "hold",
    ], {
      stdin: true,
    });
    try {
      await python.waitFor("locked");
      const tried = nodeWorker("try.mjs", [`${dir}/db.json`]);
      assert.deepEqual((await finishAll([tried]))[0], ["busy"]);
    } finally {
      await python.finish();
    }
    const free = nodeWorker("try.mjs", [`${dir}/db.json`]);
    assert.deepEqual((await finishAll([free]))[0], ["acquired"]);
  });
});
