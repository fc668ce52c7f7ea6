// The other side of the hand-off bench: on each "go" line, waits for the
// lock, writes one byte the moment it has it, and lets go.
// Usage: _handoff_child.ts PATH [--blocking] [--no-deadlock-check]
import { FileLock } from "../mod.ts";

const [path] = Deno.args;
const blocking = Deno.args.includes("--blocking");
// deadlockTimeout: Infinity starts no deadlock check's timer for the wait.
const deadlockTimeout = Deno.args.includes("--no-deadlock-check")
  ? Infinity
  : undefined;
const byte = new Uint8Array([0x61]);
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  for (const _ of decoder.decode(chunk).matchAll(/go/g)) {
    const lock = await FileLock.acquire(path, { blocking, deadlockTimeout });
    Deno.stdout.writeSync(byte);
    await lock.release();
  }
}
