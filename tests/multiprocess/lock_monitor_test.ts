// The lock monitor against real holders: the kernel's view, stale locks,
// cleanup beside busy lockers, and listing that never disturbs.

import assert from "node:assert/strict";
import {
  cleanupStaleLocks,
  FileLock,
  formatLockStatus,
  isLocked,
  isLockStale,
  listLocks,
  type LockInfo,
  lockInfo,
} from "../../mod.ts";
import { fileURLToPath } from "node:url";
import { _flockWaiters } from "../../src/lock/kernel.ts";
import { _lstat } from "../../src/runtime/mod.ts";
import {
  Child,
  delay,
  finishAll,
  names,
  output,
  sh,
  spawnWorker,
  withTempDir,
} from "../_helpers.ts";

const HOUR = 3_600_000;

async function age(path: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms);
  await Deno.utime(path, then, then);
}

Deno.test("listLocks() reports held, shared, free, old and nested lock files from the kernel", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/sub`);
    const exclusive = spawnWorker("hold.ts", [`${dir}/ex.json`], {
      stdin: true,
    });
    const shared = [1, 2].map(() =>
      spawnWorker("hold.ts", [`${dir}/sub/sh.json`, "--shared"], {
        stdin: true,
      })
    );
    const oldHeld = spawnWorker("hold.ts", [`${dir}/oldheld.json`], {
      stdin: true,
    });
    await Promise.all(
      [exclusive, ...shared, oldHeld].map((c) => c.waitFor("locked")),
    );
    await (await FileLock.acquire(`${dir}/free.json`)).release();
    await (await FileLock.acquire(`${dir}/sub/oldfree.json`)).release();
    await age(`${dir}/sub/oldfree.json.lock`, 2 * HOUR);
    await age(`${dir}/oldheld.json.lock`, 2 * HOUR);
    try {
      const infos = await listLocks(dir, { recursive: true });
      const by = Object.fromEntries(
        infos.map((i) => [i.lockPath.slice(dir.length + 1), i]),
      );
      assert.deepEqual(Object.keys(by).sort(), [
        "ex.json.lock",
        "free.json.lock",
        "oldheld.json.lock",
        "sub/oldfree.json.lock",
        "sub/sh.json.lock",
      ]);
      assert.equal(by["ex.json.lock"].held, true);
      assert.equal(by["ex.json.lock"].mode, "exclusive");
      assert.deepEqual(by["ex.json.lock"].holders, [exclusive.pid]);
      assert.equal(by["ex.json.lock"].record?.pid, exclusive.pid);
      assert.equal(by["sub/sh.json.lock"].mode, "shared");
      assert.deepEqual(
        [...by["sub/sh.json.lock"].holders].sort(),
        shared.map((c) => c.pid).sort(),
      );
      assert.equal(by["free.json.lock"].held, false);
      assert.equal(by["free.json.lock"].stale, false);
      assert.equal(by["sub/oldfree.json.lock"].stale, true);
      assert.ok(by["sub/oldfree.json.lock"].ageMs >= 2 * HOUR - 1000);
      assert.equal(by["oldheld.json.lock"].held, true);
      assert.equal(by["oldheld.json.lock"].stale, false, "held is never stale");
      assert.equal((await listLocks(dir)).length, 3, "not recursive");
      const table = formatLockStatus(infos, { now: new Date() });
      assert.match(table, /^PATH\s+STATE\s+MODE\s+PID\s+HOST\s+AGE\s+STALE/);
      assert.ok(table.includes(String(exclusive.pid)));
      assert.ok(
        table.split("\n").some((l) =>
          l.includes("oldfree") && l.endsWith("stale")
        ),
      );
      assert.ok(!table.includes("\x1b["), "no colour unless asked");
      assert.ok(formatLockStatus(infos, { color: true }).includes("\x1b["));
    } finally {
      await finishAll([exclusive, ...shared, oldHeld]);
    }
  });
});

Deno.test("lockInfo() reports free a lock whose record names a live pid that does not hold it", async () => {
  await withTempDir(async (dir) => {
    await (await FileLock.acquire(`${dir}/a.json`)).release();
    const lockFile = `${dir}/a.json.lock`;
    await age(lockFile, 2 * HOUR);
    const info = await lockInfo(lockFile);
    assert.equal(info.record?.pid, Deno.pid, "the record names a live pid");
    assert.equal(info.held, false);
    assert.deepEqual(info.holders, []);
    assert.equal(await isLockStale(lockFile), true);
  });
});

Deno.test("listLocks(), lockInfo(), isLockStale() and isLocked() in another PID namespace never report a lock held outside it free", async () => {
  await withTempDir(async (dir) => {
    const exclusive = spawnWorker("hold.ts", [`${dir}/a.json`], {
      stdin: true,
    });
    const shared = [1, 2].map(() =>
      spawnWorker("hold.ts", [`${dir}/b.json`, "--shared"], { stdin: true })
    );
    const holders = [exclusive, ...shared];
    try {
      await Promise.all(holders.map((c) => c.waitFor("locked")));
      await (await FileLock.acquire(`${dir}/c.json`)).release();
      const lockFiles = ["a", "b", "c"].map((n) => `${dir}/${n}.json.lock`);
      for (const lockFile of lockFiles) await age(lockFile, 2 * HOUR);
      // Not lockbox's, held outside: telling would take a probe (a lock for
      // an instant) that listLocks never makes on another tool's file, so
      // inside it is left out.
      const theirs = new Child("flock", [
        `${dir}/theirs.lock`,
        "sh",
        "-c",
        "echo held; cat",
      ], { stdin: true });
      holders.push(theirs);
      await theirs.waitFor("held");
      // Its own PID namespace and /proc, as in a container sharing dir.
      const seen = JSON.parse(
        await sh(
          "unshare",
          "--pid",
          "--fork",
          "--mount-proc",
          Deno.execPath(),
          "run",
          "--allow-all",
          "--quiet",
          fileURLToPath(new URL("./workers/inspect.ts", import.meta.url)),
          dir,
          ...lockFiles,
        ),
      );
      assert.equal(seen.pid, 1, "in a PID namespace of its own");
      assert.equal(
        seen.listedInProcLocks,
        false,
        "its /proc/locks does not list the lock held outside",
      );
      const [a, b, c] = seen.files;
      for (const [file, mode] of [[a, "exclusive"], [b, "shared"]]) {
        assert.equal(file.info.held, true, file.lockFile);
        assert.equal(file.info.mode, mode, file.lockFile);
        assert.equal(file.info.stale, false, file.lockFile);
        assert.equal(file.stale, false, file.lockFile);
        assert.equal(file.locked, true, file.lockFile);
      }
      assert.equal(a.holderPid, exclusive.pid, "the record, while held");
      assert.equal(c.info.held, false);
      assert.equal(c.stale, true, "a free old lock is still stale");
      assert.equal(c.locked, false);
      assert.deepEqual(
        seen.list.map((i: { lockPath: string; held: boolean }) => [
          i.lockPath,
          i.held,
        ]),
        lockFiles.map((f, i) => [f, i < 2]),
      );
    } finally {
      for (const child of holders) await child.send("release");
      await finishAll(holders);
    }
  });
});

Deno.test("lockInfo() and isLockStale() in another PID namespace throw a LockError, never free, for a lock file they may not probe", async () => {
  // As nobody (root opens any file), from copies nobody can read.
  await withTempDir(async (tmp) => {
    await Deno.chmod(tmp, 0o755);
    await sh(
      "cp",
      "-r",
      fileURLToPath(new URL("../../src", import.meta.url)),
      `${tmp}/src`,
    );
    await Deno.writeTextFile(
      `${tmp}/look.ts`,
      `import { isLockStale, lockInfo } from "./src/lock/lock_monitor.ts";
const said = [];
for (const look of [lockInfo, isLockStale]) {
  try {
    said.push(JSON.stringify(await look(Deno.args[0], { staleAfter: 1000 })));
  } catch (error) {
    said.push(error.name + ": " + error.message);
  }
}
console.log(JSON.stringify(said));
`,
    );
    await sh("chmod", "-R", "a+rX", `${tmp}/src`, `${tmp}/look.ts`);
    const home = `${tmp}/home`;
    await Deno.mkdir(home);
    await sh("chown", "65534:65534", home);
    const holder = spawnWorker("hold.ts", [`${tmp}/a.json`], { stdin: true });
    try {
      await holder.waitFor("locked");
      const lockFile = `${tmp}/a.json.lock`;
      await age(lockFile, 2 * HOUR);
      await Deno.chmod(lockFile, 0o000);
      const out = await output("unshare", {
        args: [
          "--pid",
          "--fork",
          "--mount-proc",
          "setpriv",
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          Deno.execPath(),
          "run",
          "--allow-all",
          "--no-config",
          "--quiet",
          `${tmp}/look.ts`,
          lockFile,
        ],
        env: { HOME: home, DENO_DIR: `${home}/deno`, NO_COLOR: "1" },
        clearEnv: true,
      });
      const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      assert.equal(out.code, 0, text(out.stderr));
      const said: string[] = JSON.parse(text(out.stdout));
      assert.equal(said.length, 2);
      for (const line of said) {
        assert.match(
          line,
          /^LockError: Cannot tell whether '.*a\.json\.lock' is held: .*PID namespace/,
        );
      }
    } finally {
      await holder.send("release");
      await finishAll([holder]);
    }
  });
});

Deno.test("cleanupStaleLocks() and removeOnRelease in another PID namespace keep a lock file, which a process outside may have open", async () => {
  await withTempDir(async (dir) => {
    await (await FileLock.acquire(`${dir}/x`)).release();
    const lockFile = `${dir}/x.lock`;
    await age(lockFile, 2 * HOUR);
    // Outside the namespace: has the file open, as flock(1) has before it
    // locks; removing the file now would leave it locking a file no one sees.
    const opener = new Child("sh", [
      "-c",
      'exec 3<"$1"; echo open; read line; exit 0',
      "sh",
      lockFile,
    ], { stdin: true });
    try {
      await opener.waitFor("open");
      const report = JSON.parse(
        await sh(
          "unshare",
          "--pid",
          "--fork",
          "--mount-proc",
          Deno.execPath(),
          "run",
          "--allow-all",
          "--quiet",
          fileURLToPath(new URL("./workers/clean.ts", import.meta.url)),
          dir,
          "1000",
        ),
      );
      assert.deepEqual(report.removed, []);
      assert.equal(report.kept.length, 1);
      assert.equal(report.kept[0].path, lockFile);
      assert.match(report.kept[0].reason, /own PID namespace/);
      assert.ok((await Deno.lstat(lockFile)).isFile);
      assert.equal(report.removeOnReleaseKept, true, "removeOnRelease too");
    } finally {
      await finishAll([opener]);
    }
  });
});

Deno.test("cleanupStaleLocks() beside 4 lockers keeps counts exact and never removes a held lock", async () => {
  await withTempDir(async (dir) => {
    const counter = `${dir}/counter`;
    const holder = spawnWorker("hold.ts", [`${dir}/held.json`], {
      stdin: true,
    });
    await holder.waitFor("locked");
    const workers = Array.from(
      { length: 4 },
      () => spawnWorker("increment.ts", [counter, "150"]),
    );
    let removed = 0;
    const done = finishAll(workers);
    let running = true;
    done.finally(() => running = false);
    while (running) {
      const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
      removed += report.removed.length;
      assert.ok(!report.removed.includes(`${dir}/held.json.lock`));
      assert.deepEqual(report.errors, []);
      await new Promise((r) => setTimeout(r, 1));
    }
    await done;
    assert.equal(await Deno.readTextFile(counter), "600");
    assert.ok(removed > 0, "the cleaner did remove free lock files");
    assert.ok((await lockInfo(`${dir}/held.json.lock`)).held);
    await holder.finish();
  });
});

Deno.test({
  name:
    "listLocks() in a tight loop never makes another process's tryAcquire fail",
  // In another PID namespace (a container) free locks are probed instead.
  ignore: Deno.readLinkSync("/proc/self/ns/pid") !== "pid:[4026531836]",
}, async () => {
  await withTempDir(async (dir) => {
    const lockers = [0, 1, 2].map((i) =>
      spawnWorker("try_loop.ts", [`${dir}/free${i}.json`, "1500"])
    );
    let listings = 0;
    // The promise holds while the machine's lock table comes in one read:
    // a longer one may miss a lock, so free lockbox files are then probed
    // (other processes on a busy machine can make it that long).
    let longest = 0;
    const done = finishAll(lockers);
    let running = true;
    done.finally(() => running = false);
    while (running) {
      longest = Math.max(longest, Deno.readTextFileSync("/proc/locks").length);
      await listLocks(dir);
      longest = Math.max(longest, Deno.readTextFileSync("/proc/locks").length);
      listings++;
    }
    const outputs = await done;
    assert.ok(listings > 10);
    if (longest + 128 >= 4096) {
      console.log(
        `not checked: /proc/locks was ${longest} bytes, longer than one read`,
      );
      return;
    }
    for (const [line] of outputs) {
      const [, tries, , failed] = line.split(" ");
      assert.ok(Number(tries) > 0);
      assert.equal(Number(failed), 0, line);
    }
  });
});

Deno.test("cleanupStaleLocks() dryRun removes nothing and reports what it would remove", async () => {
  await withTempDir(async (dir) => {
    await (await FileLock.acquire(`${dir}/a`)).release();
    await (await FileLock.acquire(`${dir}/young`)).release();
    await age(`${dir}/a.lock`, 2 * HOUR);
    const report = await cleanupStaleLocks(dir, { dryRun: true });
    assert.deepEqual(report.removed, [`${dir}/a.lock`]);
    assert.ok((await Deno.lstat(`${dir}/a.lock`)).isFile);
    const real = await cleanupStaleLocks(dir);
    assert.deepEqual(real.removed, [`${dir}/a.lock`]);
    await assert.rejects(Deno.lstat(`${dir}/a.lock`), Deno.errors.NotFound);
    assert.ok((await Deno.lstat(`${dir}/young.lock`)).isFile);
  });
});

Deno.test("listLocks() and cleanupStaleLocks() never take other tools' *.lock files for lockbox's", async () => {
  await withTempDir(async (dir) => {
    const theirs = {
      "Cargo.lock": "# This file is automatically @generated by Cargo.\n",
      "deno.lock": '{\n  "version": "5"\n}\n',
      "yarn.lock": "# yarn lockfile v1\n",
      "flock.lock": "", // what flock(1) leaves: an empty file
    };
    for (const [name, text] of Object.entries(theirs)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
      await age(`${dir}/${name}`, 2 * HOUR);
    }
    await (await FileLock.acquire(`${dir}/ours`)).release();
    await age(`${dir}/ours.lock`, 2 * HOUR);
    assert.deepEqual((await listLocks(dir)).map((i) => i.lockPath), [
      `${dir}/ours.lock`,
    ]);
    const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
    assert.deepEqual(report.removed, [`${dir}/ours.lock`]);
    for (const [name, text] of Object.entries(theirs)) {
      assert.equal(await Deno.readTextFile(`${dir}/${name}`), text);
      assert.ok(
        report.kept.some((k) =>
          k.path === `${dir}/${name}` &&
          /not a lockbox lock file/.test(k.reason)
        ),
      );
    }
  });
});

Deno.test("listLocks() lists another tool's *.lock file while flock(1) holds it, with the holder's command, and never when free", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/Cargo.lock`, "# generated by Cargo\n");
    const flock = new Child("flock", [
      "-s",
      `${dir}/Cargo.lock`,
      "sh",
      "-c",
      "echo held; cat",
    ], { stdin: true });
    await flock.waitFor("held");
    try {
      const [info] = await listLocks(dir);
      assert.equal(info.lockPath, `${dir}/Cargo.lock`);
      assert.equal(info.held, true);
      assert.equal(info.mode, "shared");
      assert.deepEqual(info.holders, [flock.pid]);
      assert.equal(info.record, null);
      assert.equal(info.pid, null);
      assert.match(
        info.command!,
        /flock -s .*Cargo\.lock sh -c echo held; cat$/,
      );
      // Held, it is not stale and cleanup still never removes it.
      const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
      assert.deepEqual(report.removed, []);
    } finally {
      await flock.finish();
    }
    assert.deepEqual(await listLocks(dir), []);
    assert.equal(
      await Deno.readTextFile(`${dir}/Cargo.lock`),
      "# generated by Cargo\n",
    );
  });
});

Deno.test("formatLockStatus() cuts COMMAND to width, to no less than 12 characters, and shows none for a free lock", () => {
  const held: LockInfo = {
    lockPath: "/srv/a.lock",
    held: true,
    mode: "exclusive",
    holders: [42],
    record: null,
    pid: null,
    command: `sync ${"x".repeat(200)}`,
    waiters: [],
    ageMs: 1000,
    stale: false,
  };
  const free: LockInfo = {
    ...held,
    lockPath: "/srv/b.lock",
    held: false,
    mode: null,
    holders: [],
    command: null,
  };
  const [, wide, idle] = formatLockStatus([held, free], { width: 70 }).split(
    "\n",
  );
  assert.equal(wide.length, 70);
  assert.match(wide, /\s{2}sync x+…$/);
  assert.match(idle, /free\s+-\s+-\s+-\s+1s$/);
  const narrow = formatLockStatus([held], { width: 10 }).split("\n")[1];
  assert.ok(narrow.endsWith(`  sync ${"x".repeat(6)}…`), narrow);
  const whole = formatLockStatus([{ ...held, command: "sync --all" }]);
  assert.ok(whole.split("\n")[1].endsWith("  sync --all"));
});

Deno.test("cleanupStaleLocks() in a loop never gives two holders to flock(1) and Python fcntl.flock users of the file", async () => {
  await withTempDir(async (dir) => {
    // A lockbox lock file (so cleanup considers it) used by tools that never
    // re-check the inode after locking.
    await (await FileLock.acquire(`${dir}/x`)).release();
    const body = "mkdir in 2>/dev/null || echo OVERLAP; sleep 0.002; rmdir in";
    const py = `import fcntl, os, time
end = time.time() + 4
while time.time() < end:
    with open("x.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            os.mkdir("in")
        except FileExistsError:
            print("OVERLAP", flush=True)
        time.sleep(0.002)
        os.rmdir("in")
`;
    const users = [
      ...[0, 1, 2].map(() =>
        new Child("sh", [
          "-c",
          `end=$(($(date +%s) + 4)); while [ $(date +%s) -lt $end ]; do flock x.lock sh -c '${body}'; done`,
        ], { cwd: dir })
      ),
      new Child("python3", ["-c", py], { cwd: dir }),
    ];
    let cleanups = 0;
    const done = Promise.all(users.map((u) => u.finish(60_000)));
    let running = true;
    done.finally(() => running = false);
    while (running) {
      const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
      cleanups++;
      assert.deepEqual(report.errors, []);
      // A removed file comes back empty, made by flock(1): give it a record
      // again, so that cleanup keeps considering it.
      const lock = await FileLock.tryAcquire(`${dir}/x`);
      await lock?.release();
      await delay(1);
    }
    const results = await done;
    const overlaps = results.flatMap((r) => r.lines)
      .filter((l) => l === "OVERLAP");
    // Cleanup ran over and over while the tools worked (how often depends
    // on the machine: a file put back waits until no one uses the file made
    // meanwhile), and no two critical sections ever overlapped.
    assert.ok(cleanups >= 3, `only ${cleanups} cleanups ran`);
    assert.equal(overlaps.length, 0, `${overlaps.length} overlaps`);
  });
});

Deno.test("cleanupStaleLocks() reports a symlink and a directory named *.lock and follows neither", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/target`, "precious");
    await age(`${dir}/target`, 2 * HOUR);
    await Deno.symlink(`${dir}/target`, `${dir}/x.lock`);
    await Deno.mkdir(`${dir}/y.lock`);
    await Deno.writeTextFile(`${dir}/y.lock/inner.lock`, "");
    await age(`${dir}/y.lock/inner.lock`, 2 * HOUR);
    await sh("mkfifo", `${dir}/z.lock`);
    const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
    const kept = Object.fromEntries(report.kept.map((k) => [k.path, k.reason]));
    assert.match(kept[`${dir}/x.lock`], /^a symlink/);
    assert.match(kept[`${dir}/y.lock`], /^a directory/);
    assert.match(kept[`${dir}/z.lock`], /^not a regular file/);
    assert.deepEqual(report.removed, []);
    assert.equal(await Deno.readTextFile(`${dir}/target`), "precious");
    assert.ok((await Deno.lstat(`${dir}/x.lock`)).isSymlink);
    assert.equal((await listLocks(dir)).length, 0);
  });
});

Deno.test("isLocked() never reports a held lock free while other processes churn locks", async () => {
  // /proc/locks is read while other locks come and go before and after ours
  // in the table; a reader that takes it in several reads can skip a record.
  await withTempDir(async (dir) => {
    const holder = spawnWorker("hold.ts", [`${dir}/held.json`], {
      stdin: true,
    });
    await holder.waitFor("locked");
    const churners = [0, 1, 2].map((i) =>
      spawnWorker("churn.ts", [`${dir}/churn${i}.json`, "stdin"], {
        stdin: true,
      })
    );
    await Promise.all(churners.map((c) => c.waitFor("ready")));
    let free = 0;
    const looks = 2000;
    for (let look = 0; look < looks; look++) {
      if (!await isLocked(`${dir}/held.json`)) free++;
      // isLocked settles without a trip through the event loop; let the
      // children's output be read now and then.
      if (look % 20 === 0) await delay(0);
    }
    const outputs = await finishAll(churners);
    await holder.finish();
    for (const lines of outputs) {
      assert.ok(Number(lines.at(-1)?.split(" ")[1]) > 0, lines.join("\n"));
    }
    assert.equal(free, 0, `reported free ${free} times in ${looks} looks`);
  });
});

// Holds flocks on files of its own in the working directory: "pad N" holds
// N of them until stdin closes; "churn NAME" locks a burst of 20 to 60 files,
// releases them, and again, until stdin closes.
const LOCK_TABLE_PY = `
import fcntl, random, sys, threading
mode = sys.argv[1]
if mode == "pad":
    files = [open(f"pad{i}", "a") for i in range(int(sys.argv[2]))]
    for f in files:
        fcntl.flock(f, fcntl.LOCK_EX)
    print("ready", flush=True)
    sys.stdin.read()
    sys.exit(0)
name = sys.argv[2]
files = [open(f"{name}-{i}", "a") for i in range(60)]
closed = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
rng = random.Random(name)
print("ready", flush=True)
bursts = 0
while not closed.is_set():
    burst = files[:rng.randint(20, 60)]
    for f in burst:
        fcntl.flock(f, fcntl.LOCK_EX)
    rng.shuffle(burst)
    for f in burst:
        fcntl.flock(f, fcntl.LOCK_UN)
    bursts += 1
print(f"bursts {bursts}", flush=True)
`;

/**
 * Looks `looks` times (`look` returns how many held locks it saw free) while
 * a process holds `held`, another then holds 150 locks, and three churners
 * take and release bursts of 20 to 60 locks; returns how many it saw free.
 *
 * /proc/locks comes a page (about 70 records) per read; a lock released
 * before a page's end between two reads makes the next read skip a record.
 * The kernel lists newer locks first: the padding, taken after the held
 * locks, puts them pages deep, and the bursts (released in random order)
 * move them across page boundaries.
 */
async function freeInChurningTable(
  dir: string,
  held: string[],
  looks: number,
  look: () => Promise<number>,
): Promise<number> {
  const holder = spawnWorker("hold.ts", held, { stdin: true });
  await holder.waitFor("locked");
  const pad = new Child("python3", ["-c", LOCK_TABLE_PY, "pad", "150"], {
    cwd: dir,
    stdin: true,
  });
  await pad.waitFor("ready");
  const churners = [0, 1, 2].map((i) =>
    new Child("python3", ["-c", LOCK_TABLE_PY, "churn", `churn${i}`], {
      cwd: dir,
      stdin: true,
    })
  );
  await Promise.all(churners.map((c) => c.waitFor("ready")));
  let free = 0;
  for (let n = 0; n < looks; n++) free += await look();
  // The table was several pages long while we looked.
  const table = Deno.readTextFileSync("/proc/locks");
  const outputs = await finishAll([...churners, pad]);
  await holder.finish();
  assert.ok(table.length > 4096, `/proc/locks: ${table.length} bytes`);
  for (const lines of outputs.slice(0, churners.length)) {
    assert.ok(Number(lines.at(-1)?.split(" ")[1]) > 0, lines.join("\n"));
  }
  return free;
}

Deno.test("isLocked() never reports a held lock free when the lock table is several reads long and locks before it come and go", async () => {
  await withTempDir(async (dir) => {
    const looks = 3000;
    const free = await freeInChurningTable(
      dir,
      [`${dir}/held.json`],
      looks,
      async () => await isLocked(`${dir}/held.json`) ? 0 : 1,
    );
    assert.equal(free, 0, `reported free ${free} times in ${looks} looks`);
  });
});

Deno.test("listLocks() never reports a held lock free when the lock table is several reads long and locks before it come and go", async () => {
  // 80 held locks side by side in the table: one of them is nearly always
  // the first record of a read.
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/held`);
    const held = Array.from({ length: 80 }, (_, i) => `${dir}/held/${i}.json`);
    const looks = 1000;
    const free = await freeInChurningTable(dir, held, looks, async () => {
      const infos = await listLocks(`${dir}/held`);
      assert.equal(infos.length, held.length);
      return infos.filter((info) => !info.held).length;
    });
    assert.equal(free, 0, `reported free ${free} times in ${looks} listings`);
  });
});

Deno.test("cleanupStaleLocks() removes every stale lock file when the lock table is several reads long and locks before it come and go", async () => {
  // Before removing a file, cleanup checks that the kernel lists its own
  // lock on it alone; a read that skipped the record must not keep it.
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/stale`);
    const rounds = 15;
    const kept: string[] = [];
    await freeInChurningTable(dir, [`${dir}/held.json`], rounds, async () => {
      for (let i = 0; i < 40; i++) {
        await (await FileLock.acquire(`${dir}/stale/${i}`)).release();
        await Deno.utime(`${dir}/stale/${i}.lock`, 0, 0);
      }
      const report = await cleanupStaleLocks(`${dir}/stale`, {
        staleAfter: 0,
      });
      kept.push(
        ...report.kept.map((k) => k.reason),
        ...report.errors.map((e) => e.error),
      );
      return 0;
    });
    assert.deepEqual(kept, [], `${kept.length} kept in ${rounds} rounds`);
  });
});

Deno.test("cleanup's look at the kernel's lock table counts the flock(1) processes waiting for a file it holds, and none where no one waits", async () => {
  await withTempDir(async (dir) => {
    const lock = await FileLock.acquire(`${dir}/a`);
    const other = await FileLock.acquire(`${dir}/b`);
    await Deno.writeTextFile(`${dir}/free.lock`, "");
    const stats = [`${dir}/a.lock`, `${dir}/b.lock`, `${dir}/free.lock`]
      .map((path) => _lstat(path)!);
    const waiters = [1, 2].map(() =>
      new Child("flock", [`${dir}/a.lock`, "true"])
    );
    try {
      for (let n = 0; n < 500; n++) {
        if (_flockWaiters(stats)?.[0] === 2) break;
        await delay(10);
      }
      assert.deepEqual(_flockWaiters(stats), [2, 0, null]);
    } finally {
      await lock.release();
      await other.release();
      await finishAll(waiters);
    }
  });
});

Deno.test("the monitor, run as an unprivileged user, reports unreadable directories and files and goes on", async () => {
  // Permission bits bind only a process that is not root: run the monitor
  // as nobody (setpriv), from copies it can read.
  await withTempDir(async (tmp) => {
    await Deno.chmod(tmp, 0o755);
    const deno = `${tmp}/deno`;
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
    await sh(
      "cp",
      "-r",
      fileURLToPath(new URL("../../src", import.meta.url)),
      `${tmp}/src`,
    );
    await Deno.writeTextFile(
      `${tmp}/report.ts`,
      `import { cleanupStaleLocks, listLocks } from "./src/lock/lock_monitor.ts";
const options = { recursive: true, staleAfter: 1000 };
const listed = await listLocks(Deno.args[0], options);
const cleaned = await cleanupStaleLocks(Deno.args[0], options);
console.log(JSON.stringify({ listed, cleaned }));
`,
    );
    await sh("chmod", "-R", "a+rX", `${tmp}/src`, `${tmp}/report.ts`);
    const home = `${tmp}/home`;
    await Deno.mkdir(home);
    await sh("chown", "65534:65534", home);

    const dir = `${tmp}/locks`; // nobody's, so nobody may remove in it
    await Deno.mkdir(dir);
    const old = new Date(Date.now() - 3_600_000);
    for (const name of ["free", "secret", "sub/hidden"]) {
      if (name.startsWith("sub/")) await Deno.mkdir(`${dir}/sub`);
      await (await FileLock.acquire(`${dir}/${name}`)).release();
      await Deno.utime(`${dir}/${name}.lock`, old, old);
    }
    await Deno.writeTextFile(`${tmp}/target`, "keep me");
    await Deno.symlink(`${tmp}/target`, `${dir}/x.lock`);
    await Deno.mkdir(`${dir}/y.lock`);
    await sh("chown", "65534:65534", dir, `${dir}/free.lock`);
    await Deno.chmod(`${dir}/secret.lock`, 0o000); // root's, unreadable
    await Deno.chmod(`${dir}/sub`, 0o000); // root's, unreadable

    const out = await output("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        deno,
        "run",
        "--allow-all",
        "--no-config",
        "--quiet",
        `${tmp}/report.ts`,
        dir,
      ],
      env: { HOME: home, DENO_DIR: `${home}/deno`, NO_COLOR: "1" },
      clearEnv: true,
    });
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    assert.equal(out.code, 0, text(out.stderr));
    const { listed, cleaned } = JSON.parse(text(out.stdout));
    // Listed: the readable lockbox file; the unreadable one cannot be shown
    // to be lockbox's, so it is not.
    assert.deepEqual(
      listed.map((i: { lockPath: string }) => i.lockPath),
      [`${dir}/free.lock`],
    );
    // Root's processes' open files are hidden from nobody, so no one can be
    // ruled out as a user of free.lock: kept, and said why.
    assert.deepEqual(cleaned.removed, []);
    const errors = cleaned.errors.map((e: { path: string }) => e.path).sort();
    assert.deepEqual(errors, [`${dir}/secret.lock`, `${dir}/sub`]);
    const kept = Object.fromEntries(
      cleaned.kept.map((k: { path: string; reason: string }) => [
        k.path,
        k.reason,
      ]),
    );
    assert.deepEqual(Object.keys(kept).sort(), [
      `${dir}/free.lock`,
      `${dir}/x.lock`,
      `${dir}/y.lock`,
    ]);
    assert.match(kept[`${dir}/free.lock`], /cannot see every process/);
    // Nothing followed, nothing unreadable removed.
    assert.equal(await Deno.readTextFile(`${tmp}/target`), "keep me");
    assert.ok((await Deno.lstat(`${dir}/secret.lock`)).isFile);
    await Deno.chmod(`${dir}/sub`, 0o755);
    assert.ok((await Deno.lstat(`${dir}/sub/hidden.lock`)).isFile);
  });
});

Deno.test("cleanupStaleLocks() keeps a lock file another process has open (it may lock it next), in place, and leaves nothing behind", async () => {
  await withTempDir(async (dir) => {
    await (await FileLock.acquire(`${dir}/x`)).release();
    const lockFile = `${dir}/x.lock`;
    const inode = (await Deno.stat(lockFile)).ino;
    const opener = new Child("python3", [
      "-c",
      `f = open(${
        JSON.stringify(lockFile)
      }); print("open", flush=True); input()`,
    ], { stdin: true });
    try {
      await opener.waitFor("open");
      const report = await cleanupStaleLocks(dir, { staleAfter: 0 });
      assert.deepEqual(report.removed, []);
      assert.match(
        report.kept[0].reason,
        new RegExp(`open in pid ${opener.pid}`),
      );
      assert.equal((await Deno.stat(lockFile)).ino, inode);
      assert.deepEqual(names(dir), ["x.lock"]);
    } finally {
      await opener.finish();
    }
    const after = await cleanupStaleLocks(dir, { staleAfter: 0 });
    assert.deepEqual(after.removed, [lockFile]);
    assert.deepEqual(names(dir), []);
  });
});
