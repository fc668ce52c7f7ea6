// `lockbox run`, `holder` and `status` with `--db`: lock names on a real
// throwaway PostgreSQL cluster instead of lock files.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Child, output, withTempDir } from "../_helpers.ts";
import {
  type Cluster,
  NO_POSTGRES,
  PGBOUNCER,
  pgSuite,
  startPgBouncer,
} from "./_cluster.ts";
import { PostgresBackend } from "../../src/postgres/mod.ts";

const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));

const { cluster, test: pgTest, stopAfterwards } = pgSuite("lockbox --db");

/** `lockbox ARGS...` started, running on while the test talks to it. */
function lockboxChild(c: Cluster, args: string[], stdin = false): Child {
  return new Child(
    Deno.execPath(),
    ["run", "--allow-all", "--quiet", CLI, ...args],
    { stdin, env: c.env },
  );
}

async function lockbox(
  c: Cluster,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await output(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", CLI, ...args],
    env: c.env,
  });
  return {
    code: result.code,
    stdout: new TextDecoder().decode(result.stdout),
    stderr: new TextDecoder().decode(result.stderr),
  };
}

pgTest(
  "lockbox run --db: commands on one name never overlap, from several processes",
  async (c) => {
    await withTempDir(async (dir) => {
      const log = `${dir}/log`;
      const script =
        `echo "start $$" >> ${log}; sleep 0.2; echo "end $$" >> ${log}`;
      const runs = await Promise.all(
        [1, 2, 3, 4].map(() =>
          lockbox(c, ["run", "--db", c.url, "nightly", "sh", "-c", script])
        ),
      );
      for (const run of runs) assert.equal(run.code, 0, run.stderr);
      const lines = (await Deno.readTextFile(log)).trim().split("\n");
      assert.equal(lines.length, 8);
      for (let i = 0; i < lines.length; i += 2) {
        const pid = lines[i].split(" ")[1];
        assert.deepEqual([lines[i], lines[i + 1]], [
          `start ${pid}`,
          `end ${pid}`,
        ]);
      }
    });
  },
);

pgTest(
  "lockbox holder and status --db show the holder; -n exits 1 while held; 'env' reads the PG variables",
  async (c) => {
    const holder = lockboxChild(c, [
      "run",
      "--db",
      "env",
      "job",
      "sh",
      "-c",
      "echo locked; read line",
    ], true);
    try {
      await holder.waitFor("locked");
      const held = await lockbox(c, ["holder", "--db", c.url, "job"]);
      assert.equal(held.code, 0);
      assert.match(held.stdout, /^held exclusive by pid \d+ on .* token \d+/);
      assert.match(held.stdout, /"command":"sh -c echo locked; read line"/);
      const busy = await lockbox(c, [
        "run",
        "--db",
        c.url,
        "-n",
        "job",
        "true",
      ]);
      assert.equal(busy.code, 1);
      const status = await lockbox(c, ["status", "--db", c.url, "--json"]);
      const job = JSON.parse(status.stdout).find((i: { name: string }) =>
        i.name === "job"
      );
      assert.equal(job.mode, "exclusive");
    } finally {
      await holder.send("done");
      assert.equal((await holder.finish()).code, 0);
    }
    const free = await lockbox(c, ["holder", "--db", c.url, "job"]);
    assert.equal(free.code, 1);
    assert.equal(free.stdout.trim(), "free");
  },
);

pgTest(
  "lockbox run --db: a lost lock stops the command and says why",
  async (c) => {
    const run = lockboxChild(c, [
      "run",
      "--db",
      c.url,
      "lost",
      "sh",
      "-c",
      "echo locked; exec sleep 30",
    ]);
    await run.waitFor("locked");
    await c.sql(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE application_name = 'lockbox' AND pid IN (
       SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`,
    );
    const result = await run.finish(30_000);
    assert.equal(result.code, 128 + 15);
    assert.match(result.stderr, /Lost the lock 'lost'.*stopping the command/);
  },
);

/**
 * A command for `sh -c` that starts a worker in the background, prints
 * "pids SHELL WORKER" and "locked", and waits: the worker ignores SIGTERM
 * when `ignoreTerm`.
 */
function workerCommand(ignoreTerm: boolean): string {
  const worker = ignoreTerm
    ? `sh -c 'trap "" TERM; while :; do sleep 1; done'`
    : "sleep 300";
  return `${worker} & echo "pids $$ $!"; echo locked; wait`;
}

/**
 * A command for `sh -c` that prints "PID STATE" for each of `pids`, from
 * /proc (Z: exited, not yet reaped), or "PID gone".
 */
function statesCommand(pids: string[]): string {
  return `for p in ${pids.join(" ")}; do ` +
    `s=$(cat /proc/$p/stat 2>/dev/null) && s=\${s##*") "} && ` +
    `echo "$p \${s%% *}" || echo "$p gone"; done`;
}

/** The lines of `statesCommand` output whose process still runs. */
function stillRunning(states: string): string[] {
  return states.trim().split("\n").filter((line) => !/ (gone|Z)$/.test(line));
}

/**
 * Runs `lockbox run -n --db URL name` with `command` until it gets the
 * lock; its output.
 */
async function runOnceFree(
  c: Cluster,
  name: string,
  command: string,
): Promise<string> {
  for (let attempt = 0;; attempt++) {
    const run = await lockbox(c, [
      "run",
      "-n",
      "--db",
      c.url,
      name,
      "sh",
      "-c",
      command,
    ]);
    if (run.code === 0) return run.stdout;
    assert.equal(run.code, 1, run.stderr);
    if (attempt === 500) throw new Error(`'${name}' never came free`);
  }
}

/** Kills what a test left running (on the code before a fix). */
function killAll(pids: string[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone.
    }
  }
}

pgTest(
  "lockbox run --db keeps the lock until the command's whole group is stopped (SIGKILL after the grace) when lockbox is SIGKILLed, over TCP and a Unix socket",
  async (c) => {
    // `env`: the PG* variables, whose PGHOST is the socket directory.
    for (const url of [c.url, "env"]) {
      const first = lockboxChild(c, [
        "run",
        "--db",
        url,
        "oom",
        "sh",
        "-c",
        workerCommand(true),
      ]);
      const pids = (await first.waitFor("pids ")).split(" ").slice(1);
      try {
        await first.waitFor("locked");
        // The watchdog ignores what a terminal or a supervisor sends.
        const watchdogs = await output("pgrep", {
          args: ["-P", String(first.pid), "-f", "lockbox-watchdog"],
        });
        const watchdog = Number(new TextDecoder().decode(watchdogs.stdout));
        assert.ok(watchdog > 0, "no watchdog");
        for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
          Deno.kill(watchdog, signal);
        }
        first.process.kill("SIGKILL");
        // The first command that gets the lock next sees none of the
        // first one's processes running.
        const states = await runOnceFree(c, "oom", statesCommand(pids));
        assert.deepEqual(stillRunning(states), [], `${url}: ${states}`);
        await first.finish();
      } finally {
        killAll(pids);
      }
    }
  },
);

Deno.test({
  name:
    "PostgresBackend.acquire() gets the lock of a lockbox run --db behind a session-mode PgBouncer when lockbox and its watchdog stop (SIGSTOP)",
  // PgBouncer comes with .ci/run; elsewhere it is optional.
  ignore: NO_POSTGRES ||
    (PGBOUNCER === null && Deno.env.get("CI") !== "true"),
  fn: async () => {
    const c = await cluster();
    const bouncer = await startPgBouncer(c, "session");
    // The host is lost, as far as the server can tell: PgBouncer keeps the
    // run's server sessions, the lock's and its guard's, open and silent.
    const first = lockboxChild(c, [
      "run",
      "--db",
      bouncer.url,
      "host-lost",
      "sh",
      "-c",
      workerCommand(false),
    ]);
    const stopped: number[] = [];
    let pids: string[] = [];
    try {
      pids = (await first.waitFor("pids ")).split(" ").slice(1);
      await first.waitFor("locked");
      const watchdogs = await output("pgrep", {
        args: ["-P", String(first.pid), "-f", "lockbox-watchdog"],
      });
      const watchdog = Number(new TextDecoder().decode(watchdogs.stdout));
      assert.ok(watchdog > 0, "no watchdog");
      for (const pid of [first.pid, watchdog]) {
        Deno.kill(pid, "SIGSTOP");
        stopped.push(pid);
      }
      await using db = await PostgresBackend.connect(c.url);
      // The acquire's own timeout is the hang guard.
      const lock = await db.acquire("host-lost", { timeout: 60_000 });
      await lock.release();
    } finally {
      for (const pid of stopped) Deno.kill(pid, "SIGCONT");
      await first.finish(60_000);
      killAll(pids);
      await bouncer.stop();
    }
  },
});

pgTest(
  "lockbox run --db stops the command's whole group, with SIGKILL after a grace, before anyone else gets a lost lock",
  async (c) => {
    const first = lockboxChild(c, [
      "run",
      "--db",
      c.url,
      "terminated",
      "sh",
      "-c",
      workerCommand(true),
    ]);
    const pids = (await first.waitFor("pids ")).split(" ").slice(1);
    try {
      await first.waitFor("locked");
      // The session that holds the lock itself (not its guard's).
      await c.sql(
        `SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND classid = ${0x6c6f636b}`,
      );
      // The worker ignores SIGTERM: it runs until the grace ends, and the
      // next command to get the lock finds it gone.
      const states = await runOnceFree(c, "terminated", statesCommand(pids));
      assert.deepEqual(stillRunning(states), [], states);
      const result = await first.finish();
      assert.equal(result.code, 128 + 15);
      assert.match(result.stderr, /Lost the lock 'terminated'/);
    } finally {
      killAll(pids);
    }
  },
);

/**
 * Starts `lockbox run --db URL name` with a worker that ignores SIGTERM,
 * and ends the session of the lock itself (not its guard's) once the
 * command runs; the pids of the command's shell and worker.
 */
async function runAndTerminate(
  c: Cluster,
  name: string,
): Promise<{ first: Child; pids: string[] }> {
  const first = lockboxChild(c, [
    "run",
    "--db",
    c.url,
    name,
    "sh",
    "-c",
    workerCommand(true),
  ]);
  const pids = (await first.waitFor("pids ")).split(" ").slice(1);
  await first.waitFor("locked");
  await c.sql(
    `SELECT pg_terminate_backend(pid) FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND classid = ${0x6c6f636b}`,
  );
  return { first, pids };
}

/** The `statesCommand` output for `pids`, run from this process. */
async function states(pids: string[]): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", statesCommand(pids)],
  }).output();
  return new TextDecoder().decode(out.stdout);
}

pgTest(
  "PostgresBackend.tryAcquire() and acquire() get no lock, shared or exclusive, while a command whose lock was lost is being stopped",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    const db = await PostgresBackend.connect(c.url);
    const all: string[] = [];
    try {
      const tried = await runAndTerminate(c, "guarded");
      all.push(...tried.pids);
      for (const shared of [true, false]) {
        for (let attempt = 0;; attempt++) {
          const lock = await db.tryAcquire("guarded", { shared });
          if (lock === null) {
            assert.ok(attempt < 10_000, "the lock never came free");
            continue;
          }
          const now = await states(tried.pids);
          await lock.release();
          assert.deepEqual(stillRunning(now), [], `shared ${shared}: ${now}`);
          break;
        }
      }
      assert.equal((await tried.first.finish()).code, 128 + 15);

      const waited = await runAndTerminate(c, "guarded");
      all.push(...waited.pids);
      const lock = await db.acquire("guarded", { timeout: 60_000 });
      const now = await states(waited.pids);
      await lock.release();
      assert.deepEqual(stillRunning(now), [], now);
      assert.equal((await waited.first.finish()).code, 128 + 15);
    } finally {
      await db.close();
      killAll(all);
    }
  },
);

pgTest(
  "lockbox run --db holds the lock until what the command left in the background has ended",
  async (c) => {
    await withTempDir(async (dir) => {
      const run = lockboxChild(c, [
        "run",
        "--db",
        c.url,
        "background",
        "sh",
        "-c",
        `(while [ ! -e ${dir}/go ]; do sleep 0.05; done) & echo "shell $$"`,
      ]);
      const shell = (await run.waitFor("shell ")).split(" ")[1];
      // Once the shell has exited, only its background worker runs.
      while (stillRunning(await states([shell])).length > 0) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const held = await lockbox(c, [
        "run",
        "-n",
        "--db",
        c.url,
        "background",
        "true",
      ]);
      assert.equal(held.code, 1, held.stderr);
      await Deno.writeTextFile(`${dir}/go`, "");
      const result = await run.finish();
      assert.equal(result.code, 0, result.stderr);
      const free = await lockbox(c, [
        "run",
        "-n",
        "--db",
        c.url,
        "background",
        "true",
      ]);
      assert.equal(free.code, 0, free.stderr);
    });
  },
);

pgTest(
  "PostgresBackend.runWithLock() returns the command's status and leaves nothing held, in this process",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    const db = await PostgresBackend.connect(c.url);
    try {
      const result = await db.runWithLock("in-process", [
        "sh",
        "-c",
        "sleep 0.1 & exit 3",
      ]);
      assert.equal(result.code, 3);
      assert.equal(result.started, true);
      assert.equal(await db.lockHolder("in-process"), null);
      const lock = await db.tryAcquire("in-process");
      assert.notEqual(lock, null);
      await lock!.release();
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgresBackend.runWithLock() gives back the sessions of the lock and its guard without the server's idle limit when the command ends",
  async (c) => {
    const db = await PostgresBackend.connect(c.url, {
      applicationName: "guard-reuse",
    });
    try {
      const result = await db.runWithLock("guard-reuse", ["true"]);
      assert.equal(result.code, 0);
      const count = () =>
        c.sql(
          `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'guard-reuse'`,
        );
      const before = await count();
      // Past the 8 s idle_session_timeout of a lock-holding session.
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      assert.equal(await count(), before);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "lockbox run --db: an unreachable server exits 3 naming what to fix; a bad name exits 2",
  async (c) => {
    const down = await lockbox(c, [
      "run",
      "--db",
      "postgres://postgres@127.0.0.1:1/postgres",
      "x",
      "true",
    ]);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /check that the server runs/);
    const bad = await lockbox(c, [
      "run",
      "--db",
      c.url,
      "x".repeat(300),
      "true",
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /at most 200 characters/);
  },
);

pgTest(
  "lockbox store get/set/check/edit --db: a document the library made, changed and read by the CLI; invalid edits refused",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    const db = await PostgresBackend.connect(c.url);
    try {
      await db.jsonStore("settings", { initial: {} }).write({
        retries: 3,
        "it's": ["odd key"],
      });
      const got = await lockbox(c, [
        "store",
        "get",
        "--db",
        "env",
        "settings",
        "--pointer",
        "/retries",
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(got.stdout.trim(), "3");
      const set = await lockbox(c, [
        "store",
        "set",
        "--db",
        c.url,
        "settings",
        "/retries",
        "5",
      ]);
      assert.equal(set.code, 0, set.stderr);
      assert.deepEqual(
        await db.jsonStore("settings", { initial: {} }).readWithVersion(),
        { value: { retries: 5, "it's": ["odd key"] }, version: 2 },
      );
      // A fence no holder will reach, forgotten by reset-fence.
      const settings = db.jsonStore("settings", { initial: {} });
      await settings.update(() => {}, { fence: 1000 });
      await assert.rejects(settings.update(() => {}, { fence: 3 }), {
        name: "StaleFenceError",
      });
      const reset = await lockbox(c, [
        "store",
        "reset-fence",
        "--db",
        c.url,
        "settings",
      ]);
      assert.equal(reset.code, 0, reset.stderr);
      await settings.update(() => {}, { fence: 3 });
      const missing = await lockbox(c, ["store", "get", "--db", c.url, "nope"]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no such document/);
      const check = await lockbox(c, [
        "store",
        "check",
        "--db",
        c.url,
        "settings",
        "nope",
      ]);
      assert.equal(check.code, 1);
      assert.match(check.stdout, /ok settings \(version 2\)/);
      assert.match(check.stdout, /missing nope/);

      await withTempDir(async (dir) => {
        // An "editor" that writes what the test says.
        const editor = `${dir}/editor.sh`;
        await Deno.writeTextFile(
          editor,
          `#!/bin/sh\ncat "${dir}/next" > "$1"\n`,
        );
        await Deno.chmod(editor, 0o755);
        const edit = async (text: string) => {
          await Deno.writeTextFile(`${dir}/next`, text);
          const result = await output(Deno.execPath(), {
            args: [
              "run",
              "--allow-all",
              "--quiet",
              CLI,
              "store",
              "edit",
              "--db",
              c.url,
              "settings",
            ],
            env: { ...c.env, EDITOR: editor, VISUAL: "" },
            stdin: "null",
          });
          return {
            code: result.code,
            stderr: new TextDecoder().decode(result.stderr),
          };
        };
        const bad = await edit("{ not json");
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /not valid JSON/);
        assert.equal(
          (await db.jsonStore("settings", { initial: {} }).readWithVersion())
            .version,
          2,
        );
        const good = await edit('{"retries": 9}');
        assert.equal(good.code, 0, good.stderr);
        assert.deepEqual(
          await db.jsonStore("settings", { initial: {} }).read(),
          { retries: 9 },
        );
      });
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "lockbox groups, ops, state, files and batch --db keep the seed systems on the database",
  async (c) => {
    await withTempDir(async (dir) => {
      const ok = async (args: string[]) => {
        const result = await lockbox(c, args);
        assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
        return result.stdout.trim();
      };
      const group = await ok(["groups", "--db", c.url, "create"]);
      await ok(["groups", "--db", c.url, "add", group, "t1", "t2"]);
      assert.deepEqual(
        JSON.parse(await ok(["groups", "--db", c.url, "show", group]))
          .transactions,
        ["t1", "t2"],
      );
      const op = await ok(["ops", "--db", c.url, "register", group]);
      assert.equal(await ok(["ops", "--db", c.url, "get", op]), group);
      const noGroup = await lockbox(c, ["ops", "--db", c.url, "register", "x"]);
      assert.equal(noGroup.code, 1);

      await ok([
        "state",
        "--db",
        c.url,
        "--state",
        "archiver",
        "--failures",
        "archiver-failures",
        "record",
        "--succeeded",
        "100-102",
        "--failed",
        "103",
      ]);
      assert.equal(
        await ok(["state", "--db", c.url, "--state", "archiver", "next"]),
        "103",
      );

      await Deno.mkdir(`${dir}/repo`);
      await Deno.writeTextFile(`${dir}/repo/a.mcam`, "G0");
      const files = ["files", "--db", c.url, "--repo", `${dir}/repo`];
      await ok([
        ...files,
        "--registry",
        "checkouts",
        "checkout",
        "a.mcam",
        "--user",
        "ann",
      ]);
      const taken = await lockbox(c, [
        ...files,
        "--registry",
        "checkouts",
        "checkout",
        "a.mcam",
        "--user",
        "bob",
      ]);
      assert.equal(taken.code, 1);
      assert.match(
        await ok([...files, "--registry", "checkouts", "list"]),
        /checked out by ann/,
      );

      // The library sees what the CLI wrote.
      const { PostgresBackend } = await import("../../src/postgres/mod.ts");
      const db = await PostgresBackend.connect(c.url);
      try {
        assert.deepEqual(
          await db.jsonStore("archiver-failures", { initial: [] }).read(),
          [103],
        );
        // batch --db: a file whose name another holds is reported locked.
        await Deno.writeTextFile(`${dir}/x.txt`, "x");
        await Deno.writeTextFile(`${dir}/y.txt`, "y");
        const held = await db.acquire(`${dir}/y.txt`);
        const batch = await lockbox(c, [
          "batch",
          "--db",
          c.url,
          "--lock-timeout",
          "0.2",
          `${dir}/x.txt`,
          `${dir}/y.txt`,
          "--",
          "true",
        ]);
        await held.release();
        assert.equal(batch.code, 1);
        assert.match(batch.stdout, /ok .*x\.txt/);
        assert.match(batch.stdout, /locked .*y\.txt/);
        // No lock file was made beside the files.
        assert.equal(
          [...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".lock")),
          false,
        );
      } finally {
        await db.close();
      }
    });
  },
);

pgTest(
  "lockbox migrate --db: file stores (whole-file and journal) become documents, under both locks; a different document is refused without --replace",
  async (c) => {
    await withTempDir(async (dir) => {
      const { CaptureGroups, JsonStore } = await import("../../mod.ts");
      const groups = new CaptureGroups(`${dir}/groups_to_move.json`);
      const id = await groups.create();
      await groups.addTransaction(id, "t1");
      const journal = new JsonStore(`${dir}/counter.json`, {
        initial: { n: 0 },
        journal: true,
      });
      for (let i = 0; i < 5; i++) await journal.update((d) => void d.n++);
      const moved = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/groups_to_move.json`,
        `${dir}/counter.json=jobs/counter`,
      ]);
      assert.equal(moved.code, 0, moved.stderr);
      assert.match(
        moved.stdout,
        /copied .*groups_to_move\.json -> groups_to_move/,
      );
      assert.match(moved.stdout, /copied .*counter\.json -> jobs\/counter/);
      const listed = await lockbox(c, [
        "groups",
        "--db",
        c.url,
        "--name",
        "groups_to_move",
        "list",
      ]);
      assert.equal(listed.stdout.trim(), id);
      const counter = await lockbox(c, [
        "store",
        "get",
        "--db",
        c.url,
        "jobs/counter",
      ]);
      assert.deepEqual(JSON.parse(counter.stdout), { n: 5 });

      const again = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/groups_to_move.json`,
      ]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /same .*already there/);

      await groups.addTransaction(id, "t2");
      const differs = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/groups_to_move.json`,
        `${dir}/missing.json`,
      ]);
      assert.equal(differs.code, 1);
      assert.match(differs.stderr, /already holds something else/);
      assert.match(differs.stderr, /missing\.json.*no such file/);
      const replaced = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        "--replace",
        `${dir}/groups_to_move.json`,
      ]);
      assert.equal(replaced.code, 0, replaced.stderr);
      const show = await lockbox(c, [
        "groups",
        "--db",
        c.url,
        "--name",
        "groups_to_move",
        "show",
        id,
      ]);
      assert.deepEqual(JSON.parse(show.stdout).transactions, ["t1", "t2"]);
    });
  },
);

/** Runs a Python program with `args` (sys.argv[1:]); its stdout. */
async function python(program: string, ...args: string[]): Promise<string> {
  const result = await output("python3", { args: ["-c", program, ...args] });
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(result.code, 0, decode(result.stderr));
  return decode(result.stdout);
}

pgTest(
  "lockbox migrate --db keeps a Python-written file's number texts, key order and text in the json column; NaN is refused",
  async (c) => {
    await withTempDir(async (dir) => {
      await python(
        String.raw`import json, sys
doc = {"b": 1, "10": "ten", "2": "two", "big": 12345678901234567890123,
       "edge": 9007199254740993, "neg": -9007199254740993, "one": 1.0,
       "negzero": -0.0, "small": 1e-07, "float": 1700000000.0,
       "huge": 10**30, "tiny": 5e-324, "nested": {"3": [1.0, {"20": None, "1": True}], "a": 2.50},
       "text": "caf\u00e9 \u2603 \U0001F600 nul\u0000 lone\ud800 \"q\" \\ \n"}
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=2)
with open(sys.argv[2], "w") as f:
    json.dump({"n": [1, float("nan")]}, f)`,
        `${dir}/py.json`,
        `${dir}/nan.json`,
      );
      // Forms Python reads but never writes: kept as written too.
      const handText =
        '{"x": 1e400, "big": 12345678901234567890123, "y": [1E+2, 0.10, -0], "z": "\\u00e9"}';
      await Deno.writeTextFile(`${dir}/hand.json`, handText);
      const fileBytes = await Deno.readFile(`${dir}/py.json`);

      const moved = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/py.json`,
        `${dir}/hand.json`,
        `${dir}/nan.json`,
      ]);
      assert.equal(moved.code, 1, moved.stderr);
      assert.match(moved.stdout, /copied .*py\.json -> py /);
      assert.match(moved.stdout, /copied .*hand\.json -> hand /);
      assert.match(moved.stderr, /failed .*nan\.json -> nan: .*NaN/);
      assert.deepEqual(await Deno.readFile(`${dir}/py.json`), fileBytes);
      assert.equal(
        await c.sql(
          "SELECT count(*) FROM lockbox.documents WHERE name = 'nan'",
        ),
        "0",
      );

      const stored = await c.sql(
        "SELECT value::text FROM lockbox.documents WHERE name = 'py'",
      );
      await Deno.writeTextFile(`${dir}/stored.json`, stored);
      // Python reads the column back as it wrote the file: dumped again
      // with the file's settings, byte for byte the file.
      assert.equal(
        await python(
          `import json, sys
stored = json.load(open(sys.argv[1]))
sys.stdout.write(json.dumps(stored, indent=2))`,
          `${dir}/stored.json`,
        ),
        new TextDecoder().decode(fileBytes),
      );
      assert.equal(
        await c.sql(
          "SELECT value::text FROM lockbox.documents WHERE name = 'hand'",
        ),
        // Escapes are not values: \u00e9 is stored as the character.
        handText.replace("\\u00e9", "\u00e9"),
      );
      // The server reads the same numbers.
      assert.equal(
        await c.sql(
          "SELECT (value ->> 'big') || ' ' || (value -> 'y' ->> 1) FROM lockbox.documents WHERE name = 'hand'",
        ),
        "12345678901234567890123 0.10",
      );

      const again = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/py.json`,
        `${dir}/hand.json`,
      ]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout.match(/^same .*already there/gm)?.length, 2);
    });
  },
);

pgTest(
  "lockbox migrate --db reads FILE=NAME unambiguously: an existing file is a file whole, else the split is at the last '=' that follows an existing file; --name takes one file as it is",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/k=v.json`, '{"from": "k=v.json"}');
      await Deno.writeTextFile(`${dir}/k`, '{"from": "k"}');
      const moved = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/k=v.json`,
        `${dir}/k=v.json=a=b`,
        `${dir}/k=doc`,
        `${dir}/k=p=q`,
      ]);
      assert.equal(moved.code, 0, moved.stderr);
      const named = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        "--name",
        "x=y",
        `${dir}/k=v.json`,
      ]);
      assert.equal(named.code, 0, named.stderr);
      await using db = await PostgresBackend.connect(c.url);
      const read = (name: string) =>
        db.jsonStore<unknown>(name, { initial: null }).read();
      assert.deepEqual(await read("k=v"), { from: "k=v.json" });
      assert.deepEqual(await read("a=b"), { from: "k=v.json" });
      assert.deepEqual(await read("doc"), { from: "k" });
      assert.deepEqual(await read("p=q"), { from: "k" });
      assert.deepEqual(await read("x=y"), { from: "k=v.json" });
      assert.equal(await read("v.json"), null);

      const missing = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        `${dir}/nothing=doc`,
      ]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /nothing=doc': no such file/);
      const two = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        "--name",
        "n",
        `${dir}/k`,
        `${dir}/k=v.json`,
      ]);
      assert.equal(two.code, 2);
      assert.match(two.stderr, /Cannot use --name with 2 files/);
      assert.equal(await read("n"), null);
    });
  },
);

pgTest(
  "lockbox store watch --db: the document now and each new version, ending with status 143 (128 + 15) on SIGTERM",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore("watched-by-cli", { initial: { n: 0 } });
      await store.write({ n: 1 });
      const watching = lockboxChild(c, [
        "store",
        "watch",
        "--db",
        "env",
        "--json",
        "watched-by-cli",
      ]);
      assert.deepEqual(JSON.parse(await watching.waitFor('{"version":1')), {
        version: 1,
        value: { n: 1 },
      });
      await store.write({ n: 2 });
      await watching.waitFor('{"version":2,"value":{"n":2}}');
      watching.process.kill("SIGTERM");
      const result = await watching.finish();
      assert.equal(result.code, 143, result.stderr);
      assert.equal(result.stderr, "");
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "lockbox store get/set/delete/check --db: the pointer after NAME, --raw, --string, - on a missing parent, check --json",
  async (c) => {
    const { PostgresBackend } = await import("../../src/postgres/mod.ts");
    const db = await PostgresBackend.connect(c.url);
    try {
      const doc = db.jsonStore<unknown>("app", { initial: {} });
      await doc.write({ name: "web-1", retries: 3 });
      const ok = async (args: string[]) => {
        const out = await lockbox(c, args);
        assert.equal(out.code, 0, `${args.join(" ")}: ${out.stderr}`);
        return out.stdout;
      };
      const at = ["--db", c.url, "app"];
      assert.equal(
        await ok(["store", "get", "--raw", ...at, "/name"]),
        "web-1\n",
      );
      assert.equal(
        await ok(["store", "get", ...at, "--pointer", "/name"]),
        '"web-1"\n',
      );
      await ok(["store", "set", ...at, "/jobs/-", '"a"']);
      await ok(["store", "set", "--string", ...at, "/owner", "ops"]);
      await ok(["store", "delete", ...at, "/retries"]);
      assert.deepEqual(await doc.readWithVersion(), {
        value: { name: "web-1", jobs: ["a"], owner: "ops" },
        version: 4,
      });
      const absent = await lockbox(c, ["store", "delete", ...at, "/retries"]);
      assert.equal(absent.code, 1);
      await ok(["store", "delete", "-f", ...at, "/retries"]);
      const never = await lockbox(c, [
        "store",
        "delete",
        "--db",
        c.url,
        "none",
        "/x",
      ]);
      assert.equal(never.code, 1);
      // Nothing there wrote nothing: no new version, no new document.
      assert.equal((await doc.readWithVersion()).version, 4);
      const check = await lockbox(c, [
        "store",
        "check",
        "--json",
        "--db",
        c.url,
        "app",
        "none",
      ]);
      assert.equal(check.code, 1);
      assert.deepEqual(JSON.parse(check.stdout), [
        { file: "app", status: "ok", version: 4 },
        { file: "none", status: "missing" },
      ]);
    } finally {
      await db.close();
    }
  },
);

stopAfterwards();
