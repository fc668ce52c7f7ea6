// `lockbox run` without commander: the usual forms are read exactly as the
// full program reads them, and every other form is left to it.

import assert from "node:assert/strict";
import type { Command } from "commander";
import { _quickRunArgs } from "../src/cli/_run.ts";
import { _program } from "../src/cli/_program.ts";

/** What the full program's `run` hands its action for `args`. */
async function fullParse(args: string[]): Promise<unknown> {
  const program = await _program(undefined, "run");
  const run = program.commands.find((c: Command) => c.name() === "run")!;
  let seen: unknown = null;
  run.action((lockfile: string, argv: string[], options: object) => {
    seen = { lockfile, argv, options: { ...options } };
  });
  await program.parseAsync(["run", ...args], { from: "user" });
  return seen;
}

const USUAL = [
  ["/tmp/job.lock", "true"],
  ["-n", "/tmp/job.lock", "./backup.sh", "--full", "-n"],
  ["-s", "-w", "2.5", "-E", "7", "job.lock", "make", "-j4"],
  ["--shared", "--exclusive", "--timeout", "10", "job.lock", "true"],
  ["-x", "--nonblock", "--conflict-exit-code", "0", "9", "echo", "hi"],
  ["-o", "--no-record-command", "--verbose", "job.lock", "sh", "-c", "x"],
  ["-F", "--no-fork", "job.lock", "echo", "--help"],
  ["--close", "-w", "0", "-w", "3", "job.lock", "true"],
  ["-E", "255", "", "true"],
];

Deno.test("_quickRunArgs() reads the usual forms of lockbox run as the full program does", async () => {
  for (const args of USUAL) {
    const quick = _quickRunArgs(args);
    assert.ok(quick !== null, `not read: ${args.join(" ")}`);
    assert.deepEqual(quick, await fullParse(args), args.join(" "));
  }
});

Deno.test("_quickRunArgs() leaves every other form of lockbox run to the full program", () => {
  const others = [
    [],
    ["job.lock"],
    ["9"],
    ["-n", "9"],
    ["-u", "9"],
    ["--help"],
    ["-h", "job.lock", "true"],
    ["job.lock", "-c", "echo hi"],
    ["-c", "echo hi", "job.lock"],
    ["--command", "echo hi", "job.lock"],
    ["--db", "env", "nightly", "true"],
    ["-nx", "job.lock", "true"],
    ["-w5", "job.lock", "true"],
    ["--timeout=5", "job.lock", "true"],
    ["-w", "x", "job.lock", "true"],
    ["-w", "-1", "job.lock", "true"],
    ["-w", " 5", "job.lock", "true"],
    ["-E", "256", "job.lock", "true"],
    ["-E", "1.5", "job.lock", "true"],
    ["-w"],
    ["--", "job.lock", "true"],
    ["-", "job.lock", "true"],
    ["--bogus", "job.lock", "true"],
    ["-F", "-o", "job.lock", "true"],
  ];
  for (const args of others) {
    assert.equal(_quickRunArgs(args), null, args.join(" "));
  }
});

Deno.test("_main() loads none of Node's built-in modules for lockbox run on Deno", async () => {
  // Loading any of them (an import, a look at globalThis.process, Deno's
  // timers behind a first clearInterval) starts Deno's Node compatibility
  // layer, a large part of `lockbox run`'s start-up (docs/benchmarks.md).
  // V8's code log names every script the process compiles.
  const dir = await Deno.makeTempDir({ prefix: "lockbox_quick_run_" });
  try {
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    for (const flags of [["-n"], [], ["-w", "5"], ["-o"], ["-s"]]) {
      const log = `${dir}/v8.log`;
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          `--v8-flags=--log-code,--logfile=${log},--no-logfile-per-isolate`,
          cli,
          "run",
          ...flags,
          `${dir}/job.lock`,
          "true",
        ],
        stdin: "null",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const loaded = (await Deno.readTextFile(log)).split("\n")
        .filter((line) => /^code-creation,(Script|Eval),/.test(line))
        .filter((line) => / node:|ext:deno_node\//.test(line))
        .map((line) => line.split(",")[6]);
      assert.deepEqual(loaded, [], `lockbox run ${flags.join(" ")}`);
      await Deno.remove(log);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
