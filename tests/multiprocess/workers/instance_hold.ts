// Holds the archiver's single-instance lock until stdin closes.
// Usage: instance_hold.ts LOCKFILE
import { acquireInstanceLock, LockBusyError } from "../../../mod.ts";

try {
  const instance = await acquireInstanceLock(Deno.args[0], {
    metadata: { command: "archiver import" },
  });
  console.log("locked");
  for await (const _ of Deno.stdin.readable) {
    // Wait for stdin to close.
  }
  await instance.release();
} catch (error) {
  if (error instanceof LockBusyError) {
    console.log(`busy ${error.holder?.pid} ${error.message}`);
  } else throw error;
}
