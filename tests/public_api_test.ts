// The public API: what mod.ts (and the ./postgres entry) exports is public, documented, and nothing
// private (a `_` name) leaks into it.

import assert from "node:assert/strict";
import * as lockbox from "../mod.ts";
import * as postgres from "../src/postgres/mod.ts";

Deno.test("mod.ts and the ./postgres entry export nothing private, and the README or a docs/ page documents every export", async () => {
  const names = [...Object.keys(lockbox), ...Object.keys(postgres)];
  assert.deepEqual(names.filter((name) => name.startsWith("_")), []);
  const docs = new URL("../docs/", import.meta.url);
  const pages = [new URL("../README.md", import.meta.url)];
  for await (const entry of Deno.readDir(docs)) {
    if (entry.name.endsWith(".md")) pages.push(new URL(entry.name, docs));
  }
  const text = (await Promise.all(pages.map((p) => Deno.readTextFile(p))))
    .join("\n");
  // Named in prose or in an example: a whole word.
  const undocumented = names.filter((name) =>
    !new RegExp(`\\b${name}\\b`).test(text)
  );
  assert.deepEqual(undocumented, [], "exports no page names");
});
