// `lockbox run`, `holder` and `status` with `--db`: lock names on a real
// throwaway PostgreSQL cluster instead of lock files.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Child, output, withTempDir } from "../_helpers.ts";
import { type Cluster, pgSuite } from "./_cluster.ts";

const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));

const { test: pgTest, stopAfterwards } = pgSuite("lockbox --db");

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

stopAfterwards();
