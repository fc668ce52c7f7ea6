// Waits for the FileLock on each PATH at once, prints "waiting", and on the
// line "exit" on stdin calls process.exit(0) with the waits still pending.
// With --sigurg, a process.on("SIGURG") listener is added first (libuv then
// installs its own handler, with SA_RESTART).
// Usage: waits.mjs [--sigurg] PATH...
import { lockbox } from "./_lockbox.mjs";

const { FileLock } = lockbox;

const args = process.argv.slice(2);
if (args[0] === "--sigurg") {
  args.shift();
  process.on("SIGURG", () => {});
}
for (const path of args) {
  FileLock.acquire(path).then(() => console.log(`locked ${path}`));
}
console.log("waiting");
process.stdin.setEncoding("utf8").on("data", (chunk) => {
  if (chunk.includes("exit")) process.exit(0);
});
