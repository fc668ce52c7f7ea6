// Ways to install the `lockbox` command that work offline, tried as a user
// would: `deno task install:cli` (deno install with the config) into a fresh
// DENO_INSTALL_ROOT, run from elsewhere; and what `lockbox run` loads.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { output, withTempDir } from "../_helpers.ts";
import { VERSION } from "../../src/cli/_version.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = `${ROOT}cli.ts`;
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Whether `command` can be started here. */
async function have(command: string): Promise<boolean> {
  try {
    await output(command, { args: ["--version"] });
    return true;
  } catch {
    return false;
  }
}

Deno.test("deno task install:cli installs a lockbox that runs --help, --version and run from another directory", async () => {
  await withTempDir(async (dir) => {
    const env = {
      DENO_INSTALL_ROOT: `${dir}/root`,
      // The shim runs `deno`: the one running these tests, first on PATH.
      PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH")}`,
    };
    const install = await output(Deno.execPath(), {
      args: ["task", "--quiet", "install:cli"],
      cwd: ROOT,
      env,
    });
    assert.equal(install.code, 0, decode(install.stderr));
    const lockbox = `${dir}/root/bin/lockbox`;
    assert.ok(existsSync(lockbox), decode(install.stderr));

    const help = await output(lockbox, { args: ["--help"], cwd: dir, env });
    assert.equal(help.code, 0, decode(help.stderr));
    assert.match(decode(help.stdout), /^Usage: lockbox /);
    assert.match(decode(help.stdout), /\n {2}run \[options\] <lockfile>/);
    const version = await output(lockbox, {
      args: ["--version"],
      cwd: dir,
      env,
    });
    assert.equal(decode(version.stdout).trim(), VERSION);

    // The command finds the lock file held (flock -n -E 7 exits 7).
    const lock = `${dir}/job.lock`;
    const run = await output(lockbox, {
      args: ["run", "-n", lock, "flock", "-n", "-E", "7", lock, "true"],
      cwd: dir,
      env,
    });
    assert.equal(run.code, 7, decode(run.stderr));
    const free = await output("flock", {
      args: ["-n", "-E", "7", lock, "true"],
    });
    assert.equal(free.code, 0);
  });
});

/** The lockbox modules a run of the CLI evaluates (their emitted code read from Deno's cache). */
async function modulesLoaded(args: string[]): Promise<string[]> {
  return await withTempDirResult(async (dir) => {
    const trace = `${dir}/trace`;
    const out = await output("strace", {
      args: [
        "-f",
        "-qq",
        "-e",
        "trace=openat",
        "-o",
        trace,
        Deno.execPath(),
        "run",
        "-A",
        CLI,
        ...args,
      ],
      cwd: dir,
    });
    assert.equal(out.code, 0, decode(out.stderr));
    const text = await Deno.readTextFile(trace);
    const names = new Set<string>();
    const prefix = `/gen/file${ROOT}`;
    for (const match of text.matchAll(/"([^"]+)\.js"/g)) {
      const at = match[1].indexOf(prefix);
      if (at !== -1) names.add(match[1].slice(at + prefix.length));
      // An npm package's files are read from Deno's npm cache as they are.
      const npm = /\/registry\.npmjs\.org\/([^/]+)\//.exec(match[1]);
      if (npm) names.add(`npm:${npm[1]}`);
    }
    return [...names].sort();
  });
}

async function withTempDirResult<T>(fn: (dir: string) => Promise<T>) {
  let result: T;
  await withTempDir(async (dir) => {
    result = await fn(dir);
  });
  return result!;
}

Deno.test({
  name:
    "lockbox run loads the lock layer only: no store, seed system, PostgreSQL or commander module",
  ignore: !await have("strace"),
  async fn() {
    await withTempDir(async (dir) => {
      const lock = `${dir}/job.lock`;
      // Once to fill Deno's cache, then traced.
      await output(Deno.execPath(), {
        args: ["run", "-A", CLI, "run", "-n", lock, "true"],
      });
      const run = await modulesLoaded(["run", "-n", lock, "true"]);
      assert.ok(run.includes("src/lock/run_command.ts"), run.join(" "));
      const heavy = run.filter((name) =>
        /^src\/(store|seeds|postgres)\//.test(name) ||
        name === "src/cli/_program.ts" || name === "npm:commander"
      );
      assert.deepEqual(heavy, []);
      // The full program (here for status) does load them: the trace sees it.
      await output(Deno.execPath(), {
        args: ["run", "-A", CLI, "status", dir],
      });
      const status = await modulesLoaded(["status", dir]);
      assert.ok(status.includes("src/cli/_program.ts"), status.join(" "));
      assert.ok(status.includes("src/lock/lock_monitor.ts"), status.join(" "));
      assert.ok(status.includes("npm:commander"), status.join(" "));
    });
  },
});

Deno.test("cli.ts's module graph, which deno compile embeds, holds every command module it imports lazily", async () => {
  const info = await output(Deno.execPath(), {
    args: ["info", "--json", CLI],
    cwd: ROOT,
  });
  assert.equal(info.code, 0, decode(info.stderr));
  const graph = new Set(
    (JSON.parse(decode(info.stdout)).modules as { specifier: string }[])
      .map((m) => m.specifier),
  );
  const wanted = [];
  for (const entry of Deno.readDirSync(`${ROOT}src/cli`)) {
    if (entry.name.endsWith(".ts")) wanted.push(`src/cli/${entry.name}`);
  }
  wanted.push("src/postgres/backend.ts", "src/lock/lock_monitor.ts");
  const missing = wanted.filter((name) =>
    !graph.has(new URL(name, `file://${ROOT}`).href)
  );
  assert.deepEqual(missing, []);
});
