// In one process: a blocking acquire of a lock this process already holds
// must queue behind the holder, not block the thread on itself forever.
// Prints "queued" once the blocking call has returned its promise, then
// "granted N" after the first lock is released, N being how much its token
// exceeds the first lock's.
// Usage: blocking_self.ts PATH
import { FileLock } from "../../../mod.ts";

const [path] = Deno.args;
const first = await FileLock.acquire(path);
const second = FileLock.acquire(path, { blocking: true });
console.log("queued");
await first.release();
const lock = await second;
console.log(`granted ${lock.token - first.token}`);
await lock.release();
