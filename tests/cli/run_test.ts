// `lockbox run`, black-box: spawned as a user would run it, and compared
// with the real flock(1): exit codes, mutual exclusion, waits, --verbose,
// descriptor and directory locks, the FLOCKER idiom, lock files it may not
// write, the command line in the holder record and a full disk (that test
// also checks two usage errors of `files` and `state`). Signals and the
// terminal are in run_signals_test.ts.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { FileLock } from "../../mod.ts";
import {
  Child,
  delay,
  names,
  output,
  sh,
  withTempDir,
  withTmpfs,
} from "../_helpers.ts";
import {
  CLI,
  holdWithFlock,
  lockbox,
  type Output,
  quoted,
  run,
} from "./_cli.ts";

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

Deno.test("lockbox run --verbose says how long the lock took, on stderr only", async () => {
  await withTempDir(async (dir) => {
    const out = await lockbox(["run", "--verbose", `${dir}/l`, "echo", "hi"]);
    assert.equal(out.code, 0);
    assert.equal(out.stdout, "hi\n");
    assert.match(out.stderr, /getting lock took \d+\.\d{6} seconds/);
  });
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

Deno.test("lockbox run starts its command with SIGPIPE at its default, what its caller ignored still ignored, none blocked, in a session of its own, the environment byte for byte, and a script without #! through sh; without --allow-ffi too", async () => {
  await withTempDir(async (dir) => {
    // Deno ignores SIGPIPE, and an ignored signal stays ignored across exec.
    const probe = "exec grep -E '^(SigIgn|SigBlk)' /proc/self/status";
    const session =
      'set -- $(cut -d" " -f5,6 /proc/$$/stat); [ "$1" = $$ ] && [ "$2" = $$ ] && echo own session';
    const noFfi = cliWith([
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-env",
    ]);
    // A compiled CLI (LOCKBOX_CLI) has its permissions built in.
    for (const cli of Deno.env.get("LOCKBOX_CLI") ? [CLI] : [CLI, noFfi]) {
      const close = cli === CLI ? [] : ["--close"];
      /** `lockbox run` by this CLI (`--close` without FFI: no lock to pass). */
      const lockboxRun = (
        args: string[],
        options?: { env?: Record<string, string>; cwd?: string },
      ) => run([...cli, "run", ...close, ...args], options);
      const signals = await lockboxRun([`${dir}/a.lock`, "sh", "-c", probe]);
      assert.equal(signals.code, 0, signals.stderr);
      const [blocked, ignored] = signals.stdout.trim().split("\n").map((
        line,
      ) => BigInt(`0x${line.split("\t")[1]}`));
      assert.equal(blocked, 0n, signals.stdout);
      // Signals 1 to 31; glibc's posix_spawn, Deno.Command's, leaves its
      // own two (32 and 33) ignored, which its programs reset themselves.
      assert.equal(ignored & 0x7fffffffn, 0n, signals.stdout);
      const own = await lockboxRun([`${dir}/a.lock`, "sh", "-c", session]);
      assert.equal(own.stdout, "own session\n", own.stderr);
      await Deno.writeTextFile(`${dir}/job.sh`, 'echo "ran $0 $1"\n');
      await Deno.chmod(`${dir}/job.sh`, 0o755);
      const script = await lockboxRun(["a.lock", "./job.sh", "x"], {
        cwd: dir,
      });
      assert.equal(script.stdout, "ran ./job.sh x\n", script.stderr);
      // The same script found on PATH, as execvp finds it.
      await Deno.mkdir(`${dir}/bin`, { recursive: true });
      await Deno.rename(`${dir}/job.sh`, `${dir}/bin/job`);
      const onPath = await lockboxRun([`${dir}/a.lock`, "job", "y"], {
        env: { PATH: `${dir}/bin:${Deno.env.get("PATH")}` },
      });
      assert.equal(onPath.stdout, `ran ${dir}/bin/job y\n`, onPath.stderr);
      // Ignored by the caller (nohup, trap ''): still ignored, as flock(1)
      // leaves it. And a variable that is not UTF-8 passes unchanged.
      const line = [...cli, "run", ...close, `${dir}/a.lock`].map((part) =>
        `'${part}'`
      ).join(" ");
      const caller = await run([
        "sh",
        "-c",
        `trap '' USR1; BIN=$(printf 'a\\377b') exec ${line} sh -c "${
          probe.slice("exec ".length)
        }; printf %s \\"\\$BIN\\" | od -An -tx1"`,
      ]);
      assert.equal(caller.code, 0, caller.stderr);
      const [, ignoredHere, bytes] = caller.stdout.trim().split("\n");
      assert.equal(
        BigInt(`0x${ignoredHere.split("\t")[1]}`) & 0x7fffffffn,
        1n << 9n,
        caller.stdout,
      );
      assert.equal(bytes.trim(), "61 ff 62", caller.stdout);
      await Deno.remove(`${dir}/bin`, { recursive: true });
    }
  });
});

Deno.test("lockbox run with every permission but --allow-all: refuses to pass the lock on and says why, before the command starts; --close runs it", async () => {
  // A compiled CLI (LOCKBOX_CLI) has its permissions built in.
  if (Deno.env.get("LOCKBOX_CLI")) return;
  await withTempDir(async (dir) => {
    const granular = [
      ...cliWith([
        "--allow-read",
        "--allow-write",
        "--allow-run",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
      ]),
      "run",
    ];
    const marker = `${dir}/ran`;
    const refused = await run([
      ...granular,
      `${dir}/a.lock`,
      "touch",
      marker,
    ]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /--allow-all/);
    assert.match(refused.stderr, /--close/);
    assert.equal(existsSync(marker), false);
    const closed = await run([
      ...granular,
      "--close",
      `${dir}/a.lock`,
      "touch",
      marker,
    ]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.equal(existsSync(marker), true);
  });
});

/** `deno run` of the CLI's source with `permissions` only. */
function cliWith(permissions: string[]): string[] {
  return [Deno.execPath(), "run", ...permissions, "--quiet", CLI.at(-1)!];
}
