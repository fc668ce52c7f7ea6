// Starts a wait for the FileLock on PATH (held elsewhere) while every thread
// of libuv's pool is blocked opening one of the FIFOs (until the test opens
// them for writing), so the wait's flock is queued behind them; prints
// "queued", then calls process.exit(0). The exit finishes once the FIFOs
// open: libuv runs the queued work, then joins its threads.
// Usage: exit_queued.mjs PATH FIFO...
import { readFile } from "node:fs/promises";
import process from "node:process";
import { lockbox } from "./_lockbox.mjs";

const { FileLock } = lockbox;
const [path, ...fifos] = process.argv.slice(2);

for (const fifo of fifos) readFile(fifo).catch(() => {});
FileLock.acquire(path).then(() => console.log("locked"));
// Time enough for the wait to reach libuv's queue.
await new Promise((resolve) => setTimeout(resolve, 300));
console.log("queued");
process.exit(0);
