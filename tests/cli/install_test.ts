// Ways to install the `lockbox` command that work offline, tried as a user
// would: `deno task install:cli` (the built CLI, dist/deno, installed) into a
// fresh DENO_INSTALL_ROOT, run from elsewhere; and what `lockbox run` loads,
// built and from the sources.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { output, withTempDir } from "../_helpers.ts";
import { holdWithFlock } from "./_cli.ts";
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

Deno.test("deno task install:cli installs the built lockbox, which runs --help, --version, run and the stores from another directory, and whose run reads none of the full program", async () => {
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

    // The shim runs the built CLI (dist/deno), not the checkout's sources.
    const shim = await Deno.readTextFile(lockbox);
    assert.match(shim, /dist\/deno\/cli\.js/);
    assert.doesNotMatch(shim, /cli\.ts/);
    // Held elsewhere: exit 1, and a store written and read back through
    // the full program (commander, the stores).
    const held = await output("flock", {
      args: [lock, lockbox, "run", "-n", lock, "true"],
      cwd: dir,
      env,
    });
    assert.equal(held.code, 1, decode(held.stderr));
    const state = `${dir}/state.json`;
    const set = await output(lockbox, {
      args: ["store", "set", state, "/jobs/-", '"a"'],
      env,
    });
    assert.equal(set.code, 0, decode(set.stderr));
    const get = await output(lockbox, {
      args: ["store", "get", "--raw", state, "/jobs/0"],
      env,
    });
    assert.equal(decode(get.stdout), "a\n", decode(get.stderr));

    // A rebuild never leaves the installed lockbox without its files: runs
    // that start while it writes them all work.
    const rebuild = new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "build:cli"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let rebuilt = false;
    const finished = rebuild.output().finally(() => rebuilt = true);
    const during = [];
    while (!rebuilt || during.length < 3) {
      const again = await output(lockbox, {
        args: ["store", "get", "--raw", state, "/jobs/0"],
        env,
      });
      during.push(
        `${again.code} ${decode(again.stdout)}${decode(again.stderr)}`,
      );
    }
    assert.equal((await finished).code, 0);
    assert.deepEqual(during.filter((line) => line !== "0 a\n"), []);

    if (await have("strace")) {
      // `lockbox run` reads the run's chunks only: not the full program's,
      // commander's or the stores'.
      const built = `${ROOT}dist/deno/`;
      const read = new Set(
        (await jsOpened([lockbox, "run", "-n", lock, "true"], { env }))
          .filter((path) => path.startsWith(built)),
      );
      assert.ok(read.size > 1, [...read].join(" "));
      const code = await Promise.all(
        [...read].map((path) => Deno.readTextFile(path)),
      );
      assert.ok(code.some((text) => /function runWithLock\(/.test(text)));
      for (const [i, path] of [...read].entries()) {
        assert.doesNotMatch(path, /_program-/);
        assert.doesNotMatch(
          code[i],
          /"npm:(commander|pg)@|class JsonStore\b/,
          path,
        );
      }
    }
  });
});

Deno.test("the built lockbox's helper for a timed wait on a shell's descriptor runs as the built CLI does, taking no configuration from where it lies", async () => {
  await withTempDir(async (dir) => {
    const build = await output(Deno.execPath(), {
      args: ["task", "--quiet", "build:cli"],
      cwd: ROOT,
    });
    assert.equal(build.code, 0, decode(build.stderr));
    // The built files copied under a Node project whose commander is not
    // the one the CLI imports: Deno would take that one under a
    // configuration found there.
    await Deno.mkdir(`${dir}/pkg/node_modules/commander`, { recursive: true });
    await Deno.writeTextFile(`${dir}/pkg/package.json`, '{"type":"module"}');
    await Deno.writeTextFile(
      `${dir}/pkg/node_modules/commander/package.json`,
      '{"name":"commander","version":"14.0.3","main":"index.js"}',
    );
    await Deno.writeTextFile(
      `${dir}/pkg/node_modules/commander/index.js`,
      "module.exports = {};",
    );
    await Deno.mkdir(`${dir}/pkg/deno`);
    for (const entry of Deno.readDirSync(`${ROOT}dist/deno`)) {
      await Deno.copyFile(
        `${ROOT}dist/deno/${entry.name}`,
        `${dir}/pkg/deno/${entry.name}`,
      );
    }
    const cli = [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--no-config",
      "--unstable-lazy-dynamic-imports",
      `${dir}/pkg/deno/cli.js`,
    ].map((part) => `'${part}'`).join(" ");
    const lock = `${dir}/held.lock`;
    const holder = await holdWithFlock(lock, "-x");
    try {
      // Held elsewhere for the whole wait: exit 1, from the helper's answer.
      const waited = await output("sh", {
        args: ["-c", `${cli} run -w 1 9 9>'${lock}'`],
        cwd: dir,
      });
      assert.equal(waited.code, 1, decode(waited.stderr));
      assert.equal(decode(waited.stderr), "");
    } finally {
      await holder.release();
    }
    const free = await output("sh", {
      args: ["-c", `${cli} run -w 1 9 9>'${lock}'`],
      cwd: dir,
    });
    assert.equal(free.code, 0, decode(free.stderr));
  });
});

/**
 * The `.js` files `command` opened, as strace saw it, in a directory of its
 * own (asserting it exited 0).
 */
async function jsOpened(
  command: string[],
  options: { env?: Record<string, string> } = {},
): Promise<string[]> {
  return await withTempDirResult(async (dir) => {
    const trace = `${dir}/trace`;
    const out = await output("strace", {
      args: ["-f", "-qq", "-e", "trace=openat", "-o", trace, ...command],
      cwd: dir,
      env: options.env,
    });
    assert.equal(out.code, 0, decode(out.stderr));
    const text = await Deno.readTextFile(trace);
    return [...text.matchAll(/"([^"]+\.js)"/g)].map((match) => match[1]);
  });
}

/** The lockbox modules a run of the CLI evaluates (their emitted code read from Deno's cache). */
async function modulesLoaded(args: string[]): Promise<string[]> {
  const names = new Set<string>();
  const prefix = `/gen/file${ROOT}`;
  for (
    const path of await jsOpened([Deno.execPath(), "run", "-A", CLI, ...args])
  ) {
    const at = path.indexOf(prefix);
    if (at !== -1) names.add(path.slice(at + prefix.length, -".js".length));
    // An npm package's files are read from Deno's npm cache as they are.
    const npm = /\/registry\.npmjs\.org\/([^/]+)\//.exec(path);
    if (npm) names.add(`npm:${npm[1]}`);
  }
  return [...names].sort();
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
