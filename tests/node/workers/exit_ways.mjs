// Parks a wait for the FileLock on PATH (held elsewhere) on libuv's pool,
// prints "parked", and on the line "exit" on stdin ends the process in the
// way WAY names, each of which
// skips lockbox's own "exit" listener or reaches process.reallyExit without
// it:
//   exit-in-exit: an "exit" listener added before the wait calls
//     process.exit(3);
//   throw-in-exit: an "exit" listener added before the wait throws;
//   really-exit: process.reallyExit(4), which runs no listener.
// Usage: exit_ways.mjs WAY PATH
import process from "node:process";
import { lockbox } from "./_lockbox.mjs";
import { threadInFlock } from "./_flock_thread.mjs";

const { FileLock } = lockbox;
const [way, path] = process.argv.slice(2);

if (way === "exit-in-exit") process.on("exit", () => process.exit(3));
if (way === "throw-in-exit") {
  process.on("exit", () => {
    throw new Error("an exit listener that throws");
  });
}

FileLock.acquire(path).then(() => console.log("locked"));
for (let i = 0; i < 6_000 && threadInFlock() === null; i++) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log("parked");
process.stdin.setEncoding("utf8").on("data", (chunk) => {
  if (!chunk.includes("exit")) return;
  if (way === "really-exit") process.reallyExit(4);
  else process.exit(0);
});
