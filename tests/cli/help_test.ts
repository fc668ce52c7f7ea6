// The lockbox program as a whole: --help, --version, each command's --help,
// and usage errors (exit status 2).

import assert from "node:assert/strict";
import { lockbox, ok } from "./_cli.ts";

const COMMANDS = [
  ["run"],
  ["status"],
  ["clean"],
  ["holder"],
  ["store"],
  ["store", "get"],
  ["store", "set"],
  ["store", "delete"],
  ["store", "edit"],
  ["store", "check"],
  ["store", "watch"],
  ["groups"],
  ["groups", "create"],
  ["groups", "add"],
  ["groups", "list"],
  ["groups", "show"],
  ["groups", "delete"],
  ["groups", "prune"],
  ["ops"],
  ["ops", "register"],
  ["ops", "get"],
  ["ops", "list"],
  ["state"],
  ["state", "show"],
  ["state", "next"],
  ["state", "record"],
  ["files"],
  ["files", "list"],
  ["files", "checkout"],
  ["files", "checkin"],
  ["batch"],
  ["migrate"],
  ["completions"],
];

Deno.test("lockbox --help, --version and every command's --help exit 0", async () => {
  const top = await lockbox(["--help"]);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /Exit codes:/);
  const version = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ).version;
  assert.equal((await lockbox(["--version"])).stdout.trim(), version);
  const outputs = await Promise.all(
    COMMANDS.map((command) => lockbox([...command, "--help"])),
  );
  for (const [i, out] of outputs.entries()) {
    assert.equal(out.code, 0, COMMANDS[i].join(" "));
    assert.match(
      out.stdout,
      new RegExp(`^Usage: lockbox ${COMMANDS[i].join(" ")} `),
    );
  }
});

Deno.test("lockbox exits 2 with a usage line on unknown options and missing arguments", async () => {
  const cases = [
    ["run", "--bogus", "x", "true"],
    ["run"],
    ["run", "x"],
    ["run", "-w", "soon", "x", "true"],
    ["status", "--nope"],
    ["holder"],
    ["store", "set", "f.json", "/a"],
    ["groups", "list"],
    ["groups", "--db", "g.json", "add", "id"],
    ["state", "--state", "s.json", "record", "--failed", "3"],
    ["files", "--repo", ".", "--registry", "r.json", "checkout", "x.mcam"],
    ["batch", "a.txt"],
    ["frobnicate"],
  ];
  const outputs = await Promise.all(cases.map((args) => lockbox(args)));
  for (const [i, out] of outputs.entries()) {
    assert.equal(out.code, 2, `${cases[i].join(" ")}: ${out.stderr}`);
    assert.match(out.stderr, /Usage: lockbox/, cases[i].join(" "));
    assert.equal(out.stdout, "", cases[i].join(" "));
  }
});

Deno.test("lockbox --help groups the commands as locks, stores, the seed systems and shell, and says what each seed system does", async () => {
  const help = await ok(["--help"]);
  const groups = [...help.matchAll(/^(\S[^:\n]*):\n((?: {2}.*\n)+)/gm)].map((
    m,
  ) => [
    m[1],
    m[2].split("\n").filter(Boolean).map((l) => l.trim().split(" ")[0]),
  ]);
  assert.deepEqual(
    Object.fromEntries(
      groups.filter(([name]) => name !== "Options" && name !== "Exit codes"),
    ),
    {
      "Locks": ["run", "status", "clean", "holder"],
      "Stores": ["store", "migrate"],
      "The seed systems": ["groups", "ops", "state", "files", "batch"],
      "Shell": ["completions", "help"],
    },
  );
  assert.match(help, /groups \[options\]\s+Capture groups: /);
  assert.match(help, /ops \[options\]\s+Operations: /);
  assert.match(help, /state \[options\]\s+Archiver run state: /);
  assert.match(help, /files \[options\]\s+File checkout: /);
  assert.match(help, /batch \[options\] <file\.\.\.>\s+Batch: /);
  assert.doesNotMatch(help, /^\s+\S+.*\s{2}Seed \d{3}'s/m);
});
