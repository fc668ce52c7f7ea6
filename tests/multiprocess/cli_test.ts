// The lockbox CLI, black-box: spawned as a user would run it, and compared
// with the real flock(1). Set LOCKBOX_CLI to a compiled binary to test that
// instead of `deno run cli.ts`.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  FileLock,
  JsonStore,
  listLocks,
  StaleFenceError,
  StoreError,
} from "../../mod.ts";
import {
  Child,
  delay,
  GUARD_MS,
  names,
  output,
  sh,
  spawnWorker,
  withTempDir,
  withTmpfs,
} from "../_helpers.ts";

const CLI_SOURCE = fileURLToPath(new URL("../../cli.ts", import.meta.url));
const CLI: string[] = Deno.env.get("LOCKBOX_CLI")
  ? [Deno.env.get("LOCKBOX_CLI")!]
  : [Deno.execPath(), "run", "--allow-all", "--quiet", CLI_SOURCE];

const quoted = CLI.map((part) => `'${part}'`).join(" ");

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(
  command: string[],
  options: { env?: Record<string, string>; cwd?: string; clearEnv?: boolean } =
    {},
): Promise<Output> {
  const out = await output(command[0], {
    args: command.slice(1),
    env: options.env,
    clearEnv: options.clearEnv,
    cwd: options.cwd,
    stdin: "null",
  });
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

function lockbox(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Output> {
  return run([...CLI, ...args], options);
}

/** A process holding `lockFile` with flock(1) until `release()`. */
async function holdWithFlock(
  lockFile: string,
  mode: "-x" | "-s",
): Promise<{ release: () => Promise<void> }> {
  const child = new Child("flock", [
    mode,
    lockFile,
    "sh",
    "-c",
    "echo held; cat",
  ], {
    stdin: true,
  });
  await child.waitFor("held");
  return { release: async () => void await child.finish() };
}

Deno.test("lockbox run gives the exit codes flock(1) gives, scenario by scenario", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const scenarios: {
      name: string;
      held: "-x" | "-s" | null;
      args: string[];
      expected: number;
    }[] = [
      { name: "free lock", held: null, args: [L, "true"], expected: 0 },
      {
        name: "-n, held elsewhere",
        held: "-x",
        args: ["-n", L, "true"],
        expected: 1,
      },
      {
        name: "-w 0.3, held elsewhere",
        held: "-x",
        args: ["-w", "0.3", L, "true"],
        expected: 1,
      },
      {
        name: "-E 42 -n, held elsewhere",
        held: "-x",
        args: ["-E", "42", "-n", L, "true"],
        expected: 42,
      },
      {
        name: "shared beside shared",
        held: "-s",
        args: ["-s", "-n", L, "true"],
        expected: 0,
      },
      {
        name: "exclusive beside shared",
        held: "-s",
        args: ["-n", L, "true"],
        expected: 1,
      },
      {
        name: "shared beside exclusive",
        held: "-x",
        args: ["-s", "-n", L, "true"],
        expected: 1,
      },
      {
        name: "a failing command",
        held: null,
        args: [L, "sh", "-c", "exit 7"],
        expected: 7,
      },
      {
        name: "-c with a failing command",
        held: null,
        args: [L, "-c", "exit 5"],
        expected: 5,
      },
      {
        name: "a command killed by a signal",
        held: null,
        args: [L, "sh", "-c", "kill -KILL $$"],
        expected: 137,
      },
      {
        name: "a command that is not there",
        held: null,
        args: [L, "no-such-command-xyz"],
        expected: 69,
      },
    ];
    for (const s of scenarios) {
      const holder = s.held ? await holdWithFlock(L, s.held) : null;
      try {
        const ours = await lockbox(["run", ...s.args]);
        const theirs = await run(["flock", ...s.args]);
        assert.equal(theirs.code, s.expected, `flock(1), ${s.name}`);
        assert.equal(
          ours.code,
          theirs.code,
          `lockbox run, ${s.name}: ${ours.stderr}`,
        );
      } finally {
        await holder?.release();
      }
    }
  });
});

Deno.test("lockbox run and flock(1) on one LOCKFILE exclude each other", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/counter.lock`;
    const counter = `${dir}/counter`;
    await Deno.writeTextFile(counter, "0");
    // A read-modify-write that loses updates unless the lock excludes.
    const bump = `n=$(cat ${counter}); sleep 0.02; echo $((n+1)) > ${counter}`;
    const loop = (runner: string) =>
      new Child("sh", [
        "-c",
        `for i in 1 2 3 4 5; do ${runner} ${L} sh -c '${bump}' || exit 1; done; echo done`,
      ]);
    const children = [
      loop(`${quoted} run`),
      loop(`${quoted} run`),
      loop("flock"),
      loop("flock"),
    ];
    for (const child of children) {
      const result = await child.finish();
      assert.equal(result.code, 0, result.stderr);
    }
    assert.equal((await Deno.readTextFile(counter)).trim(), "20");

    // While lockbox runs a command, flock -n fails; the moment it is done,
    // flock -n succeeds.
    const running = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      L,
      "sh",
      "-c",
      "echo started; sleep 0.5",
    ]);
    await running.waitFor("started");
    assert.equal((await run(["flock", "-n", L, "true"])).code, 1);
    assert.equal((await running.finish()).code, 0);
    assert.equal((await run(["flock", "-n", L, "true"])).code, 0);
  });
});

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

Deno.test("lockbox run --verbose says how long the lock took, on stderr only", async () => {
  await withTempDir(async (dir) => {
    const out = await lockbox(["run", "--verbose", `${dir}/l`, "echo", "hi"]);
    assert.equal(out.code, 0);
    assert.equal(out.stdout, "hi\n");
    assert.match(out.stderr, /getting lock took \d+\.\d{6} seconds/);
  });
});

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

Deno.test("lockbox holder exits 0 naming the holder, 1 when free", async () => {
  await withTempDir(async (dir) => {
    const lock = `${dir}/a.json.lock`;
    const holder = spawnWorker("hold.ts", [
      `${dir}/a.json`,
      "--metadata",
      '{"user":"ann"}',
    ], {
      stdin: true,
    });
    try {
      await holder.waitFor("locked");
      const held = await lockbox(["holder", lock]);
      assert.equal(held.code, 0);
      assert.match(
        held.stdout,
        new RegExp(
          `^held exclusive by pid ${holder.pid} on .+ token \\d+ \\{"user":"ann"\\}\\n$`,
        ),
      );
      const json = JSON.parse(
        (await lockbox(["holder", "--json", lock])).stdout,
      );
      assert.equal(json.record.metadata.user, "ann");
    } finally {
      await holder.send("release");
      await holder.finish();
    }
    const free = await lockbox(["holder", lock]);
    assert.equal(free.code, 1);
    assert.equal(free.stdout, "free\n");
    const missing = await lockbox(["holder", `${dir}/typo.lock`]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "free\n");
    assert.match(missing.stderr, /typo\.lock' does not exist/);
  });
});

Deno.test("lockbox store set from 8 concurrent shells loses no write", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    const shells = Array.from({ length: 8 }, (_, i) =>
      new Child("sh", [
        "-c",
        `for j in 1 2 3; do ${quoted} store set ${file} /s${i}/k$j $j || exit 1; done`,
      ]));
    for (const shell of shells) {
      const result = await shell.finish();
      assert.equal(result.code, 0, result.stderr);
    }
    const doc = JSON.parse(await Deno.readTextFile(file));
    assert.equal(Object.keys(doc).length, 8);
    for (let i = 0; i < 8; i++) {
      assert.deepEqual(doc[`s${i}`], { k1: 1, k2: 2, k3: 3 });
    }
    const got = await lockbox(["store", "get", file, "--pointer", "/s3/k2"]);
    assert.equal(got.stdout, "2\n");
    assert.equal(
      (await lockbox(["store", "get", file, "--pointer", "/nope"])).code,
      1,
    );
    const bad = await lockbox(["store", "set", file, "/x", "{not json"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Usage: lockbox store set/);
  });
});

Deno.test("lockbox store edit writes a valid edit, and leaves the file untouched on invalid JSON", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    const original = '{\n  "count": 1\n}';
    await Deno.writeTextFile(file, original);
    const editor = async (name: string, script: string) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, `#!/bin/sh\n${script}\n`);
      await Deno.chmod(path, 0o755);
      return path;
    };
    const breaks = await editor("breaks.sh", `printf '{"count": ' > "$1"`);
    const broken = await lockbox(["store", "edit", file], {
      env: { EDITOR: breaks, VISUAL: "" },
    });
    assert.equal(broken.code, 1, broken.stderr);
    assert.match(broken.stderr, /not valid JSON/);
    assert.equal(await Deno.readTextFile(file), original);

    const inode = (await Deno.stat(file)).ino;
    const keeps = await editor("keeps.sh", "true");
    const same = await lockbox(["store", "edit", file], {
      env: { EDITOR: keeps },
    });
    assert.equal(same.code, 0, same.stderr);
    assert.equal((await Deno.stat(file)).ino, inode);

    // The lock is held while the editor runs.
    const checks = await editor(
      "checks.sh",
      `flock -n "${file}.lock" true && exit 1; printf '{"count": 2}' > "$1"`,
    );
    const edited = await lockbox(["store", "edit", file], {
      env: { EDITOR: checks },
    });
    assert.equal(edited.code, 0, edited.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { count: 2 });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "breaks.sh",
      "checks.sh",
      "keeps.sh",
      "state.json",
      "state.json.lock",
    ]);
  });
});

Deno.test("lockbox store reset-fence forgets a store's fences, in whole-file and journal mode", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const file = `${dir}/${journal}.json`;
      const store = new JsonStore<{ n: number }>(file, {
        initial: { n: 0 },
        journal,
      });
      await store.update((d) => void d.n++, { fence: 100 });
      await assert.rejects(
        store.update((d) => void d.n++, { fence: 5 }),
        StaleFenceError,
      );
      const out = await lockbox(["store", "reset-fence", file]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /reset the fence/);
      await store.update((d) => void d.n++, { fence: 5 });
      assert.equal((await store.read()).n, 2);
    }
  });
});

Deno.test("lockbox store check reports ok, corrupt and missing files, and quarantines on request", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.json`, "{}");
    await Deno.writeTextFile(`${dir}/bad.json`, "{oops");
    const out = await lockbox([
      "store",
      "check",
      `${dir}/good.json`,
      `${dir}/bad.json`,
      `${dir}/none.json`,
    ]);
    assert.equal(out.code, 3);
    assert.deepEqual(
      out.stdout.trim().split("\n").map((l) => l.split(" ")[0]),
      ["ok", "corrupt", "missing"],
    );
    assert.equal(await Deno.readTextFile(`${dir}/bad.json`), "{oops");
    const fixed = await lockbox([
      "store",
      "check",
      "--quarantine",
      `${dir}/bad.json`,
    ]);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.match(fixed.stdout, /^quarantined /);
    const moved = [...Deno.readDirSync(dir)].find((e) =>
      e.name.startsWith("bad.json.corrupt-")
    );
    assert.ok(moved);
    assert.equal(await Deno.readTextFile(`${dir}/${moved.name}`), "{oops");
  });
});

Deno.test("lockbox groups, ops, state and files drive the seed systems' files", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/groups.json`;
    const id = (await lockbox(["groups", "--db", db, "create"])).stdout.trim();
    assert.match(id, /^[0-9a-f]{16}$/);
    assert.equal(
      (await lockbox(["groups", "--db", db, "add", id, "t1", "t2"])).code,
      0,
    );
    const shown = JSON.parse(
      (await lockbox(["groups", "--db", db, "show", id])).stdout,
    );
    assert.deepEqual(shown.transactions, ["t1", "t2"]);
    assert.equal(
      (await lockbox(["groups", "--db", db, "show", "missing"])).code,
      1,
    );
    const ops = ["ops", "--db", `${dir}/ops.json`, "--groups-db", db];
    const op = (await lockbox([...ops, "register", id])).stdout.trim();
    assert.equal((await lockbox([...ops, "get", op])).stdout.trim(), id);
    assert.equal((await lockbox([...ops, "register", "missing"])).code, 1);
    assert.equal(
      (await lockbox(["groups", "--db", db, "prune", "--older-than", "1h"]))
        .stdout,
      "",
    );
    assert.equal(
      (await lockbox(["groups", "--db", db, "list"])).stdout.trim(),
      id,
    );

    const state = [
      "state",
      "--state",
      `${dir}/state.json`,
      "--failures",
      `${dir}/fail.log`,
    ];
    const recorded = await lockbox([
      ...state,
      "record",
      "--succeeded",
      "101,102,104-105",
      "--failed",
      "103",
    ]);
    assert.equal(recorded.code, 0, recorded.stderr);
    assert.deepEqual(JSON.parse(recorded.stdout), {
      last_contiguous_run: 102,
      last_attempted_run: 105,
    });
    assert.equal((await lockbox([...state, "next"])).stdout.trim(), "105");
    assert.equal(await Deno.readTextFile(`${dir}/fail.log`), "103\n");
    assert.equal(
      (await lockbox([...state, "record", "--succeeded", "1-x"])).code,
      2,
    );

    await Deno.mkdir(`${dir}/repo`);
    await Deno.writeTextFile(`${dir}/repo/part.mcam`, "G0");
    const files = [
      "files",
      "--repo",
      `${dir}/repo`,
      "--registry",
      `${dir}/reg.json`,
    ];
    assert.equal(
      (await lockbox([
        ...files,
        "checkout",
        "part.mcam",
        "--user",
        "ann",
        "-m",
        "fix",
      ])).code,
      0,
    );
    const taken = await lockbox([
      ...files,
      "checkout",
      "part.mcam",
      "--user",
      "bob",
    ]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /checked out by ann/);
    assert.match(
      (await lockbox([...files, "list"])).stdout,
      /^part\.mcam\t2\t.*\tchecked out by ann\n$/,
    );
    assert.equal(
      (await lockbox([...files, "checkin", "part.mcam", "--user", "bob"])).code,
      1,
    );
    // A name that leaves the repository is a malformed argument: usage.
    assert.equal(
      (await lockbox([...files, "checkout", "../x.mcam", "--user", "bob"]))
        .code,
      2,
    );
    assert.equal(
      (await lockbox([...files, "checkin", "part.mcam", "--user", "ann"])).code,
      0,
    );
  });
});

Deno.test("lockbox batch runs the command per file under its lock and exits 1 if any was locked", async () => {
  await withTempDir(async (dir) => {
    const files = ["a", "b", "c"].map((n) => `${dir}/${n}.txt`);
    for (const f of files) await Deno.writeTextFile(f, "");
    const held = spawnWorker("hold.ts", [files[1]], { stdin: true });
    try {
      await held.waitFor("locked");
      const out = await lockbox([
        "batch",
        "--lock-timeout",
        "0.2",
        ...files,
        "--",
        "sh",
        "-c",
        'flock -n "$1.lock" true && exit 1; echo done > "$1"',
        "sh",
        "{}",
      ]);
      assert.equal(out.code, 1, out.stderr);
      assert.deepEqual(out.stdout.trim().split("\n").sort(), [
        `locked ${files[1]}: locked by another process (pid ${held.pid})`,
        `ok ${files[0]}`,
        `ok ${files[2]}`,
      ]);
      assert.match(out.stderr, /3 files: 2 ok, 0 failed, 1 locked/);
      assert.equal(await Deno.readTextFile(files[0]), "done\n");
      assert.equal(await Deno.readTextFile(files[1]), "");
    } finally {
      await held.send("release");
      await held.finish();
    }
    const all = await lockbox(["batch", ...files, "--", "true"]);
    assert.equal(all.code, 0, all.stderr);
    // On a terminal (script(1) gives it one): a progress bar, then results.
    const bar = await run([
      "script",
      "-qec",
      `${quoted} batch ${files.join(" ")} -- true`,
      "/dev/null",
    ]);
    assert.equal(bar.code, 0, bar.stdout);
    assert.match(bar.stdout, /\[#+\] 3\/3 /);
    assert.match(bar.stdout, /3 files: 3 ok, 0 failed, 0 locked/);
    const config = `${dir}/config.yaml`;
    await Deno.writeTextFile(
      config,
      "file_locking:\n  timeout_seconds: oops\n",
    );
    const bad = await lockbox([
      "batch",
      "--config",
      config,
      ...files,
      "--",
      "true",
    ]);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /file_locking\.timeout_seconds/);
  });
});

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

Deno.test("lockbox run -w waits the given time for a lock a FileLock holds, then exits 1", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/x.lock`;
    const lock = await FileLock.acquire(L, { lockPath: L });
    try {
      const started = Date.now();
      const out = await lockbox(["run", "-w", "0.3", L, "true"]);
      assert.equal(out.code, 1);
      assert.ok(Date.now() - started >= 300);
    } finally {
      await lock.release();
    }
  });
});

Deno.test("lockbox store edit on a terminal sends you back to fix invalid JSON", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    await Deno.writeTextFile(file, '{"count": 1}');
    // First edit: invalid JSON; second: valid.
    const editor = `${dir}/editor.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh
if [ -e "${dir}/once" ]; then printf '{"count": 3}' > "$1"
else touch "${dir}/once"; printf '{"count": ' > "$1"; fi
`,
    );
    await Deno.chmod(editor, 0o755);
    const session = new Child("script", [
      "-qec",
      `${quoted} store edit ${file}`,
      "/dev/null",
    ], { stdin: true, env: { EDITOR: editor, VISUAL: "" } });
    // The answer waits in the terminal's input until lockbox asks.
    await session.send("e");
    const result = await session.finish();
    const output = result.lines.join("\n");
    assert.equal(result.code, 0, output);
    assert.match(output, /not valid JSON/);
    assert.match(output, /What now\? \(e\)dit again/);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { count: 3 });
  });
});

Deno.test("lockbox run -w waits for a lock with a wait past 2^31 - 1 ms instead of giving up at once", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    const holder = await holdWithFlock(L, "-x");
    const waiting = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      "-w",
      "3000000",
      L,
      "echo",
      "ran",
    ]);
    await delay(1_000);
    assert.deepEqual(waiting.lines, [], "gave up before the lock was free");
    await holder.release();
    const done = await waiting.finish(30_000);
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual(done.lines, ["ran"]);
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

Deno.test("lockbox store commands read and write a journal-mode store through its journal; a whole-file JsonStore refuses it", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    const journaled = new JsonStore<{ n: number; m?: number }>(f, {
      initial: { n: 0 },
      journal: true,
    });
    for (let i = 0; i < 3; i++) await journaled.update((d) => void d.n++);
    const got = await lockbox(["store", "get", f]);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(JSON.parse(got.stdout), { n: 3 });
    assert.equal((await lockbox(["store", "check", f])).stdout, `ok ${f}\n`);
    const set = await lockbox(["store", "set", f, "/m", "1"]);
    assert.equal(set.code, 0, set.stderr);
    // Every acknowledged update is still there, for every kind of reader.
    assert.deepEqual(await journaled.read(), { n: 3, m: 1 });
    const fresh = new JsonStore(f, { initial: {}, journal: true });
    assert.deepEqual(await fresh.read(), { n: 3, m: 1 });
    // A whole-file store refuses rather than reading an old version or
    // writing past the journal.
    const whole = new JsonStore<{ n: number }>(f, { initial: { n: 0 } });
    await assert.rejects(whole.read(), /journal mode/);
    await assert.rejects(whole.update((d) => void (d.n = 99)), /journal mode/);
    assert.deepEqual(await fresh.read(), { n: 3, m: 1 });
  });
});

Deno.test("lockbox store check checks every file and exits with the worst status", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.json`, "{}");
    await Deno.mkdir(`${dir}/dir.json`);
    await Deno.symlink(`${dir}/good.json`, `${dir}/link.json`);
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    const out = await lockbox([
      "store",
      "check",
      `${dir}/dir.json`,
      `${dir}/link.json`,
      `${dir}/bad.json`,
      `${dir}/good.json`,
    ]);
    assert.equal(out.code, 3);
    const lines = out.stdout.trim().split("\n");
    assert.equal(lines.length, 4, out.stdout);
    assert.match(lines[0], /^error .*dir\.json.*a directory/);
    assert.match(lines[1], /^error .*link\.json.*Cannot read .*symbolic link/);
    assert.match(lines[2], /^corrupt .*bad\.json/);
    assert.equal(lines[3], `ok ${dir}/good.json`);
  });
});

Deno.test("lockbox store edit: Ctrl-C to the process group goes to the editor, whose result is applied; a killed edit's copy is removed by the next run", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    await Deno.writeTextFile(f, '{\n  "n": 1\n}\n');
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    // An editor that, like vi, ignores SIGINT, then saves once told to.
    const editor = `${dir}/editor.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh
trap '' INT
echo editing
while [ ! -e ${dir}/go ]; do sleep 0.02; done
printf '{"n": 2}' > "$1"
`,
    );
    await Deno.chmod(editor, 0o755);
    const env = { EDITOR: editor, TMPDIR: tmp };
    // Its own process group, as a shell gives a foreground job.
    const edit = new Child("setsid", [...CLI, "store", "edit", f], { env });
    await edit.waitFor("editing");
    const group = Number(
      (await Deno.readTextFile(`/proc/${edit.pid}/stat`)).split(" ")[4],
    );
    await run(["kill", "-INT", "--", `-${group}`]);
    await delay(200);
    await Deno.writeTextFile(`${dir}/go`, "");
    const done = await edit.finish(30_000);
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(f)), { n: 2 });
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "the copy is removed");
    await Deno.remove(`${dir}/go`);

    // SIGKILL leaves the copy; the next edit removes it.
    const killed = new Child(CLI[0], [...CLI.slice(1), "store", "edit", f], {
      env,
    });
    await killed.waitFor("editing");
    killed.process.kill("SIGKILL");
    await killed.process.status;
    await run(["pkill", "-f", editor]);
    assert.equal([...Deno.readDirSync(tmp)].length, 1);
    const again = await lockbox(["store", "edit", f], {
      env: { EDITOR: "true", TMPDIR: tmp },
    });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /unchanged, nothing written/);
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
  });
});

Deno.test("lockbox store set as root keeps the owner, group and mode of a service's store, whole-file and journal mode", async () => {
  await withTempDir(async (dir) => {
    await Deno.chmod(dir, 0o755);
    for (const journal of [false, true]) {
      const f = `${dir}/service-${journal}.json`;
      const store = new JsonStore<Record<string, number>>(f, {
        initial: {},
        journal,
        compactAt: 0, // every update folds the journal: a new file each time
      });
      await store.update((d) => void (d.a = 1));
      for (const file of journal ? [f, `${f}.journal`] : [f]) {
        await Deno.chown(file, 65534, 65534);
        await Deno.chmod(file, 0o600);
      }
      const set = await lockbox(["store", "set", f, "/b", "2"]);
      assert.equal(set.code, 0, set.stderr);
      await store.update((d) => void (d.c = 3));
      for (const file of journal ? [f, `${f}.journal`] : [f]) {
        const info = await Deno.lstat(file);
        assert.deepEqual(
          [info.uid, info.gid, info.mode! & 0o7777],
          [65534, 65534, 0o600],
          file,
        );
      }
      assert.deepEqual(await store.read(), { a: 1, b: 2, c: 3 });
    }
  });
});

Deno.test("documents past the size and depth limits are a data error naming the file, never quarantined or reset", async () => {
  await withTempDir(async (dir) => {
    const deep = `${dir}/deep.json`;
    const levels = 200_000;
    await Deno.writeTextFile(deep, "[".repeat(levels) + "]".repeat(levels));
    const big = `${dir}/big.json`;
    // A valid document of 260 MiB: one long string.
    const file = await Deno.open(big, { write: true, create: true });
    await file.write(new TextEncoder().encode('{"s":"'));
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    for (let i = 0; i < 260; i++) await file.write(chunk);
    await file.write(new TextEncoder().encode('"}'));
    file.close();
    const sizes = [(await Deno.stat(deep)).size, (await Deno.stat(big)).size];

    for (const f of [deep, big]) {
      const get = await lockbox(["store", "get", f]);
      assert.equal(get.code, 3, get.stderr);
      assert.ok(get.stderr.includes(f), get.stderr);
      assert.match(get.stderr, /limit/);
      const check = await lockbox(["store", "check", "--quarantine", f]);
      assert.equal(check.code, 3);
      assert.match(check.stdout, /^error .*limit/);
      await assert.rejects(
        new JsonStore(f, { initial: {}, onCorrupt: "quarantine" }).read(),
        (e: Error) => e instanceof StoreError && e.message.includes("limit"),
      );
    }
    // Nothing moved aside, nothing rewritten.
    assert.deepEqual(
      [(await Deno.stat(deep)).size, (await Deno.stat(big)).size],
      sizes,
    );
    assert.deepEqual(names(dir).filter((n) => n.includes("corrupt")), []);

    // Writing one level past the limit is refused before anything is written.
    const store = new JsonStore<unknown>(`${dir}/w.json`, { initial: {} });
    let value: unknown = 1;
    for (let i = 0; i < 1001; i++) value = [value];
    await assert.rejects(store.write(value), RangeError);
    assert.equal(await Deno.lstat(`${dir}/w.json`).catch(() => null), null);
  });
});

Deno.test("lockbox: a path out of the repository and a run number past 2^53 are usage errors; run can keep its command line out of the lock file and says when the disk is full", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/repo`);
    const out = await lockbox([
      "files",
      "--repo",
      `${dir}/repo`,
      "--registry",
      `${dir}/checkouts.json`,
      "checkout",
      "../x.mcam",
      "--user",
      "ann",
    ]);
    assert.equal(out.code, 2, out.stderr);
    const huge = await lockbox([
      "state",
      "--state",
      `${dir}/state.json`,
      "record",
      "--succeeded",
      "99999999999999999999",
    ]);
    assert.equal(huge.code, 2, huge.stderr);
    assert.match(huge.stderr, /largest run number/);

    const L = `${dir}/job.lock`;
    await lockbox(["run", L, "echo", "secret-token"]);
    assert.match(await Deno.readTextFile(L), /secret-token/);
    await Deno.remove(L);
    const hidden = await lockbox([
      "run",
      "--no-record-command",
      L,
      "echo",
      "secret-token",
    ]);
    assert.equal(hidden.code, 0, hidden.stderr);
    assert.doesNotMatch(await Deno.readTextFile(L), /secret-token/);

    const mount = `${dir}/full`;
    await withTmpfs(
      mount,
      "64k",
      async () => {
        await output("dd", {
          args: ["if=/dev/zero", `of=${mount}/filler`, "bs=4k", "count=100"],
        });
        const full = await lockbox(["run", `${mount}/job.lock`, "true"]);
        assert.equal(full.code, 3, full.stderr);
        assert.match(full.stderr, /disk is full/);
      },
    );
  });
});

Deno.test("lockbox store edit writes nothing, and says so, when the editor only reformats the document", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    await Deno.writeTextFile(f, '{\n  "a": [1, 2],\n  "b": "x"\n}');
    const before = await Deno.stat(f);
    const editor = `${dir}/reformat.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh\nprintf '{"a":[1,2],"b":"x"}' > "$1"\n`,
    );
    await Deno.chmod(editor, 0o755);
    const out = await lockbox(["store", "edit", f], {
      env: { EDITOR: editor },
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /unchanged, nothing written/);
    assert.equal((await Deno.stat(f)).ino, before.ino);
  });
});

/**
 * Runs a shell script twice, with $RUN as flock(1) and as `lockbox run`, and
 * returns both outputs: the scenarios of descriptor mode side by side.
 */
async function bothRunners(
  dir: string,
  script: string,
): Promise<{ flock: Output; lockbox: Output }> {
  // RUN is a shell function, so the scripts read the same for both.
  const as = (runner: string) =>
    run(["bash", "-c", `RUN() { ${runner} "$@"; }\n${script}`], {
      cwd: dir,
      env: { NO_COLOR: "1" },
    });
  return { flock: await as("flock"), lockbox: await as(`${quoted} run`) };
}

Deno.test("lockbox run FD locks the shell's descriptor as flock(1) does: -n, -w, -E, -s, -u, both ways against flock(1)", async () => {
  await withTempDir(async (dir) => {
    const L = `${dir}/job.lock`;
    // Free: the subshell holds the lock after RUN exits, until it ends.
    const held = await bothRunners(
      dir,
      `( RUN -n 9 || exit 1; flock -n ${L} true; echo "other: $?" ) 9>${L}; flock -n ${L} true; echo "after: $?"`,
    );
    for (const out of Object.values(held)) {
      assert.equal(out.stdout, "other: 1\nafter: 0\n", out.stderr);
    }
    // Held elsewhere, by flock(1) and by lockbox in turn.
    for (const holder of ["flock", `${quoted} run`]) {
      const hold = new Child("bash", [
        "-c",
        `( ${holder} 9 && echo held && cat ) 9>${L}`,
      ], { stdin: true });
      await hold.waitFor("held");
      try {
        const refused = await bothRunners(
          dir,
          `( RUN -n 9; echo "n: $?"; RUN -w 0.3 9; echo "w: $?"; RUN -E 42 -n 9; echo "E: $?" ) 9>${L}`,
        );
        for (const out of Object.values(refused)) {
          assert.equal(
            out.stdout,
            "n: 1\nw: 1\nE: 42\n",
            `${holder}: ${out.stderr}`,
          );
        }
      } finally {
        await hold.finish();
      }
    }
    // Shared twice at once; an exclusive try fails meanwhile; -u lets go.
    const shared = await bothRunners(
      dir,
      `( RUN -s 9 && ( RUN -s -n 8; echo "second shared: $?"; RUN -x -n 7; echo "exclusive: $?" ) 8>${L} 7>${L}; RUN -u 9; echo "unlocked: $?"; flock -n ${L} true; echo "free: $?" ) 9>${L}`,
    );
    for (const out of Object.values(shared)) {
      assert.equal(
        out.stdout,
        "second shared: 0\nexclusive: 1\nunlocked: 0\nfree: 0\n",
        out.stderr,
      );
    }
    // A descriptor that is not open, or not a number: a usage error
    // (flock(1): 65 and 64; lockbox: 2).
    const bad = await bothRunners(
      dir,
      `RUN -n 7; echo "closed: $?"; RUN -n seven; echo "word: $?"`,
    );
    assert.equal(bad.flock.stdout, "closed: 65\nword: 64\n");
    assert.equal(bad.lockbox.stdout, "closed: 2\nword: 2\n");
    assert.match(bad.lockbox.stderr, /descriptor 7: it is not open/);
  });
});

Deno.test("lockbox run DIR locks the directory itself, excluding flock(1) both ways; -F and -o with a command", async () => {
  await withTempDir(async (dir) => {
    const D = `${dir}/jobs`;
    await Deno.mkdir(D);
    const inside = await bothRunners(
      dir,
      `RUN ${D} sh -c 'flock -n ${D} true; echo "inside: $?"'; echo "rc: $?"`,
    );
    for (const out of Object.values(inside)) {
      assert.equal(out.stdout, "inside: 1\nrc: 0\n", out.stderr);
    }
    const hold = await holdWithFlock(D, "-x");
    try {
      const refused = await bothRunners(
        dir,
        `RUN -n ${D} true; echo "rc: $?"`,
      );
      for (const out of Object.values(refused)) {
        assert.equal(out.stdout, "rc: 1\n", out.stderr);
      }
    } finally {
      await hold.release();
    }
    assert.deepEqual(names(D), [], "no lock file or record inside");
    // -F: the command holds the lock; -o: it does not (lockbox does).
    const L = `${dir}/job.lock`;
    const forms = await bothRunners(
      dir,
      `RUN -F ${L} sh -c 'flock -n ${L} true; echo "F: $?"'; RUN -o ${L} sh -c 'flock -n ${L} true; echo "o: $?"'; RUN -F -o ${L} true; echo "Fo: $?"`,
    );
    assert.equal(forms.flock.stdout, "F: 1\no: 1\nFo: 64\n");
    assert.equal(forms.lockbox.stdout, "F: 1\no: 1\nFo: 2\n");
    const verbose = await lockbox(["run", "--verbose", L, "true"]);
    assert.match(
      verbose.stderr,
      /^lockbox: getting lock took \d+\.\d{6} seconds\nlockbox: executing true\n$/,
    );
  });
});

Deno.test("lockbox run in flock(1)'s FLOCKER idiom: a script locks itself, a second copy exits 1, the script is never written", async () => {
  await withTempDir(async (dir) => {
    for (const runner of ["flock", `${quoted} run`]) {
      const script = `${dir}/job.sh`;
      const text = `#!/bin/sh
[ "\${FLOCKER}" != "$0" ] && exec env FLOCKER="$0" ${runner} -n "$0" "$0" "$@" || :
echo "running $*"
while [ ! -e ${dir}/stop ]; do sleep 0.02; done
`;
      await Deno.writeTextFile(script, text);
      await Deno.chmod(script, 0o755);
      const first = new Child("./job.sh", ["one"], { cwd: dir });
      await first.waitFor("running one");
      const second = await run(["./job.sh", "two"], { cwd: dir });
      assert.equal(second.code, 1, `${runner}: ${second.stderr}`);
      assert.equal(second.stdout, "");
      await Deno.writeTextFile(`${dir}/stop`, "");
      assert.equal((await first.finish(30_000)).code, 0);
      await Deno.remove(`${dir}/stop`);
      assert.equal(await Deno.readTextFile(script), text);
    }
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

Deno.test("lockbox store watch prints each version, stops with status 130 on SIGINT and 143 on SIGTERM, and with 141 once | head has what it wants", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/s.json`;
    await Deno.writeTextFile(file, '{"n":0}');
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const watching = new Child(CLI[0], [
        ...CLI.slice(1),
        "store",
        "watch",
        "--json",
        file,
      ]);
      const first = await watching.waitFor('{"version":1');
      assert.deepEqual(JSON.parse(first), { version: 1, value: { n: 0 } });
      const set = await lockbox(["store", "set", file, "/n", "7"]);
      assert.equal(set.code, 0, set.stderr);
      await watching.waitFor('{"version":2,"value":{"n":7}}');
      watching.process.kill(signal);
      const result = await watching.finish();
      // 128 + the signal's number, as a shell reports a program it ended.
      assert.equal(
        result.code,
        signal === "SIGINT" ? 130 : 143,
        `${signal}: ${result.stderr}`,
      );
      assert.equal(result.stderr, "");
      await lockbox(["store", "set", file, "/n", "0"]);
    }
    // A pipeline: lockbox ends at its first write after head has gone.
    const writes = (async () => {
      for (let i = 1; i <= 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        await lockbox(["store", "set", file, "/n", String(i)]);
      }
    })();
    const piped = await run([
      "bash",
      "-c",
      `${quoted} store watch '${file}' | head -n 3; echo "status \${PIPESTATUS[0]}"`,
    ]);
    await writes;
    const lines = piped.stdout.trim().split("\n");
    assert.equal(lines.length, 4, piped.stdout + piped.stderr);
    // The writes are not paced by the watch's start, so the first version
    // it sees may be any of them; versions count up from 1 all the same.
    for (const [i, line] of lines.slice(0, 3).entries()) {
      assert.match(line, new RegExp(`^${i + 1} \\{"n":\\d+\\}$`));
    }
    assert.equal(lines[3], "status 141");
  });
});

Deno.test("lockbox run takes a lock file it may not write as flock(1) does when its content is not lockbox's, and refuses -x on an empty one", async () => {
  await withTempDir(async (dir) => {
    const foreign = `${dir}/pid.lock`;
    await Deno.writeTextFile(foreign, "4242\n");
    const empty = `${dir}/empty.lock`;
    await Deno.writeTextFile(empty, "");
    await sh("chattr", "+i", foreign, empty);
    try {
      for (const args of [[foreign, "true"], ["-s", empty, "true"]]) {
        const ok = await lockbox(["run", ...args]);
        assert.equal(ok.code, 0, `${args}: ${ok.stderr}`);
        const flock = await run(["flock", ...args]);
        assert.equal(flock.code, 0, flock.stderr);
      }
      const refused = await lockbox(["run", empty, "true"]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /may not write it.*fencing token/);
      assert.equal(await Deno.readTextFile(empty), "");
      assert.equal(await Deno.readTextFile(foreign), "4242\n");
    } finally {
      await sh("chattr", "-i", foreign, empty);
    }
  });
});
