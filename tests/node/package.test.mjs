// The npm package as a Node user gets it: `npm pack`, installed from the
// tarball into a fresh project with `--ignore-scripts` (no pg, no compiler:
// koffi's binaries are prebuilt), locks from it, then TypeScript with `strict`,
// `module: nodenext` and `skipLibCheck: false` over right and wrong code,
// `require` from CommonJS files, and `@lockbox/lockbox/postgres` without pg
// and after `npm install pg`. Only for the npm build: JSR serves ES modules
// and types of its own (LOCKBOX_NODE_PACKAGE=dist/node-src skips it).

import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { after, before, describe, test } from "node:test";
import { Child, PACKAGE, run } from "./_helpers.mjs";

const pkg = JSON.parse(readFileSync(`${PACKAGE}package.json`, "utf8"));
/** TypeScript and Node's types, as the build used them (dist/npm-tools). */
const tools = JSON.parse(
  readFileSync(
    new URL("../../dist/npm-tools/package.json", import.meta.url),
    "utf8",
  ),
).devDependencies;
/** The pg the package was tested with (deno.json's `npm:pg@8.23.1`). */
const pgVersion = pkg.devDependencies?.pg;

/** A consumer project with the packed package, TypeScript and Node's types. */
let dir, project, tarball;

/** Runs TypeScript on `files` of the project: { code, errors: "file(line" }. */
function tsc(files) {
  writeFileSync(
    `${project}/tsconfig.json`,
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        lib: ["es2022", "esnext.disposable"],
        types: ["node"],
        skipLibCheck: false,
        noEmit: true,
      },
      files,
    }),
  );
  const out = run(process.execPath, [
    `${project}/node_modules/typescript/bin/tsc`,
    "--project",
    `${project}/tsconfig.json`,
  ], { cwd: project });
  const errors = [...out.stdout.matchAll(/^(\S+)\((\d+),\d+\): error/gm)]
    .map(([, file, line]) => `${file}:${line}`);
  return { code: out.code, stdout: out.stdout, errors };
}

/** The line numbers of `text` whose line ends with the comment `// wrong`. */
function wrongLines(file, text) {
  return text.split("\n").flatMap((line, i) =>
    line.endsWith("// wrong") ? [`${file}:${i + 1}`] : []
  );
}

/** Runs a script of the project with Node: { code, stdout, stderr }. */
function node(file) {
  return run(process.execPath, [file], { cwd: project });
}

test("deno.json's tasks and the build scripts name no registry host", () => {
  const root = new URL("../../", import.meta.url);
  const deno = JSON.parse(readFileSync(new URL("deno.json", root), "utf8"));
  for (const [name, command] of Object.entries(deno.tasks)) {
    assert.doesNotMatch(command, /--allow-net=|registry\.|https?:\/\//, name);
  }
  for (const script of ["build_npm.ts", "build_node_sources.ts"]) {
    const text = readFileSync(new URL(`scripts/${script}`, root), "utf8");
    assert.doesNotMatch(
      text,
      /registry\.npmjs|https?:\/\/[^\s"'`]*npm/,
      script,
    );
  }
});

describe("the packed npm package", {
  skip: pkg.private ? "not the npm build (no tarball, no CommonJS)" : false,
}, () => {
  before(() => {
    dir = mkdtempSync(`${tmpdir()}/lockbox_node_pack_`);
    project = `${dir}/app`;
    mkdirSync(project);
    const pack = run("npm", [
      "pack",
      "--silent",
      "--pack-destination",
      dir,
      PACKAGE,
    ]);
    assert.equal(pack.code, 0, pack.stderr);
    tarball = `${dir}/${pack.stdout.trim().split("\n").pop()}`;
    writeFileSync(`${project}/package.json`, '{"name":"app","private":true}\n');
    const install = run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      "--ignore-scripts",
      tarball,
      `typescript@${tools.typescript}`,
      `@types/node@${tools["@types/node"]}`,
    ], { cwd: project });
    assert.equal(install.code, 0, install.stderr);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the tarball installed globally into a prefix, offline, puts a lockbox on PATH that runs --help and run", () => {
    const prefix = `${dir}/prefix`;
    const install = run("npm", [
      "install",
      "--global",
      "--prefix",
      prefix,
      "--offline",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      tarball,
    ]);
    assert.equal(install.code, 0, install.stderr);
    const lockbox = `${prefix}/bin/lockbox`;
    const help = run(lockbox, ["--help"], { cwd: dir });
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: lockbox /);
    assert.match(help.stdout, /\n {2}run \[options\] <lockfile>/);
    // The command finds the lock file held (flock -n -E 7 exits 7).
    const lock = `${dir}/job.lock`;
    const locked = run(lockbox, [
      "run",
      "-n",
      lock,
      "flock",
      "-n",
      "-E",
      "7",
      lock,
      "true",
    ], { cwd: dir });
    assert.equal(locked.code, 7, locked.stderr);
    assert.equal(run("flock", ["-n", "-E", "7", lock, "true"]).code, 0);
  });

  test("npm install --ignore-scripts of the tarball gives working locks through koffi, with no fs-ext", () => {
    assert.equal(pkg.dependencies["fs-ext"], undefined);
    assert.match(pkg.dependencies.koffi, /^3\./);
    assert.equal(existsSync(`${project}/node_modules/fs-ext`), false);
    writeFileSync(
      `${project}/wait.mjs`,
      `import { spawn } from "node:child_process";
import { FileLock, lockHolder } from "@lockbox/lockbox";
const path = process.argv[2];
// flock(1) holds the lock for a moment; this process waits for it.
const flock = spawn("flock", [path + ".lock", "sh", "-c", "echo held; sleep 0.3"]);
await new Promise((resolve) => flock.stdout.once("data", resolve));
const lock = await FileLock.acquire(path, { timeout: 60_000 });
console.log((await lockHolder(path))?.pid === process.pid ? "mine" : "not mine");
await lock.release();
`,
    );
    const out = run(process.execPath, ["wait.mjs", `${dir}/waited`], {
      cwd: project,
    });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.trim(), "mine");
  });

  test("FileLock.acquire() names the platform when koffi has no binary for it", () => {
    // As on a platform koffi ships nothing for: its binary package missing.
    const binaries = `${project}/node_modules/@koromix`;
    const aside = `${dir}/koromix-aside`;
    renameSync(binaries, aside);
    try {
      writeFileSync(
        `${project}/nobinary.mjs`,
        `import { FileLock } from "@lockbox/lockbox";
await FileLock.acquire(process.argv[2]).catch((error) => console.log(error.message));
`,
      );
      const out = run(process.execPath, ["nobinary.mjs", `${dir}/nobinary`], {
        cwd: project,
      });
      assert.equal(out.code, 0, out.stderr);
      assert.match(
        out.stdout,
        new RegExp(
          `Cannot load koffi, which gives Node flock\\(2\\), on ${process.platform}-${process.arch}`,
        ),
      );
    } finally {
      renameSync(aside, binaries);
    }
  });

  test("package.json declares linux, darwin, freebsd and win32, each with a koffi binary", () => {
    assert.deepEqual(pkg.os, ["linux", "darwin", "freebsd", "win32"]);
    const koffi = JSON.parse(
      readFileSync(`${project}/node_modules/koffi/package.json`, "utf8"),
    );
    for (const os of pkg.os) {
      assert.ok(
        `@koromix/koffi-${os}-x64` in koffi.optionalDependencies,
        `no koffi binary for ${os}-x64`,
      );
    }
  });

  test("package.json declares pg an optional peer dependency, not a dependency", () => {
    assert.equal(pkg.dependencies?.pg, undefined);
    assert.match(pkg.peerDependencies.pg, /^\^8\./);
    assert.equal(pkg.peerDependenciesMeta.pg.optional, true);
    assert.equal(existsSync(`${project}/node_modules/pg`), false);
  });

  test("types of the tarball compile with strict, nodenext and skipLibCheck false, ESM and CommonJS", () => {
    writeFileSync(
      `${project}/right.mts`,
      `import {
  FileLock,
  JsonStore,
  type LockInfo,
  listLocks,
  type StoreVersion,
  withLock,
} from "@lockbox/lockbox";
import {
  PgJsonStore,
  PostgresBackend,
  StaleFenceError,
} from "@lockbox/lockbox/postgres";

interface Counter {
  n: number;
  name: string;
}
const store = new JsonStore<Counter>("counter.json", {
  initial: { n: 0, name: "a" },
});
const doc: Counter = await store.read();
const n: number = await store.update((data) => ++data.n);
const name: string = doc.name;
{
  await using lock = await FileLock.acquire("job", { timeout: 1_000 });
  const signal: AbortSignal = lock.signal;
}
const seen: number = await withLock("job", (lock: FileLock) => 1);
const locks: LockInfo[] = await listLocks(".");
const held: boolean = locks[0].held;
const controller = new AbortController();
for await (
  const version of store.watch({ signal: controller.signal })
) {
  const changed: StoreVersion<Counter> = version;
  const count: number = version.value.n;
}
const connect: (url?: string) => Promise<PostgresBackend> =
  PostgresBackend.connect;
const error: Error = new StaleFenceError("x", 1, 2);
const pgStore: typeof PgJsonStore = PgJsonStore;
export { connect, error, held, n, name, pgStore, seen };
`,
    );
    writeFileSync(
      `${project}/right.cts`,
      `import lockbox = require("@lockbox/lockbox");
import postgres = require("@lockbox/lockbox/postgres");

async function main(): Promise<number> {
  const store = new lockbox.JsonStore<{ n: number }>("c.json", {
    initial: { n: 0 },
  });
  await lockbox.withLock("job", () => {});
  const backend: Promise<postgres.PostgresBackend> =
    postgres.PostgresBackend.connect();
  void backend;
  return (await store.read()).n;
}
export = main;
`,
    );
    const out = tsc(["right.mts", "right.cts"]);
    assert.deepEqual(out.errors, [], out.stdout);
    assert.equal(out.code, 0, out.stdout);
  });

  test("types of the tarball reject each wrong line: a wrong read type, a wrong option, a wrong watch type", () => {
    const text =
      `import { FileLock, JsonStore, withLock } from "@lockbox/lockbox";
import { PostgresBackend } from "@lockbox/lockbox/postgres";

const store = new JsonStore<{ n: number }>("c.json", { initial: { n: 0 } });
const a: string = (await store.read()).n; // wrong
const b = new JsonStore<{ n: number }>("c.json", { initial: { n: "0" } }); // wrong
await FileLock.acquire("job", { timeout: "1s" }); // wrong
await withLock("job", () => 1, { shared: 1 }); // wrong
for await (const v of store.watch({ bogus: 1 })) { // wrong
  const c: string = v.value.n; // wrong
}
await PostgresBackend.connect(5432); // wrong
export { a, b };
`;
    writeFileSync(`${project}/wrong.mts`, text);
    const out = tsc(["wrong.mts"]);
    assert.notEqual(out.code, 0);
    assert.deepEqual(
      [...new Set(out.errors)],
      wrongLines("wrong.mts", text),
      out.stdout,
    );
  });

  test("require() of both entry points gives what import gives, and a .cjs file locks and updates a store", async () => {
    writeFileSync(
      `${project}/names.mjs`,
      `const main = await import("@lockbox/lockbox");
const postgres = await import("@lockbox/lockbox/postgres");
console.log(JSON.stringify([Object.keys(main).sort(), Object.keys(postgres).sort()]));
`,
    );
    writeFileSync(
      `${project}/names.cjs`,
      `const main = require("@lockbox/lockbox");
const postgres = require("@lockbox/lockbox/postgres");
const names = (m) => Object.keys(m).filter((k) => k !== "__esModule").sort();
if (postgres.StaleFenceError !== main.StaleFenceError) {
  throw new Error("two copies of StaleFenceError");
}
console.log(JSON.stringify([names(main), names(postgres)]));
`,
    );
    const esm = node("names.mjs");
    assert.equal(esm.code, 0, esm.stderr);
    const cjs = node("names.cjs");
    assert.equal(cjs.code, 0, cjs.stderr);
    assert.deepEqual(JSON.parse(cjs.stdout), JSON.parse(esm.stdout));
    assert.ok(JSON.parse(cjs.stdout)[0].includes("JsonStore"));

    writeFileSync(
      `${project}/update.cjs`,
      `const { readFileSync, writeFileSync } = require("node:fs");
const { FileLock, JsonStore, withLock } = require("@lockbox/lockbox");
const [path, counter] = process.argv.slice(2);
const store = new JsonStore(path, { initial: { n: 0 } });
async function main() {
  for (let i = 0; i < 25; i++) {
    await store.update((data) => { data.n++; });
    await withLock(counter, () => {
      const n = Number(readFileSync(counter, "utf8"));
      writeFileSync(counter, String(n + 1));
    });
  }
  const lock = await FileLock.acquire(counter);
  await lock.release();
  console.log("done");
}
main().catch((error) => { console.error(error); process.exit(1); });
`,
    );
    const path = `${dir}/state.json`;
    const counter = `${dir}/counter`;
    writeFileSync(counter, "0");
    const children = [1, 2, 3].map(() =>
      new Child(process.execPath, ["update.cjs", path, counter], {
        cwd: project,
      })
    );
    for (const child of children) {
      assert.deepEqual(
        await child.finish(),
        { code: 0, signal: null },
        child.stderr,
      );
      assert.deepEqual(child.lines, ["done"]);
    }
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), { n: 75 });
    assert.equal(readFileSync(counter, "utf8"), "75");
  });

  test("the README's Node quick start, run from the installed tarball by 4 processes at once, keeps every update", async () => {
    // The README as the package ships it, and the docs/ pages it links.
    const installed = `${project}/node_modules/@lockbox/lockbox/`;
    const readme = readFileSync(`${installed}README.md`, "utf8");
    const linked = [...readme.matchAll(/\]\((docs\/[\w-]+\.md)[#)]/g)]
      .map(([, page]) => page);
    assert.ok(linked.length > 0, "the README links no docs/ page");
    for (const page of linked) {
      assert.ok(existsSync(`${installed}${page}`), `${page} is not shipped`);
    }
    const code = readme.match(/^```js\n(\/\/ update\.mjs\n[\s\S]*?)^```$/m)
      ?.[1];
    assert.ok(code, "the README has no update.mjs example");
    const app = `${dir}/quickstart`;
    mkdirSync(app);
    symlinkSync(`${project}/node_modules`, `${app}/node_modules`);
    writeFileSync(`${app}/update.mjs`, code);
    const children = [1, 2, 3, 4].map(() =>
      new Child(process.execPath, ["update.mjs"], { cwd: app })
    );
    for (const child of children) {
      assert.deepEqual(
        await child.finish(),
        { code: 0, signal: null },
        child.stderr,
      );
    }
    const jobs = JSON.parse(readFileSync(`${app}/jobs.json`, "utf8"));
    assert.equal(jobs.runs, 4);
    assert.deepEqual(
      jobs.queue.toSorted(),
      children.map((c) => `from pid ${c.pid}`).toSorted(),
    );
  });

  test("docs/node.md's lock.mjs (try/finally, no using) runs as written on this Node and compiles with its tsconfig", () => {
    const installed = `${project}/node_modules/@lockbox/lockbox/`;
    const page = readFileSync(`${installed}docs/node.md`, "utf8");
    const code = page.match(/^```js\n(\/\/ lock\.mjs\n[\s\S]*?)^```$/m)?.[1];
    assert.ok(code, "docs/node.md has no lock.mjs example");
    const app = `${dir}/lockexample`;
    mkdirSync(app);
    symlinkSync(`${project}/node_modules`, `${app}/node_modules`);
    writeFileSync(`${app}/lock.mjs`, code);
    const out = run(process.execPath, ["lock.mjs"], { cwd: app });
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      /^holding report\.json\.lock, token \d+\nwithLock gave 42\n$/,
    );
    // The page's tsconfig, over the same code as TypeScript.
    const tsconfig = JSON.parse(
      page.match(/^```json\n(\{\n {2}"compilerOptions"[\s\S]*?)^```$/m)?.[1] ??
        "null",
    );
    assert.ok(tsconfig, "docs/node.md has no tsconfig.json");
    writeFileSync(`${app}/lock.mts`, code);
    writeFileSync(
      `${app}/tsconfig.json`,
      JSON.stringify({
        ...tsconfig,
        compilerOptions: { ...tsconfig.compilerOptions, noEmit: true },
        files: ["lock.mts"],
      }),
    );
    const tsc = run(process.execPath, [
      `${project}/node_modules/typescript/bin/tsc`,
      "--project",
      `${app}/tsconfig.json`,
    ], { cwd: app });
    assert.equal(tsc.code, 0, tsc.stdout);
  });

  test("PostgresBackend.connect() names npm install pg when pg is not installed, from import and require", () => {
    // Nothing listens on port 1: with pg, connecting fails there instead.
    const url = "postgres://lockbox@127.0.0.1:1/lockbox";
    const script = (load) =>
      `${load}.then((m) => m.PostgresBackend.connect(${
        JSON.stringify(url)
      }, { connectTimeout: 5000 })).then(
  () => { console.log("connected"); },
  (error) => { console.log(error.message); },
);
`;
    writeFileSync(
      `${project}/nopg.mjs`,
      script('import("@lockbox/lockbox/postgres")'),
    );
    writeFileSync(
      `${project}/nopg.cjs`,
      script('Promise.resolve(require("@lockbox/lockbox/postgres"))'),
    );
    for (const file of ["nopg.mjs", "nopg.cjs"]) {
      const out = node(file);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /Cannot load npm package 'pg'.*npm install pg/);
    }
    const install = run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      `pg@${pgVersion}`,
    ], { cwd: project });
    assert.equal(install.code, 0, install.stderr);
    for (const file of ["nopg.mjs", "nopg.cjs"]) {
      const out = node(file);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^Cannot connect/);
      assert.doesNotMatch(out.stdout, /npm install pg/);
    }
  });
});
