// The test task's report of the first failure (scripts/test.ts), on the
// real output of `deno test` and of `node --test --test-reporter=tap`.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { firstFailure, type Job, schedule } from "../scripts/test.ts";
import { output, withTempDir } from "./_helpers.ts";

const SCRIPT = fileURLToPath(new URL("../scripts/test.ts", import.meta.url));
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** What `command` printed, stdout and stderr, in `dir`. */
async function log(dir: string, command: string, args: string[]) {
  const out = await output(command, {
    args,
    cwd: dir,
    env: { NO_COLOR: "1" },
  });
  assert.equal(out.success, false, "the run has a failing test");
  return decode(out.stdout) + decode(out.stderr);
}

Deno.test("firstFailure() gives the first failing Deno test whole: its name, file, error and output", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/a_test.ts`,
      `import assert from "node:assert/strict";
Deno.test("Early.pass() passes", () => {});
Deno.test("Early.fail() fails first", () => {
  console.log("printed by the test\\n\\nafter a blank line");
  assert.deepEqual({ marker: 1 }, { marker: 2 }, "the first assertion");
});
Deno.test("Late.fail() fails second", () => {
  throw new Error("the second error");
});
`,
    );
    const text = await log(dir, Deno.execPath(), [
      "test",
      "--no-check",
      "a_test.ts",
    ]);
    const block = firstFailure(text);
    assert.ok(block !== null, text);
    assert.match(block, /^Early\.fail\(\) fails first => \.\/a_test\.ts:3:6$/m);
    assert.match(block, /AssertionError: the first assertion/);
    assert.match(block, /\+ {3}marker: 1\n- {3}marker: 2/);
    assert.match(block, /printed by the test\n\nafter a blank line/);
    assert.doesNotMatch(block, /the second error|Late\.fail/);
  });
});

Deno.test("firstFailure() gives the first failing node --test test's whole not ok block, not its suite's", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/b.test.mjs`,
      `import assert from "node:assert/strict";
import { describe, test } from "node:test";
test("passes", () => {});
describe("a suite", () => {
  test("inner fails first", () => assert.equal("left", "right"));
});
test("top fails second", () => { throw new Error("the second error"); });
`,
    );
    const text = await log(dir, "node", [
      "--test",
      "--test-reporter=tap",
      "b.test.mjs",
    ]);
    const block = firstFailure(text);
    assert.ok(block !== null, text);
    assert.match(block, /^ *not ok 1 - inner fails first$/m);
    assert.match(block, /location: '.*\/b\.test\.mjs:5:3'/);
    assert.match(block, /\+ 'left'\n *- 'right'/);
    assert.match(block, /stack: \|-/);
    assert.match(block, /^ *\.\.\.$/m, "up to the end of its YAML block");
    assert.doesNotMatch(block, /subtestsFailed|the second error/);
  });
});

Deno.test("firstFailure() is null for a log without a failure, and --first-failure exits 1 on it", async () => {
  await withTempDir(async (dir) => {
    const text = "running 1 test from ./a_test.ts\nx ... ok (1ms)\n\n" +
      "ok | 1 passed | 0 failed (5ms)\n\nTAP version 13\nok 1 - y\n# fail 0\n";
    assert.equal(firstFailure(text), null);
    await Deno.writeTextFile(`${dir}/ok.log`, text);
    const out = await output(Deno.execPath(), {
      args: ["run", "--allow-read", SCRIPT, "--first-failure", `${dir}/ok.log`],
    });
    assert.equal(out.code, 1);
    assert.equal(decode(out.stdout), "");
  });
});

Deno.test("scripts/test.ts --first-failure prints the first failure of a deno test log", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/c_test.ts`,
      `Deno.test("Only.fail() fails", () => { throw new Error("the error"); });\n`,
    );
    await Deno.writeTextFile(
      `${dir}/c.log`,
      await log(dir, Deno.execPath(), ["test", "--no-check", "c_test.ts"]),
    );
    const out = await output(Deno.execPath(), {
      args: ["run", "--allow-read", SCRIPT, "--first-failure", `${dir}/c.log`],
    });
    assert.equal(out.code, 0);
    assert.match(
      decode(out.stdout),
      /^Only\.fail\(\) fails => \.\/c_test\.ts:1:6\nerror: Error: the error\n/,
    );
  });
});

Deno.test("schedule() takes the CLI's test files in turn with the other slow kinds, before the in-process tests", () => {
  const job = (name: string): Job => ({
    name,
    kind: name.startsWith("tests/node/") ? "node" : "deno",
    command: "true",
    args: [],
  });
  const names = [
    "tests/json_store_test.ts",
    "tests/cli/run_test.ts",
    "tests/node/lock.test.mjs (dist/npm)",
    "tests/multiprocess/file_lock_test.ts",
    "tests/postgres/lock_test.ts",
  ];
  assert.deepEqual(schedule(names.map(job)).map((j) => j.name), [
    "tests/postgres/lock_test.ts",
    "tests/multiprocess/file_lock_test.ts",
    "tests/cli/run_test.ts",
    "tests/node/lock.test.mjs (dist/npm)",
    "tests/json_store_test.ts",
  ]);
});
