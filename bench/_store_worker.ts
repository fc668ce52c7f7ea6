// One process of the store benchmark: COUNT read-modify-writes that push an
// item and bump a counter, by MODE.
// Usage: _store_worker.ts MODE PATH COUNT PREFIX
//   MODE: json-durable | json-fast | journal-durable | journal-fast |
//         journal-durable-block | journal-fast-block (blockingLock) |
//         sqlite-full | sqlite-normal (the JSON document in one row) |
//         sqlite-rows-full | sqlite-rows-normal (SQLite's natural form: a
//         counter row updated and one row inserted per update) | naive |
//         floor-async | floor-block | floor-protocol (see floor() below) |
//         startup (imports lockbox, updates nothing)
import { DatabaseSync } from "node:sqlite";
import { cpuUsage } from "node:process";
import { JsonStore } from "../mod.ts";

type Doc = { count: number; items: string[] };
const [mode, path, countText, prefix] = Deno.args;
const count = Number(countText);
// The CPU this process spends from here on (its updates, not its start-up),
// printed at exit for the bench: "cpu USER_US SYSTEM_US".
const started = cpuUsage();
globalThis.addEventListener("unload", () => {
  const { user, system } = cpuUsage(started);
  console.log(`cpu ${user} ${system}`);
});

/** The database at `path`, waiting for its lock, synchronous as MODE says. */
function openSqlite(): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec(
    `PRAGMA busy_timeout=600000; PRAGMA synchronous=${
      mode.endsWith("-full") ? "FULL" : "NORMAL"
    }`,
  );
  return db;
}

if (mode.startsWith("json-") || mode.startsWith("journal-")) {
  const store = new JsonStore<Doc>(path, {
    initial: { count: 0, items: [] },
    durable: mode.includes("-durable"),
    journal: mode.startsWith("journal-"),
    lockTimeout: Infinity,
    blockingLock: mode.endsWith("-block"),
    // A worker that only updates keeps its files open, as SQLite keeps
    // its database open.
    keepOpen: true,
  });
  for (let i = 0; i < count; i++) {
    await store.update((d) => {
      d.count++;
      d.items.push(`${prefix}-${i}`);
    });
  }
} else if (mode === "sqlite-full" || mode === "sqlite-normal") {
  const db = openSqlite();
  const select = db.prepare("SELECT body FROM doc WHERE id = 1");
  const update = db.prepare("UPDATE doc SET body = ? WHERE id = 1");
  for (let i = 0; i < count; i++) {
    db.exec("BEGIN IMMEDIATE");
    const row = select.get() as { body: string };
    const d: Doc = JSON.parse(row.body);
    d.count++;
    d.items.push(`${prefix}-${i}`);
    update.run(JSON.stringify(d));
    db.exec("COMMIT");
  }
  db.close();
} else if (mode === "sqlite-rows-full" || mode === "sqlite-rows-normal") {
  const db = openSqlite();
  const bump = db.prepare("UPDATE counter SET n = n + 1 WHERE id = 1");
  const insert = db.prepare("INSERT INTO items (item) VALUES (?)");
  for (let i = 0; i < count; i++) {
    db.exec("BEGIN IMMEDIATE");
    bump.run();
    insert.run(`${prefix}-${i}`);
    db.exec("COMMIT");
  }
  db.close();
} else if (mode.startsWith("floor-")) {
  await floor();
} else if (mode === "startup") {
  // Start-up only: nothing to do once lockbox is imported.
} else if (mode === "naive") {
  for (let i = 0; i < count; i++) {
    let d: Doc = { count: 0, items: [] };
    try {
      d = JSON.parse(await Deno.readTextFile(path));
    } catch {
      // Missing, or caught half-written by another process: start over, as
      // the naive scripts do.
    }
    d.count++;
    d.items.push(`${prefix}-${i}`);
    await Deno.writeTextFile(path, JSON.stringify(d));
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}

/**
 * What the durable journal costs without lockbox: each update takes an
 * flock, appends one line, releases, and fdatasyncs, with Deno's own calls.
 * floor-async waits as lockbox does by default (`FsFile.lock()`, a helper
 * thread), floor-block in this thread (`lockSync`), and floor-protocol makes
 * the system calls lockbox makes per update in steady state (the lock file,
 * kept open, locked, inode-checked with an lstat, its holder record read and
 * written, unlocked; the kept journal lstat'ed, caught up and appended to)
 * with none of its JavaScript around them.
 */
async function floor(): Promise<void> {
  const line = new TextEncoder().encode(`${"x".repeat(99)}\n`);
  const record = new Uint8Array(512).fill(0x20);
  const scratch = new Uint8Array(4096);
  const lockPath = `${path}.lock`;
  const journalPath = `${path}.journal`;
  const journal = Deno.openSync(journalPath, {
    read: true,
    append: true,
    create: true,
  });
  const held = Deno.openSync(lockPath, {
    read: true,
    write: true,
    create: true,
  });
  for (let i = 0; i < count; i++) {
    if (mode === "floor-protocol") {
      if (!held.tryLockSync(true)) await held.lock(true);
      Deno.lstatSync(lockPath);
      held.seekSync(0, Deno.SeekMode.Start);
      held.readSync(scratch.subarray(0, 512));
      held.seekSync(0, Deno.SeekMode.Start);
      held.writeSync(record);
      const size = Deno.lstatSync(journalPath).size;
      journal.seekSync(Math.max(0, size - 700), Deno.SeekMode.Start);
      journal.readSync(scratch);
      journal.writeSync(line);
      held.unlockSync();
    } else {
      if (mode === "floor-block") held.lockSync(true);
      else if (!held.tryLockSync(true)) await held.lock(true);
      journal.writeSync(line);
      held.unlockSync();
    }
    journal.syncDataSync();
  }
  held.close();
  journal.close();
}
