// The Node runtime layer must be a drop-in for Deno's: the Node build swaps
// one for the other.

import assert from "node:assert/strict";
import * as deno from "../src/runtime/deno.ts";
import * as node from "../src/runtime/node.ts";

// Type-checked by `deno check` and `deno test`: same exports, compatible types.
const _sameShape: typeof deno = node;

Deno.test("_runtime_node.ts exports exactly what _runtime.ts exports", () => {
  assert.deepEqual(Object.keys(node).sort(), Object.keys(deno).sort());
  for (const key of Object.keys(deno) as (keyof typeof deno)[]) {
    assert.equal(typeof node[key], typeof deno[key], key);
  }
});
