// `lockbox status` and `lockbox clean`: both read one listing of the lock
// files (listLocks()), so the tests that check one against the other are
// here: the table, --json, --watch, colour, commands of holders, and what
// clean removes.

import assert from "node:assert/strict";
import { FileLock, listLocks } from "../../mod.ts";
import {
  Child,
  delay,
  GUARD_MS,
  output,
  spawnWorker,
  withTempDir,
} from "../_helpers.ts";
import { CLI, lockbox, ok, quoted, run } from "./_cli.ts";

/**
 * Runs `lockbox ARGS` on a terminal (script(1)) while `settle` waits (it
 * reads the count of draws so far), then interrupts it (SIGINT); returns how
 * many times it drew the screen. Waiting for draws rather than a fixed time
 * keeps this right on a loaded machine, where the CLI may start slowly.
 */
async function drawsOnTerminal(
  args: string,
  settle: (draws: () => number) => Promise<void>,
): Promise<number> {
  // The shell says its pid, then becomes timeout(1), which passes a SIGINT
  // on to lockbox (and sends one itself if the test never does).
  const child = new Child("script", [
    "-qec",
    `echo "pid $$"; exec timeout -s INT ${GUARD_MS / 1000} ${quoted} ${args}`,
    "/dev/null",
  ]);
  const draws = () => child.lines.join("\n").split("\x1b[H\x1b[2J").length - 1;
  let pid = 0;
  try {
    pid = Number((await child.waitFor("pid ")).trim().split(" ")[1]);
    await settle(draws);
  } finally {
    try {
      if (pid > 0) Deno.kill(pid, "SIGINT");
    } catch { /* already gone */ }
    await child.finish();
  }
  return draws();
}

Deno.test("lockbox status --json matches listLocks(); clean --dry-run removes nothing", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/sub`);
    const holder = spawnWorker("hold.ts", [`${dir}/a.json`], { stdin: true });
    const shared = spawnWorker("hold.ts", [`${dir}/sub/b.json`, "--shared"], {
      stdin: true,
    });
    try {
      await holder.waitFor("locked");
      await shared.waitFor("locked");
      await (await FileLock.acquire(`${dir}/old`)).release();
      const old = new Date(Date.now() - 3 * 3_600_000);
      await Deno.utime(`${dir}/old.lock`, old, old);

      const out = await lockbox(["status", "--json", "-r", dir]);
      assert.equal(out.code, 0, out.stderr);
      const listed = await listLocks(dir, { recursive: true });
      const strip = (infos: { ageMs?: number }[]) =>
        infos.map(({ ageMs: _, ...rest }) => rest);
      assert.deepEqual(strip(JSON.parse(out.stdout)), strip(listed));
      assert.deepEqual(listed.map((i) => i.holders), [
        [holder.pid],
        [],
        [shared.pid],
      ]);

      const table = await lockbox(["status", "-r", dir], {
        env: { NO_COLOR: "1" },
      });
      assert.match(
        table.stdout,
        new RegExp(`a\\.json\\.lock\\s+held\\s+exclusive\\s+${holder.pid}`),
      );
      assert.match(table.stdout, /old\.lock\s+free.*stale/);
      assert.ok(!table.stdout.includes("\x1b["));
      // Colour on a terminal (script(1) gives the CLI one), unless NO_COLOR.
      const onTerminal = (env: Record<string, string>) => {
        // Not inherited: CI itself may run with NO_COLOR set.
        const { NO_COLOR: _, ...rest } = Deno.env.toObject();
        return run(["script", "-qec", `${quoted} status ${dir}`, "/dev/null"], {
          env: { ...rest, ...env },
          clearEnv: true,
        });
      };
      assert.ok((await onTerminal({})).stdout.includes("\x1b[33m"));
      // --watch redraws in place on a terminal until interrupted.
      const redraws = await drawsOnTerminal(
        `status --watch 0.3 ${dir}`,
        async (draws) => {
          const deadline = Date.now() + GUARD_MS;
          while (draws() < 2 && Date.now() < deadline) await delay(50);
        },
      );
      assert.ok(redraws >= 2, `${redraws} redraws`);
      assert.ok(
        !(await onTerminal({ NO_COLOR: "1" })).stdout.includes("\x1b["),
      );

      const dry = await lockbox(["clean", "--dry-run", "-r", dir]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(dry.stdout, `would remove ${dir}/old.lock\n`);
      assert.ok(await Deno.stat(`${dir}/old.lock`));
      const real = await lockbox(["clean", "-r", "--json", dir]);
      assert.deepEqual(JSON.parse(real.stdout).removed, [`${dir}/old.lock`]);
      await assert.rejects(Deno.stat(`${dir}/old.lock`), Deno.errors.NotFound);
      assert.ok(await Deno.stat(`${dir}/a.json.lock`));
    } finally {
      await holder.send("release");
      await shared.send("release");
      await holder.finish();
      await shared.finish();
    }
  });
});

Deno.test("lockbox status and clean leave other tools' *.lock files alone, read /proc/locks once, and keep a newline in a path on one line", async () => {
  await withTempDir(async (dir) => {
    const old = new Date(Date.now() - 7_200_000);
    const theirs = ["Cargo.lock", "deno.lock", "yarn.lock"];
    for (const name of theirs) {
      await Deno.writeTextFile(`${dir}/${name}`, `# ${name}, not lockbox's\n`);
      await Deno.utime(`${dir}/${name}`, old, old);
    }
    for (let i = 0; i < 40; i++) {
      await (await FileLock.acquire(`${dir}/job${i}`)).release();
    }
    await (await FileLock.acquire(`${dir}/two\nlines`)).release();
    const status = await lockbox(["status", dir]);
    assert.equal(status.code, 0, status.stderr);
    const rows = status.stdout.trim().split("\n");
    assert.equal(rows.length, 1 + 41, "a header and one line per lock file");
    assert.ok(
      rows.some((r) => r.startsWith(JSON.stringify(`${dir}/two\nlines.lock`))),
    );
    assert.ok(!theirs.some((name) => status.stdout.includes(name)));

    // One read of the kernel's lock table for the whole listing.
    const traced = await output("strace", {
      args: [
        "-f",
        "-e",
        "trace=openat",
        "-o",
        `${dir}/trace`,
        ...CLI,
        "status",
        "--json",
        dir,
      ],
    });
    assert.equal(traced.code, 0);
    const opens = (await Deno.readTextFile(`${dir}/trace`)).split("\n")
      .filter((line) => line.includes('"/proc/locks"')).length;
    assert.equal(opens, 1, `${opens} reads of /proc/locks`);
    await Deno.remove(`${dir}/trace`);

    const clean = await lockbox(["clean", "--json", "--stale-after", "0", dir]);
    assert.equal(clean.code, 0, clean.stderr);
    for (const name of theirs) {
      assert.equal(
        await Deno.readTextFile(`${dir}/${name}`),
        `# ${name}, not lockbox's\n`,
      );
    }
    assert.equal(JSON.parse(clean.stdout).removed.length, 41, clean.stdout);
  });
});

Deno.test("lockbox status --watch with an interval past 2^31 - 1 ms draws once and waits", async () => {
  await withTempDir(async (dir) => {
    await (await FileLock.acquire(`${dir}/a`)).release();
    // A timer given more than 2^31 - 1 ms fires at once: hundreds of draws
    // within a second of the first.
    const redraws = await drawsOnTerminal(
      `status --watch 3000000 ${dir}`,
      async (draws) => {
        const deadline = Date.now() + GUARD_MS;
        while (draws() < 1 && Date.now() < deadline) await delay(50);
        await delay(1_000);
      },
    );
    assert.equal(redraws, 1, `${redraws} draws`);
  });
});

/** A flock(1) holding `lockFile` around `sh -c SCRIPT` until `release()`. */
async function heldByFlock(lockFile: string, script = "cat") {
  const child = new Child("flock", [
    lockFile,
    "sh",
    "-c",
    `echo held; ${script}`,
  ], { stdin: true });
  await child.waitFor("held");
  return child;
}

Deno.test("lockbox status lists a lock file flock(1) holds with no lockbox record, with its COMMAND, and leaves it out once free", async () => {
  // A short path leaves the command room in a 100-column line.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "st" });
  try {
    await Deno.writeTextFile(`${dir}/Cargo.lock`, "# not a lock\n");
    const long = `cat; : ${"x".repeat(300)}`;
    const flock = await heldByFlock(`${dir}/fl.lock`);
    const wordy = await heldByFlock(`${dir}/long.lock`, long);
    try {
      const table = await ok(["status", dir]);
      const lines = table.trimEnd().split("\n");
      assert.match(
        lines[0],
        /^PATH\s+STATE\s+MODE\s+PID\s+HOST\s+AGE\s+STALE\s+COMMAND$/,
      );
      assert.equal(lines.length, 3, table);
      assert.ok(!table.includes("Cargo.lock"), "not held, not ours");
      const row = lines.find((l) => l.startsWith(`${dir}/fl.lock `))!;
      const cell = new RegExp(
        `held\\s+exclusive\\s+${flock.pid}\\s+-\\s+\\d+s\\s+(/\\S*flock .*)$`,
      ).exec(row);
      assert.ok(cell, row);
      // A long command is cut to fit the line (100 columns off a terminal).
      const cut = lines.find((l) => l.startsWith(`${dir}/long.lock `))!;
      assert.equal(cut.length, 100, cut);
      assert.match(cut, /flock .*…$/);
      const infos = JSON.parse(await ok(["status", "--json", dir]));
      assert.deepEqual(
        infos.map((i: { lockPath: string }) => i.lockPath),
        [`${dir}/fl.lock`, `${dir}/long.lock`],
      );
      assert.equal(infos[0].held, true);
      assert.deepEqual(infos[0].holders, [flock.pid]);
      assert.equal(infos[0].record, null);
      assert.match(
        infos[0].command,
        new RegExp(`flock ${dir}/fl\\.lock sh -c echo held; cat$`),
      );
      assert.ok(infos[1].command.endsWith(`sh -c echo held; ${long}`));
      // The table shows the start of the command the JSON gives whole.
      assert.ok(infos[0].command.startsWith(cell[1].replace(/…$/, "")));
    } finally {
      await flock.finish();
      await wordy.finish();
    }
    assert.equal(await ok(["status", dir]), "no lock files\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockbox status names the COMMAND of a lockbox holder, and none for a free lock", async () => {
  await withTempDir(async (dir) => {
    const holder = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      `${dir}/job.lock`,
      "sh",
      "-c",
      "echo running; cat",
    ], { stdin: true });
    await holder.waitFor("running");
    try {
      await ok(["run", `${dir}/free.lock`, "true"]);
      const [free, job] = JSON.parse(await ok(["status", "--json", dir]));
      assert.equal(free.held, false);
      assert.equal(free.command, null);
      assert.equal(job.held, true);
      assert.match(job.command, new RegExp(`run ${dir}/job\\.lock sh -c`));
      const table = await ok(["status", dir]);
      const freeRow = table.split("\n").find((l) => l.includes("free.lock"))!;
      assert.match(freeRow, /free\s+-\s+-\s+-\s+\d+s$/);
    } finally {
      await holder.finish();
    }
  });
});

Deno.test("lockbox status --watch stopped by SIGINT or SIGTERM exits 128 + the signal's number", async () => {
  await withTempDir(async (dir) => {
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const watching = new Child(CLI[0], [
        ...CLI.slice(1),
        "status",
        "--watch",
        "0.2",
        dir,
      ]);
      await watching.waitFor("no lock files");
      watching.process.kill(signal);
      const result = await watching.finish();
      assert.equal(result.code, code, `${signal}: ${result.stderr}`);
    }
  });
});

Deno.test("lockbox status on a terminal cuts COMMAND to the terminal's width", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tt" });
  try {
    const wordy = await heldByFlock(
      `${dir}/x.lock`,
      `cat; : ${"y".repeat(200)}`,
    );
    try {
      // script(1) gives lockbox a terminal 90 columns wide.
      const cli = CLI.map((part) => `'${part}'`).join(" ");
      const out = await run([
        "script",
        "-q",
        "-e",
        "-c",
        `stty cols 90; ${cli} status '${dir}'`,
        "/dev/null",
      ]);
      assert.equal(out.code, 0, out.stderr);
      const lines = out.stdout
        // deno-lint-ignore no-control-regex
        .replace(/\x1b\[[0-9;]*m|\r/g, "").trimEnd().split("\n");
      assert.equal(lines.length, 2, out.stdout);
      assert.match(lines[1], /held\s.*\/flock.*…$/);
      for (const line of lines) assert.ok(line.length <= 90, line);
      assert.equal(lines[1].length, 90, lines[1]);
    } finally {
      await wordy.finish();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
