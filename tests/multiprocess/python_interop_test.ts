// The seed systems' Python and lockbox take turns on the same files, three
// rounds each: after every lockbox write the file's bytes must be exactly
// what the seed's own Python would write for the same data (json.dump with
// its indent and ensure_ascii), and every value Python put there (big
// integers, 1.0, -0.0, 1e-07, NaN, Infinity, non-ASCII text, key order)
// must read back in Python as it wrote it.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  CaptureGroups,
  CheckoutRegistry,
  cleanupStaleLocks,
  DocumentStore,
  formatLockStatus,
  listLocks,
  type LockHolder,
  lockHolder,
  processFiles,
  updateAttemptedRunState,
  updateContiguousRunState,
} from "../../mod.ts";
import { Child, finishAll, output, withTempDir, worker } from "../_helpers.ts";

const PY = worker("py_seeds.py");

async function python(args: string[]): Promise<string> {
  const result = await output("python3", { args: [PY, ...args] });
  const text = new TextDecoder().decode(result.stdout);
  if (result.code !== 0) {
    throw new Error(
      `py_seeds.py ${args.join(" ")}: ${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
  return text;
}

/** The seed's file must be what its Python writes, and keep Python's values. */
async function assertPythonBytes(seed: string, file: string, round: number) {
  const bytes = await Deno.readTextFile(file);
  assert.equal(bytes, await python(["redump", seed, file]));
  await python(["check", seed, file, String(round)]);
}

const SEEDS: {
  seed: string;
  what: string;
  file: (dir: string) => string;
  lockbox: (dir: string, round: number) => Promise<void>;
}[] = [
  {
    seed: "000",
    what: "capture groups (CaptureGroups.addTransaction)",
    file: (dir) => `${dir}/capture_groups.json`,
    lockbox: (dir, round) =>
      new CaptureGroups(`${dir}/capture_groups.json`).addTransaction(
        round.toString(16).padStart(16, "0"),
        `lockbox-${round}`,
      ),
  },
  {
    seed: "002",
    what: "checkouts (CheckoutRegistry.checkout, with a null message there)",
    file: (dir) => `${dir}/checkouts.json`,
    lockbox: async (dir, round) => {
      const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
      await registry.checkout(`lockbox-${round}.mcam`, "lb", `r${round}`);
      assert.equal(Object.keys(await registry.list()).length, 2 * round);
    },
  },
  {
    seed: "003",
    what: "run state (updateContiguousRunState, updateAttemptedRunState)",
    file: (dir) => `${dir}/import_state.json`,
    lockbox: async (dir, round) => {
      await updateContiguousRunState(`${dir}/import_state.json`, [100 + round]);
      await updateAttemptedRunState(`${dir}/import_state.json`, [100 + round]);
    },
  },
  {
    seed: "004",
    what: "a document (DocumentStore.update)",
    file: (dir) => `${dir}/docs/by_id/report/document.json`,
    lockbox: (dir, round) =>
      new DocumentStore<Record<string, unknown>>(`${dir}/docs`, {
        backups: 1,
      }).update("report", (doc) => {
        doc[`lockbox_${round}`] = { round, text: "d\u00e9j\u00e0" };
      }),
  },
];

for (const { seed, what, file, lockbox } of SEEDS) {
  Deno.test(`seed ${seed} ${what}: Python and lockbox alternate 3 rounds, and lockbox writes Python's bytes`, async () => {
    await withTempDir(async (dir) => {
      const path = file(dir);
      await Deno.mkdir(path.replace(/\/[^/]+$/, ""), { recursive: true });
      for (let round = 1; round <= 3; round++) {
        await python(["write", seed, path, String(round)]);
        await lockbox(dir, round);
        await assertPythonBytes(seed, path, round);
      }
      if (seed === "004") {
        // Its audit log, as seed 004 writes lines: json.dumps(event,
        // ensure_ascii=False), ", " and ": " between items.
        const audit = await Deno.readTextFile(
          `${dir}/docs/by_id/report/audit.jsonl`,
        );
        const lines = audit.trim().split("\n");
        assert.equal(lines.length, 3);
        for (const line of lines) {
          await Deno.writeTextFile(`${dir}/line.json`, line);
          const redumped = await python(["redump", "004", `${dir}/line.json`]);
          assert.equal(
            JSON.stringify(JSON.parse(line)),
            JSON.stringify(JSON.parse(redumped)),
          );
          assert.match(line, /^\{"action_id": "/);
        }
      }
    });
  });
}

// Seed 001's lock files beside its own tools: a Python implementation of its
// documented FileLock, monitor and cleanup_stale_locks (py_seed001.py).

const SEED001 = worker("py_seed001.py");
const HOUR = 3_600_000;

async function seed001(args: string[]): Promise<string> {
  const result = await output("python3", { args: [SEED001, ...args] });
  const text = new TextDecoder().decode(result.stdout);
  if (result.code !== 0) {
    throw new Error(
      `py_seed001.py ${args.join(" ")}: ${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
  return text;
}

async function age(path: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms);
  await Deno.utime(path, then, then);
}

/** The lockbox record in a `<lock file>.lockbox`: its first line. */
async function sidecarRecord(lockFile: string): Promise<LockHolder> {
  return JSON.parse(
    (await Deno.readTextFile(`${lockFile}.lockbox`)).split("\n")[0],
  );
}

Deno.test("processFiles() writes the holder's pid in the lock file, so seed 001's cleanup_stale_locks keeps a lock held past its threshold", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/deck.pptx`;
    await Deno.writeTextFile(file, "slides");
    const lockFile = `${file}.lock`;
    const [result] = await processFiles([file], async () => {
      await age(lockFile, 2 * HOUR);
      const status = JSON.parse(await seed001(["status", dir, "1"]));
      const report = JSON.parse(await seed001(["clean", dir, "1"]));
      // A second locker of the same file, as seed 001 or flock(1) takes it.
      const other = await output("python3", {
        args: [worker("py_flock.py"), lockFile, "try"],
      });
      return {
        status,
        report,
        content: await Deno.readTextFile(lockFile),
        other: new TextDecoder().decode(other.stdout).trim(),
      };
    });
    assert.ok(result.ok, JSON.stringify(result));
    const { status, report, content, other } = result.value;
    assert.deepEqual(report, { count: 0, stale_locks: [], errors: [] });
    assert.equal(other, "busy", "still the one lock, held");
    assert.equal(status.length, 1, "seed 001 sees one lock file");
    assert.equal(status[0].pid, Deno.pid);
    assert.equal(status[0].running, true);
    assert.equal(status[0].stale, false);
    assert.equal(content, String(Deno.pid), "the lock file holds the pid");
  });
});

Deno.test("listLocks() and formatLockStatus() list a lock seed 001's Python holds, with its pid", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/deck.pptx`;
    // An earlier lockbox holder's record stays in deck.pptx.lock.lockbox.
    await processFiles([file], () => Promise.resolve());
    const python = new Child("python3", [SEED001, "hold", file], {
      stdin: true,
    });
    try {
      await python.waitFor("locked");
      const infos = await listLocks(dir);
      assert.equal(infos.length, 1);
      const [info] = infos;
      assert.equal(info.lockPath, `${file}.lock`);
      assert.equal(info.held, true);
      assert.equal(info.mode, "exclusive");
      assert.deepEqual(info.holders, [python.pid]);
      assert.equal(info.pid, python.pid);
      assert.equal(info.record, null, "not the earlier holder's record");
      assert.equal(await lockHolder(file), null);
      const row = formatLockStatus(infos).split("\n")[1].split(/\s+/);
      assert.deepEqual(row.slice(0, 4), [
        `${file}.lock`,
        "held",
        "exclusive",
        String(python.pid),
      ]);
    } finally {
      await finishAll([python]);
    }
    assert.deepEqual(await listLocks(dir), [], "removed on release");
  });
});

Deno.test("lockbox batch keeps its record and fencing token in <lock file>.lockbox, and the token grows after seed 001's cleanup removed the lock file", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/deck.pptx`;
    await Deno.writeTextFile(file, "slides");
    const lockFile = `${file}.lock`;
    const batch = async () => {
      const out = await output(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "--quiet",
          fileURLToPath(new URL("../../cli.ts", import.meta.url)),
          "batch",
          file,
          "--",
          "sh",
          "-c",
          'cat "$1.lock" > "$1.seen"',
          "sh",
          "{}",
        ],
      });
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return {
        seen: await Deno.readTextFile(`${file}.seen`),
        record: await sidecarRecord(lockFile),
      };
    };
    const first = await batch();
    assert.match(first.seen, /^[0-9]+$/, "the pid alone, as seed 001 writes");
    assert.equal(first.record.pid, Number(first.seen));
    const second = await batch();
    assert.equal(second.record.token, first.record.token + 1);
    // Free, old, and its pid long gone: seed 001's cleanup removes it.
    await age(lockFile, 2 * HOUR);
    const report = JSON.parse(await seed001(["clean", dir, "1"]));
    assert.equal(report.count, 1);
    await assert.rejects(Deno.lstat(lockFile), Deno.errors.NotFound);
    const third = await batch();
    assert.equal(third.record.token, second.record.token + 1);
    assert.equal(third.record.pid, Number(third.seen));
  });
});

Deno.test("cleanupStaleLocks() never removes a lock file seed 001 left, and removes a stale lockbox pid file but keeps its record file", async () => {
  await withTempDir(async (dir) => {
    const left = `${dir}/left.pptx`;
    const python = new Child("python3", [SEED001, "hold", left], {
      stdin: true,
    });
    await python.waitFor("locked");
    await python.kill(); // crashed: its lock file stays, with its pid
    const ours = `${dir}/ours.pptx`;
    await processFiles([ours], () => Promise.resolve());
    await age(`${left}.lock`, 2 * HOUR);
    await age(`${ours}.lock`, 2 * HOUR);
    const [leftInfo, oursInfo] = await listLocks(dir);
    assert.equal(leftInfo.lockPath, `${left}.lock`);
    assert.equal(leftInfo.pid, python.pid);
    assert.equal(leftInfo.record, null);
    assert.equal(leftInfo.stale, true);
    assert.equal(oursInfo.lockPath, `${ours}.lock`);
    assert.equal(oursInfo.pid, Deno.pid);
    assert.equal(oursInfo.record?.pid, Deno.pid);
    assert.equal(oursInfo.stale, true);
    const report = await cleanupStaleLocks(dir);
    assert.deepEqual(report.removed, [`${ours}.lock`]);
    assert.deepEqual(report.kept, [{
      path: `${left}.lock`,
      reason:
        "seed 001's lock file (its pid, no lockbox record); never removed",
    }]);
    assert.equal(await Deno.readTextFile(`${left}.lock`), String(python.pid));
    assert.equal((await sidecarRecord(`${ours}.lock`)).pid, Deno.pid);
  });
});

Deno.test("processFiles() reports a file seed 001's Python holds as locked, naming its pid", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/deck.pptx`;
    const python = new Child("python3", [SEED001, "hold", file], {
      stdin: true,
    });
    try {
      await python.waitFor("locked");
      const [result] = await processFiles([file], () => Promise.resolve(), {
        lockTimeout: 100,
      });
      assert.deepEqual(result, {
        file,
        ok: false,
        locked: true,
        error: `locked by another process (pid ${python.pid})`,
      });
    } finally {
      await finishAll([python]);
    }
  });
});
