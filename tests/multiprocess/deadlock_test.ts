// Deadlocks across processes: lockbox processes (Deno and Node) and flock(1)
// waiting for each other's locks in a cycle. Exactly one lockbox process of
// each cycle fails with DeadlockError and the others finish; waits that are
// merely long, or nested in one order everywhere, never fail.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  formatLockStatus,
  listLocks,
  lockInfo,
  readWaitGraph,
  withLock,
} from "../../mod.ts";
import { Child, output, spawnWorker, withTempDir } from "../_helpers.ts";

/** `lockbox ARGS...` from the source; its stdout. */
async function lockbox(...args: string[]): Promise<string> {
  const cli = fileURLToPath(new URL("../../cli.ts", import.meta.url));
  const result = await output(Deno.execPath(), {
    args: ["run", "--allow-all", cli, ...args],
  });
  return new TextDecoder().decode(result.stdout);
}

/** Hang guard: without detection these cycles never end. */
const GUARD = 30_000;

const NODE_BUILD = new URL("../../dist/npm/", import.meta.url);

function nodeNest(args: string[]): Child {
  try {
    Deno.statSync(new URL("node_modules/koffi/", NODE_BUILD));
  } catch {
    throw new Error(
      "The Node build in dist/npm is missing: run `deno task build:npm --install` first (deno task test does)",
    );
  }
  return new Child(
    "node",
    [
      fileURLToPath(new URL("../node/workers/nest.mjs", import.meta.url)),
      ...args,
    ],
    { stdin: true, env: { LOCKBOX_NODE_PACKAGE: fileURLToPath(NODE_BUILD) } },
  );
}

function denoNest(args: string[]): Child {
  return spawnWorker("nest.ts", args, { stdin: true });
}

/**
 * Lets every child take its first lock, then go for the next ones; returns
 * each child's last line ("done", or "deadlock <cycle>").
 */
async function runCycle(children: Child[]): Promise<string[]> {
  try {
    await Promise.all(children.map((child) => child.waitFor("holding")));
    for (const child of children) await child.send("go");
    const results = await Promise.all(
      children.map((child) => child.finish(GUARD)),
    );
    for (const [i, result] of results.entries()) {
      assert.equal(
        result.code,
        0,
        `child ${children[i].pid}: ${result.stderr}`,
      );
    }
    return results.map((result) => result.lines.at(-1) ?? "");
  } catch (error) {
    for (const child of children) await child.kill().catch(() => {});
    throw error;
  }
}

/** The one "deadlock" line's cycle, checked against the processes. */
function oneDeadlock(
  lines: string[],
  children: Child[],
  locks: string[],
): { victim: number; cycle: { pid: number; lock: string }[] } {
  const failed = lines.flatMap((line, i) =>
    line.startsWith("deadlock ") ? [i] : []
  );
  assert.equal(failed.length, 1, `exactly one DeadlockError: ${lines}`);
  for (const [i, line] of lines.entries()) {
    if (i !== failed[0]) assert.equal(line, "done");
  }
  const cycle = JSON.parse(lines[failed[0]].slice("deadlock ".length));
  assert.equal(cycle[0].pid, children[failed[0]].pid);
  assert.deepEqual(
    cycle.map((step: { pid: number }) => step.pid).sort(),
    children.map((child) => child.pid).sort(),
  );
  assert.deepEqual(
    cycle.map((step: { lock: string }) => step.lock).sort(),
    locks.map((lock) => `${lock}.lock`).sort(),
  );
  return { victim: children[failed[0]].pid, cycle };
}

Deno.test("withLock() fails exactly one of two Deno processes with DeadlockError when they take two locks in opposite orders", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    // The default deadlockTimeout (1 s).
    const children = [denoNest([a, b]), denoNest([b, a])];
    const lines = await runCycle(children);
    const { victim, cycle } = oneDeadlock(lines, children, [a, b]);
    // The highest pid gives up, and names what it waited for.
    assert.equal(victim, Math.max(...children.map((child) => child.pid)));
    assert.equal(
      cycle[0].lock,
      victim === children[0].pid ? `${b}.lock` : `${a}.lock`,
    );
  });
});

Deno.test("withLock() fails exactly one of three Deno processes with DeadlockError in a three-lock cycle", async () => {
  await withTempDir(async (dir) => {
    const [a, b, c] = [`${dir}/a`, `${dir}/b`, `${dir}/c`];
    const t = ["--deadlock-timeout", "200"];
    const children = [
      denoNest([...t, a, b]),
      denoNest([...t, b, c]),
      denoNest([...t, c, a]),
    ];
    oneDeadlock(await runCycle(children), children, [a, b, c]);
  });
});

Deno.test("withLock() fails the Deno process, never flock(1), when a flock(1) command is in the cycle", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    const deno = denoNest(["--deadlock-timeout", "200", a, b]);
    await deno.waitFor("holding");
    // flock(1) holds b.lock and runs a shell that, on "go", waits for
    // a.lock in a flock(1) of its own: started later, so its pid is higher.
    const flock = new Child("flock", [
      `${b}.lock`,
      "sh",
      "-c",
      'echo holding; read -r _; flock "$0" true && echo done',
      `${a}.lock`,
    ], { stdin: true });
    assert.ok(flock.pid > deno.pid);
    const lines = await runCycle([deno, flock]);
    assert.match(lines[0], /^deadlock /);
    assert.equal(lines[1], "done");
    const cycle = JSON.parse(lines[0].slice("deadlock ".length));
    assert.deepEqual(cycle, [
      { pid: deno.pid, lock: `${b}.lock` },
      { pid: flock.pid, lock: `${a}.lock` },
    ]);
  });
});

Deno.test("withLock() fails the Deno process, never Python, when a Python fcntl.flock holder is in the cycle", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    const deno = denoNest(["--deadlock-timeout", "200", a, b]);
    await deno.waitFor("holding");
    // Started later: its pid is higher, and it is still not the one to fail.
    const python = new Child("python3", [
      fileURLToPath(new URL("./workers/py_nest.py", import.meta.url)),
      `${b}.lock`,
      `${a}.lock`,
    ], { stdin: true });
    assert.ok(python.pid > deno.pid);
    const lines = await runCycle([deno, python]);
    assert.equal(lines[1], "done");
    assert.deepEqual(JSON.parse(lines[0].slice("deadlock ".length)), [
      { pid: deno.pid, lock: `${b}.lock` },
      { pid: python.pid, lock: `${a}.lock` },
    ]);
  });
});

Deno.test("withLock() in a command under lockbox run fails as its lockbox run when that is the cycle's highest pid", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    const t = ["--deadlock-timeout", "200"];
    // Started first: the lower pid. Holds b, then (on "go") waits for a.
    const other = denoNest([...t, b, a]);
    await other.waitFor("holding");
    // lockbox run holds a.lock while its command waits for b: the command
    // holds nothing itself, and its wait is lockbox run's.
    const cli = fileURLToPath(new URL("../../cli.ts", import.meta.url));
    const run = new Child(Deno.execPath(), [
      "run",
      "--allow-all",
      "--quiet",
      cli,
      "run",
      `${a}.lock`,
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      fileURLToPath(new URL("./workers/nest.ts", import.meta.url)),
      ...t,
      b,
    ], { stdin: true });
    try {
      for (let i = 0; i < 600; i++) {
        const info = await lockInfo(`${a}.lock`).catch(() => null);
        if (info?.holders.includes(run.pid)) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.deepEqual((await lockInfo(`${a}.lock`)).holders, [run.pid]);
      assert.ok(run.pid > other.pid);
      await other.send("go");
      const [ran, rest] = await Promise.all([
        run.finish(GUARD),
        other.finish(GUARD),
      ]);
      assert.equal(rest.lines.at(-1), "done", rest.stderr);
      assert.equal(ran.code, 0, ran.stderr);
      assert.deepEqual(
        JSON.parse(ran.lines.at(-1)!.slice("deadlock ".length)),
        [{ pid: run.pid, lock: `${b}.lock` }, {
          pid: other.pid,
          lock: `${a}.lock`,
        }],
      );
    } finally {
      await run.kill().catch(() => {});
      await other.kill().catch(() => {});
    }
  });
});

Deno.test("withLock() fails exactly one of a Node and a Deno process with DeadlockError when they take two locks in opposite orders", async () => {
  await withTempDir(async (dir) => {
    const [a, b, c] = [`${dir}/a`, `${dir}/b`, `${dir}/c`];
    const t = ["--deadlock-timeout", "200"];
    // Node waits in a flock(1) helper process: its waits are Node's.
    const two = [nodeNest([...t, a, b]), denoNest([...t, b, a])];
    oneDeadlock(await runCycle(two), two, [a, b]);
    const three = [
      denoNest([...t, a, b]),
      nodeNest([...t, b, c]),
      nodeNest([...t, c, a]),
    ];
    oneDeadlock(await runCycle(three), three, [a, b, c]);
  });
});

Deno.test("withLock() never fails a wait for a holder that is merely slow, or one in a chain that is not a cycle", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    const t = ["--deadlock-timeout", "50"];
    // 1 holds b and waits for a; 2 holds a for a while (no wait at all);
    // 3 waits for b: a chain 3 -> 1 -> 2, long past the threshold.
    const holder = denoNest([...t, a]);
    await holder.waitFor("holding");
    const middle = denoNest([...t, b, a]);
    await middle.waitFor("holding");
    await middle.send("go");
    const tail = denoNest([...t, b]);
    let graph;
    for (let i = 0; i < 100; i++) {
      graph = await readWaitGraph([dir]);
      graph.edges = graph.edges.filter((edge) => edge.lockPath.startsWith(dir));
      if (graph.edges.length >= 2) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(
      graph!.edges.map((
        edge,
      ) => [edge.waiter, edge.lockPath, edge.holder]),
      [[middle.pid, `${a}.lock`, holder.pid], [
        tail.pid,
        `${b}.lock`,
        middle.pid,
      ]],
    );
    assert.deepEqual(
      graph!.cycles.filter((set) => set.includes(holder.pid)),
      [],
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    await holder.send("go");
    const results = await Promise.all(
      [holder, middle, tail].map((child) => child.finish(GUARD)),
    );
    for (const result of results) assert.equal(result.lines.at(-1), "done");
  });
});

Deno.test("withLock() in 8 processes nesting locks in one order raises no DeadlockError in thousands of acquisitions", async () => {
  await withTempDir(async (dir) => {
    const children = Array.from(
      { length: 8 },
      (_, i) => spawnWorker("ordered.ts", [dir, "110", String(i)]),
    );
    const results = await Promise.all(
      children.map((child) => child.finish(GUARD)),
    );
    let acquisitions = 0;
    for (const result of results) {
      assert.equal(result.code, 0, result.stderr);
      const [, count, deadlocks] = result.lines.at(-1)!.split(" ");
      assert.equal(deadlocks, "0");
      acquisitions += Number(count);
    }
    assert.ok(acquisitions >= 2000, `${acquisitions} acquisitions`);
  });
});

Deno.test("listLocks() and lockbox status show the processes waiting for a lock, and status --waits marks a deadlock", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = [`${dir}/a`, `${dir}/b`];
    // Never give up: the cycle stays for the monitor to see.
    const t = ["--deadlock-timeout", "Infinity"];
    const children = [denoNest([...t, a, b]), nodeNest([...t, b, a])];
    try {
      await Promise.all(children.map((child) => child.waitFor("holding")));
      for (const child of children) await child.send("go");
      let infos;
      for (let i = 0; i < 200; i++) {
        infos = await listLocks(dir);
        if (infos.every((info) => info.waiters.length > 0)) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const [deno, node] = children;
      assert.deepEqual(
        infos!.map((
          info,
        ) => [
          info.lockPath,
          info.holders,
          info.waiters.map((w) => [w.pid, w.mode]),
        ]),
        [
          [`${a}.lock`, [deno.pid], [[node.pid, "exclusive"]]],
          [`${b}.lock`, [node.pid], [[deno.pid, "exclusive"]]],
        ],
      );
      // The Node process, not its flock(1) helper, with its command line.
      assert.match(infos![0].waiters[0].command!, /nest\.mjs/);
      const table = formatLockStatus(infos!, { width: 200 });
      assert.match(
        table,
        new RegExp(`\\n  waiting +- +exclusive +${node.pid} .*nest\\.mjs`),
      );
      assert.match(
        await lockbox("status", dir),
        new RegExp(`waiting +- +exclusive +${deno.pid} `),
      );
      const waits = await lockbox("status", "--waits", dir);
      const mine = waits.split("\n").filter((line) => line.includes(dir));
      assert.deepEqual(mine.map((line) => line.replace(/ \(.*?\)/g, "")), [
        `DEADLOCK pid ${node.pid} waits for ${a}.lock, held by pid ${deno.pid}`,
        `DEADLOCK pid ${deno.pid} waits for ${b}.lock, held by pid ${node.pid}`,
      ]);
      const pair = [deno.pid, node.pid].sort((x, y) => x - y);
      assert.ok(
        waits.includes(
          `deadlock: pids ${pair.join(", ")} wait for each other in a cycle`,
        ),
        waits,
      );
    } finally {
      for (const child of children) await child.kill();
    }
  });
});

Deno.test("withLock() still refuses at once a wait for a lock its own call chain holds", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      withLock(`${dir}/a`, () => withLock(`${dir}/a`, () => {})),
      /already holds it/,
    );
  });
});
