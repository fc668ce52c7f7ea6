// Prints, as JSON, what listLocks and cleanupStaleLocks report for DIR
// (recursive, stale after 1 s). Copied beside a copy of src/ and run as an
// unprivileged user by the lock monitor's permission test.
import { cleanupStaleLocks, listLocks } from "./src/lock_monitor.ts";

const dir = Deno.args[0];
const listed = await listLocks(dir, { recursive: true, staleAfter: 1000 });
const cleaned = await cleanupStaleLocks(dir, {
  recursive: true,
  staleAfter: 1000,
});
console.log(JSON.stringify({ listed, cleaned }));
