// Waits for the FileLock on PATH, which another process holds, and reports
// where the wait parked: "parked BEFORE NOW TID" once a thread of this process
// is blocked in flock (BEFORE and NOW: this process's thread counts before
// the wait and while it lasts; TID: the thread in flock). Then "locked" once
// the lock is granted. With --exit, it calls process.exit(0) on the line
// "exit" on stdin instead of waiting for the grant. With --pool-size-later,
// it sets UV_THREADPOOL_SIZE to 8 after the pool has started.
// Usage: park.mjs PATH [--exit | --pool-size-later]
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import process from "node:process";
import { lockbox } from "./_lockbox.mjs";
import { threadInFlock } from "./_flock_thread.mjs";

const { FileLock } = lockbox;
const [path, mode] = process.argv.slice(2);

// libuv starts its pool threads on first use: start them before counting.
await readFile(new URL(import.meta.url));
if (mode === "--pool-size-later") process.env.UV_THREADPOOL_SIZE = "8";
const before = readdirSync("/proc/self/task").length;
const wait = FileLock.acquire(path);
let tid = null;
for (let i = 0; i < 6_000 && tid === null; i++) {
  await new Promise((resolve) => setTimeout(resolve, 10));
  tid = threadInFlock();
}
console.log(`parked ${before} ${readdirSync("/proc/self/task").length} ${tid}`);
if (mode === "--exit") {
  process.stdin.setEncoding("utf8").on("data", (chunk) => {
    if (chunk.includes("exit")) process.exit(0);
  });
} else {
  const lock = await wait;
  console.log("locked");
  await lock.release();
}
