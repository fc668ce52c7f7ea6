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
