// The public API: what mod.ts (and the ./postgres entry) exports is public, documented, and nothing
// private (a `_` name) leaks into it.

import assert from "node:assert/strict";
import * as lockbox from "../mod.ts";
import * as postgres from "../src/postgres/mod.ts";

Deno.test("mod.ts and the ./postgres entry export nothing private, and the README documents every export", async () => {
  const names = [...Object.keys(lockbox), ...Object.keys(postgres)];
  assert.deepEqual(names.filter((name) => name.startsWith("_")), []);
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  // Named in prose or in an example: a whole word.
  const undocumented = names.filter((name) =>
    !new RegExp(`\\b${name}\\b`).test(readme)
  );
  assert.deepEqual(undocumented, [], "exports the README never names");
});
