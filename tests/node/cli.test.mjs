// The CLI on Node, against the built package: run's exit codes beside
// flock(1), and `npx lockbox --help` from a project that installs it.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { Child, CLI, PACKAGE, run, withTempDir } from "./_helpers.mjs";
import { lockbox } from "./workers/_lockbox.mjs";

test("lockbox run on Node gives flock(1)'s exit codes", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const free = [
      [[L, "true"], 0],
      [[L, "sh", "-c", "exit 7"], 7],
      [[L, "-c", "exit 5"], 5],
      [[L, "sh", "-c", "kill -KILL $$"], 137],
    ];
    for (const [args, expected] of free) {
      assert.equal(run("flock", args).code, expected);
      assert.equal(run(process.execPath, [CLI, "run", ...args]).code, expected);
    }
    const holder = new Child("flock", [L, "sh", "-c", "echo held; cat"]);
    try {
      await holder.waitFor("held");
      for (
        const [args, expected] of [
          [["-n", L, "true"], 1],
          [["-w", "0.3", L, "true"], 1],
          [["-E", "42", "-n", L, "true"], 42],
        ]
      ) {
        assert.equal(run("flock", args).code, expected);
        assert.equal(
          run(process.execPath, [CLI, "run", ...args]).code,
          expected,
        );
      }
    } finally {
      await holder.finish();
    }
  });
});

test("npx lockbox --help works in a project that installs the package", async () => {
  await withTempDir((dir) => {
    const project = `${dir}/app`;
    mkdirSync(project);
    writeFileSync(`${project}/package.json`, '{"name":"app","private":true}\n');
    const install = run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      PACKAGE,
    ], { cwd: project });
    assert.equal(install.code, 0, install.stderr);
    const help = run("npx", ["--no-install", "lockbox", "--help"], {
      cwd: project,
    });
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: lockbox /);
    const version = run("npx", ["--no-install", "lockbox", "--version"], {
      cwd: project,
    });
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

test("lockbox status and holder on Node name the holding process and its command from the kernel, and list a lock flock(1) holds without a record", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    // A lockbox lock file (listed free or held), held by flock(1).
    assert.equal(run(process.execPath, [CLI, "run", L, "true"]).code, 0);
    const holder = new Child("flock", [L, "sh", "-c", "echo held; cat"]);
    try {
      await holder.waitFor("held");
      const status = run(process.execPath, [CLI, "status", "--json", dir]);
      assert.equal(status.code, 0, status.stderr);
      const [info] = JSON.parse(status.stdout);
      assert.equal(info.lockPath, L);
      assert.equal(info.held, true);
      assert.deepEqual(info.holders, [holder.pid]);
      // Its command line, from /proc/PID/cmdline, as on Deno.
      assert.match(info.command, /flock .*job\.lock sh -c echo held; cat$/);
      // An empty file flock(1) holds, with no lockbox record, is listed too.
      const other = new Child("flock", [
        `${dir}/fl.lock`,
        "sh",
        "-c",
        "echo held; cat",
      ]);
      try {
        await other.waitFor("held");
        const both = run(process.execPath, [CLI, "status", "--json", dir]);
        const listed = JSON.parse(both.stdout);
        assert.deepEqual(listed.map((i) => i.lockPath), [`${dir}/fl.lock`, L]);
        assert.deepEqual(listed[0].holders, [other.pid]);
        assert.equal(listed[0].record, null);
      } finally {
        await other.finish();
      }
      const who = run(process.execPath, [CLI, "holder", L]);
      assert.equal(who.code, 0);
      assert.equal(who.stdout, `held exclusive by pid ${holder.pid}\n`);
    } finally {
      await holder.finish();
    }
    assert.equal(run(process.execPath, [CLI, "holder", L]).code, 1);
  });
});

test("lockbox run on Node: the command keeps the lock when lockbox is SIGKILLed, and SIGTERM is passed on", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    for (const close of [false, true]) {
      // The marker names the command, to find it once lockbox is gone.
      const marker = `${dir}/command-${close}`;
      const child = new Child(process.execPath, [
        CLI,
        "run",
        ...(close ? ["-o"] : []),
        L,
        "sh",
        "-c",
        "echo ready; while :; do sleep 0.05; done",
        marker,
      ]);
      await child.waitFor("ready");
      child.process.kill("SIGKILL");
      await new Promise((resolve) => child.process.once("exit", resolve));
      assert.equal(run("flock", ["-n", L, "true"]).code, close ? 0 : 1);
      assert.equal(run("pkill", ["-f", marker]).code, 0, "the command ran");
      await child.finish();
    }
    const plain = new Child(process.execPath, [
      CLI,
      "run",
      L,
      "sh",
      "-c",
      "echo ready; exec sleep 30",
    ]);
    await plain.waitFor("ready");
    plain.process.kill("SIGTERM");
    const { code, signal } = await plain.finish(20_000);
    assert.deepEqual({ code, signal }, { code: 143, signal: null });
    assert.equal(run("flock", ["-n", L, "true"]).code, 0);
  });
});

test("lockbox run on Node: descriptor mode and directories as flock(1)", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const both = (script) =>
      ["flock", `'${process.execPath}' '${CLI}' run`].map((runner) =>
        run("bash", ["-c", `RUN() { ${runner} "$@"; }\n${script}`], {
          cwd: dir,
        })
      );
    for (
      const out of both(
        `( RUN -n 9 || exit 1; flock -n ${L} true; echo "other: $?" ) 9>${L}; flock -n ${L} true; echo "after: $?"`,
      )
    ) {
      assert.equal(out.stdout, "other: 1\nafter: 0\n", out.stderr);
    }
    const holder = new Child("flock", [L, "sh", "-c", "echo held; cat"]);
    try {
      await holder.waitFor("held");
      for (
        const out of both(
          `( RUN -n 9; echo "n: $?"; RUN -w 0.3 9; echo "w: $?"; RUN -E 42 -n 9; echo "E: $?" ) 9>${L}`,
        )
      ) {
        assert.equal(out.stdout, "n: 1\nw: 1\nE: 42\n", out.stderr);
      }
    } finally {
      await holder.finish();
    }
    for (
      const out of both(
        `( RUN 9 && RUN -u 9; echo "u: $?"; flock -n ${L} true; echo "free: $?" ) 9>${L}`,
      )
    ) {
      assert.equal(out.stdout, "u: 0\nfree: 0\n", out.stderr);
    }
    const [, closed] = both(`RUN -n 7; echo "closed: $?"`);
    assert.equal(closed.stdout, "closed: 2\n", closed.stderr);
    mkdirSync(`${dir}/jobs`);
    for (
      const out of both(
        `RUN ${dir}/jobs sh -c 'flock -n ${dir}/jobs true; echo "inside: $?"'`,
      )
    ) {
      assert.equal(out.stdout, "inside: 1\n", out.stderr);
    }
  });
});

test("the Node CLI writes its whole output to a pipe before it exits, and a failed write is an error", async () => {
  await withTempDir((dir) => {
    const big = `${dir}/big.json`;
    const doc = {
      items: Array.from(
        { length: 3000 },
        (_, i) => `item ${i} ${"x".repeat(90)}`,
      ),
    };
    writeFileSync(big, JSON.stringify(doc));
    const piped = run("sh", [
      "-c",
      `'${process.execPath}' '${CLI}' store get '${big}' | wc -c`,
    ]);
    assert.equal(
      Number(piped.stdout.trim()),
      JSON.stringify(doc, null, 2).length + 1,
    );
    const full = run("sh", [
      "-c",
      `'${process.execPath}' '${CLI}' store get '${big}' > /dev/full`,
    ]);
    assert.equal(full.code, 3);
    assert.match(full.stderr, /no space left on device/i);
  });
});

test("lockbox store watch on Node prints each version and stops with status 143 on SIGTERM and 130 on SIGINT", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/s.json`;
    writeFileSync(file, '{"n":0}');
    for (const signal of ["SIGTERM", "SIGINT"]) {
      const watching = new Child(process.execPath, [
        CLI,
        "store",
        "watch",
        "--json",
        file,
      ]);
      await watching.waitFor('{"version":1,"value":{"n":0}}');
      const set = run(process.execPath, [CLI, "store", "set", file, "/n", "5"]);
      assert.equal(set.code, 0, set.stderr);
      await watching.waitFor('{"version":2,"value":{"n":5}}');
      watching.process.kill(signal);
      const { code } = await watching.finish();
      assert.equal(
        code,
        signal === "SIGINT" ? 130 : 143,
        `${signal}: ${watching.stderr}`,
      );
      assert.equal(watching.stderr, "");
      run(process.execPath, [CLI, "store", "set", file, "/n", "0"]);
    }
  });
});

test("lockbox store set on Node stores a __proto__ key as data, as it does on Deno", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const file = `${dir}/s${journal}.json`;
      writeFileSync(file, "{}");
      if (journal) {
        // A journal store, made by the library: the CLI opens it as one.
        const { JsonStore } = lockbox;
        await new JsonStore(file, { initial: {}, journal: true }).update(
          (d) => void (d.n = 0),
        );
      }
      for (const [pointer, value] of [["/__proto__/x", "1"], ["/c", "2"]]) {
        const set = run(process.execPath, [
          CLI,
          "store",
          "set",
          file,
          pointer,
          value,
        ]);
        assert.equal(set.code, 0, set.stderr);
      }
      const get = run(process.execPath, [CLI, "store", "get", file]);
      assert.equal(get.code, 0, get.stderr);
      const doc = JSON.parse(get.stdout);
      assert.ok(Object.hasOwn(doc, "__proto__"), get.stdout);
      assert.deepEqual(doc["__proto__"], { x: 1 });
      assert.equal(doc.c, 2);
      assert.equal({}.x, undefined);
    }
  });
});
