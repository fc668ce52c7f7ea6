// `lockbox run` and signals: what it passes on to the command and its
// process group, how it exits, what it leaves running or locked, and the
// terminal it keeps the command on. Compared with flock(1) where it has a
// counterpart.

import assert from "node:assert/strict";
import { Child, delay, output, withTempDir } from "../_helpers.ts";
import { CLI, holdWithFlock, quoted, run } from "./_cli.ts";

Deno.test("lockbox run passes SIGTERM on to the command and exits 128+15 when it dies of it", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const trapped = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      L,
      "sh",
      "-c",
      "trap 'exit 9' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    await trapped.waitFor("ready");
    Deno.kill(trapped.pid, "SIGTERM"); // only lockbox, not its child
    assert.equal((await trapped.finish()).code, 9);

    const plain = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      L,
      "sh",
      "-c",
      "echo ready; exec sleep 30",
    ]);
    await plain.waitFor("ready");
    const started = Date.now();
    Deno.kill(plain.pid, "SIGTERM");
    assert.equal((await plain.finish()).code, 143);
    assert.ok(Date.now() - started < 20_000, "the command was not killed");
    assert.equal((await run(["flock", "-n", L, "true"])).code, 0);
  });
});

/** Whether process `pid` runs (a zombie has exited, and does not). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

Deno.test("lockbox run passes SIGTERM and SIGHUP on to everything the command started in its group", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    for (const signal of ["SIGTERM", "SIGHUP"] as const) {
      const child = new Child(CLI[0], [
        ...CLI.slice(1),
        "run",
        L,
        "sh",
        "-c",
        'sleep 300 & echo "worker $!"; wait',
      ]);
      const worker = Number((await child.waitFor("worker ")).split(" ")[1]);
      try {
        Deno.kill(child.pid, signal); // only lockbox
        const status = await child.finish(20_000);
        assert.equal(status.signal, null, `lockbox died of ${signal}`);
        assert.equal(status.code, 128 + (signal === "SIGTERM" ? 15 : 1));
        // Sent to the group before lockbox exits, the signal ends the worker
        // once the worker is next scheduled, which on a loaded machine can
        // come after lockbox's exit.
        const deadline = Date.now() + 10_000;
        while (running(worker) && Date.now() < deadline) await delay(20);
        assert.equal(running(worker), false, `the worker outlived ${signal}`);
        assert.equal((await run(["flock", "-n", L, "true"])).code, 0);
      } finally {
        if (running(worker)) Deno.kill(worker, "SIGKILL");
      }
    }
  });
});

Deno.test("lockbox run on a terminal keeps the command on it (a /dev/tty to ask on), as flock(1) does", async () => {
  await withTempDir(async (dir) => {
    // script(1) gives lockbox a terminal; a command in a session of its own
    // would have no controlling terminal and could not open /dev/tty.
    const out = await run([
      "script",
      "-qec",
      `${quoted} run ${dir}/job.lock sh -c ': < /dev/tty && echo tty-ok'`,
      "/dev/null",
    ]);
    assert.equal(out.code, 0, out.stdout);
    assert.match(out.stdout, /tty-ok/);
  });
});

/** The pids of processes whose command line contains `marker`. */
async function processesWith(marker: string): Promise<number[]> {
  const out = await output("pgrep", { args: ["-f", marker] });
  return new TextDecoder().decode(out.stdout).trim().split("\n")
    .filter(Boolean).map(Number);
}

Deno.test("lockbox run passes SIGINT and SIGTERM sent at any moment after the command starts, and leaves nothing running", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    for (let round = 0; round < 12; round++) {
      const signal = round % 2 ? "SIGINT" : "SIGTERM";
      // The marker names this round's command, to find it if it is orphaned.
      const marker = `${dir}/started-${round}`;
      const child = new Child(CLI[0], [
        ...CLI.slice(1),
        "run",
        L,
        "sh",
        "-c",
        "echo ready; while :; do sleep 0.05; done",
        marker,
      ]);
      await child.waitFor("ready");
      await delay(Math.random() * 50);
      Deno.kill(child.pid, signal);
      const status = await child.finish(20_000);
      assert.equal(status.signal, null, `round ${round}: lockbox died of it`);
      assert.equal(status.code, signal === "SIGINT" ? 130 : 143);
      assert.deepEqual(await processesWith(marker), [], "orphaned command");
      assert.equal((await run(["flock", "-n", L, "true"])).code, 0);
    }
  });
});

Deno.test("lockbox run stops waiting for the lock on SIGTERM and never starts the command", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const holder = await holdWithFlock(L, "-x");
    try {
      const waiting = new Child(CLI[0], [
        ...CLI.slice(1),
        "run",
        "--verbose",
        L,
        "touch",
        `${dir}/ran`,
      ]);
      // Waiting: the kernel lists its flock as blocked ("->", its pid) once
      // it sleeps in the wait. (Other processes' waits do not count.)
      const blocked = new RegExp(
        `-> FLOCK\\s+ADVISORY\\s+WRITE\\s+${waiting.pid} `,
      );
      const deadline = Date.now() + 30_000;
      while (!blocked.test(await Deno.readTextFile("/proc/locks"))) {
        assert.ok(Date.now() < deadline, "lockbox run never waited");
        await delay(10);
      }
      Deno.kill(waiting.pid, "SIGTERM");
      const status = await waiting.finish(20_000);
      // Exited by itself (a default SIGTERM death has a signal, no code).
      assert.equal(status.signal, null);
      assert.equal(status.code, 143);
    } finally {
      await holder.release();
    }
    assert.equal(await Deno.lstat(`${dir}/ran`).catch(() => null), null);
  });
});

Deno.test("lockbox run's command keeps the lock when lockbox is SIGKILLed, as flock(1)'s does; -o does not pass it on", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    for (const runner of ["flock", "lockbox"]) {
      for (const close of [false, true]) {
        const argv = [
          ...(close ? ["-o"] : []),
          L,
          "sh",
          "-c",
          "echo ready; cat",
        ];
        const child = runner === "flock"
          ? new Child("flock", argv, { stdin: true })
          : new Child(CLI[0], [...CLI.slice(1), "run", ...argv], {
            stdin: true,
          });
        await child.waitFor("ready");
        const command = (await processesWith(`ready; cat`)).filter((pid) =>
          pid !== child.pid
        );
        child.process.kill("SIGKILL");
        await child.process.status;
        const what = `${runner}${close ? " -o" : ""}`;
        assert.equal(
          (await run(["flock", "-n", L, "true"])).code,
          close ? 0 : 1,
          `${what}: the command ${close ? "must not hold" : "holds"} the lock`,
        );
        // The command (sh, reading its stdin) ends when its stdin closes.
        await child.finish(20_000);
        for (const pid of command) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Already gone.
          }
        }
        const deadline = Date.now() + 20_000;
        while ((await run(["flock", "-n", L, "true"])).code !== 0) {
          assert.ok(Date.now() < deadline, `${what}: the lock stays held`);
          await delay(20);
        }
      }
    }
  });
});

Deno.test("lockbox run started with SIGHUP and SIGINT ignored (nohup, a shell's background job) keeps ignoring them, as flock(1) does, while waiting and while the command runs", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const holder = await holdWithFlock(L, "-x");
    // Ignored by the shell that execs it: a background job's SIGINT, nohup's
    // SIGHUP. SIGTERM is not, and still ends the wait.
    const started = new Child("sh", [
      "-c",
      `trap '' HUP INT; exec ${quoted} run ${L} sh -c 'echo started; sleep 1; echo survived'`,
    ]);
    await delay(1000);
    Deno.kill(started.pid, "SIGHUP");
    Deno.kill(started.pid, "SIGINT");
    await delay(200);
    await holder.release();
    await started.waitFor("started");
    Deno.kill(started.pid, "SIGHUP");
    Deno.kill(started.pid, "SIGINT");
    const done = await started.finish();
    assert.equal(done.code, 0, done.stderr);
    assert.ok(done.lines.includes("survived"), done.lines.join("\n"));
    // Not ignored: SIGHUP is passed on, and the run ends 128+1.
    const plain = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      L,
      "sh",
      "-c",
      "echo started; sleep 5",
    ]);
    await plain.waitFor("started");
    Deno.kill(plain.pid, "SIGHUP");
    assert.equal((await plain.finish()).code, 129);
  });
});
