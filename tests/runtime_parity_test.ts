// The Node runtime layer must be a drop-in for Deno's: the Node build swaps
// one for the other.

import assert from "node:assert/strict";
import * as deno from "../src/runtime/deno.ts";
import * as node from "../src/runtime/node.ts";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Type-checked by `deno check` and `deno test`: same exports, compatible types.
const _sameShape: typeof deno = node;

Deno.test("_runtime_node.ts exports exactly what _runtime.ts exports", () => {
  assert.deepEqual(Object.keys(node).sort(), Object.keys(deno).sort());
  for (const key of Object.keys(deno) as (keyof typeof deno)[]) {
    assert.equal(typeof node[key], typeof deno[key], key);
  }
});

Deno.test("_toPath() on Deno gives what node:path's resolve and node:url give", () => {
  const paths = [
    "/",
    "/a",
    "/a/",
    "/a//b",
    "//a",
    "/a/./b",
    "/a/../b",
    "/a/b/.",
    "/a/b/..",
    "/...",
    "/tmp/x y/z.lock",
    "a",
    "job.lock",
    "./a",
    "../a",
    "a/b/",
    "a//b",
    ".",
    "..",
    "...",
    "a\\b",
    " x",
  ];
  const before = Deno.cwd();
  try {
    for (const cwd of [before, "/"]) {
      Deno.chdir(cwd);
      for (const path of paths) {
        assert.equal(deno._toPath(path), resolve(path), `${cwd}: ${path}`);
        assert.equal(node._toPath(path), resolve(path), `${cwd}: ${path}`);
      }
    }
  } finally {
    Deno.chdir(before);
  }
  const url = new URL("file:///tmp/a%20b/c.lock");
  assert.equal(deno._toPath(url), fileURLToPath(url));
  assert.throws(() => deno._toPath(""), TypeError);
  assert.throws(() => deno._toPath(7 as unknown as string), TypeError);
});
