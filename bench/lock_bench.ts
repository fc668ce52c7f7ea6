// `deno task bench`: FileLock beside the raw floor and npm proper-lockfile,
// and the cross-process hand-off latency.

import { fileURLToPath } from "node:url";
import lockfile from "proper-lockfile";
import { FileLock } from "../mod.ts";

const dir = Deno.makeTempDirSync({ prefix: "lockbox_bench_" });
const path = `${dir}/state.json`;
Deno.writeTextFileSync(path, "{}");
Deno.writeFileSync(`${path}.raw`, new Uint8Array(512));

Deno.bench({
  name: "floor: openSync + tryLockSync + unlockSync + close",
  group: "acquire+release",
  baseline: true,
  fn() {
    const file = Deno.openSync(`${path}.floor`, {
      read: true,
      write: true,
      create: true,
    });
    file.tryLockSync(true);
    file.unlockSync();
    file.close();
  },
});

// The system calls lockbox's protocol makes, with no JavaScript around them,
// for back-to-back acquisitions of one lock path (its lock file stays open
// between them, known by its inode): flock, lstat (the inode check), seek +
// read (the previous token), seek + write (the holder record), unlock.
// FileLock minus this is what lockbox's own code costs.
const record = new Uint8Array(512).fill(0x20);
const scratch = new Uint8Array(512);
const raw = Deno.openSync(`${path}.raw`, { read: true, write: true });
Deno.bench({
  name: "protocol system calls alone (no JavaScript logic)",
  group: "acquire+release",
  fn() {
    raw.tryLockSync(true);
    Deno.lstatSync(`${path}.raw`);
    raw.seekSync(0, Deno.SeekMode.Start);
    raw.readSync(scratch);
    raw.seekSync(0, Deno.SeekMode.Start);
    raw.writeSync(record);
    raw.unlockSync();
  },
});

Deno.bench({
  name: "lockbox FileLock.acquire + release (holder record, token)",
  group: "acquire+release",
  async fn() {
    const lock = await FileLock.acquire(path);
    await lock.release();
  },
});

// The same with the deadlock check off: an uncontended acquisition never
// waits, so it must cost the same (see docs/benchmarks.md).
Deno.bench({
  name: "lockbox FileLock.acquire + release, deadlockTimeout: Infinity",
  group: "acquire+release",
  async fn() {
    const lock = await FileLock.acquire(path, { deadlockTimeout: Infinity });
    await lock.release();
  },
});

Deno.bench({
  name: "npm proper-lockfile lock + unlock",
  group: "acquire+release",
  async fn() {
    const release = await lockfile.lock(`${path}.pl`, { realpath: false });
    await release();
  },
});

// Hand-off: this process holds the lock while a child waits for it in the
// kernel; timed from our release to the child's first byte after it got the
// lock (so it includes one pipe write and read: an upper bound). One child
// waits the default way (a pool thread), one with `blocking: true`, and one
// the default way with no deadlock check (`deadlockTimeout: Infinity`), to
// show what the check's timer costs a contended acquisition.
function handoffChild(blocking: boolean, check = true) {
  const name = `${path}.handoff-${blocking}${check ? "" : "-nocheck"}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-sys=hostname",
      fileURLToPath(new URL("./_handoff_child.ts", import.meta.url)),
      name,
      ...(blocking ? ["--blocking"] : []),
      ...(check ? [] : ["--no-deadlock-check"]),
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  return {
    child,
    blocking,
    check,
    name,
    toChild: child.stdin.getWriter(),
    fromChild: child.stdout.getReader(),
  };
}
const children = [
  handoffChild(false),
  handoffChild(true),
  handoffChild(false, false),
];

async function childIsWaiting(inode: number): Promise<void> {
  // /proc/locks marks a blocked waiter with "->".
  while (
    !Deno.readTextFileSync("/proc/locks").split("\n").some((line) =>
      line.includes("->") && line.includes(`:${inode} `)
    )
  ) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

for (const { blocking, check, name, toChild, fromChild } of children) {
  Deno.bench({
    name: `lockbox hand-off: release -> waiting process holds it${
      blocking ? " (blocking: true)" : ""
    }${check ? "" : " (deadlockTimeout: Infinity)"}`,
    group: "hand-off between two processes",
    async fn(b) {
      const lock = await FileLock.acquire(name);
      await toChild.write(new TextEncoder().encode("go\n"));
      await childIsWaiting(Deno.statSync(lock.lockPath).ino!);
      b.start();
      await lock.release();
      await fromChild.read();
      b.end();
    },
  });
}

globalThis.addEventListener("unload", () => {
  raw.close();
  for (const { child } of children) child.kill();
  Deno.removeSync(dir, { recursive: true });
});
