// Runs cleanupStaleLocks on DIR and prints its report as one JSON line, with
// whether a lock taken and released with removeOnRelease left its lock file.
// Usage: clean.ts DIR STALE_AFTER_MS
import { cleanupStaleLocks, FileLock } from "../../../mod.ts";

const [dir, staleAfter] = Deno.args;
const report = await cleanupStaleLocks(dir, {
  staleAfter: Number(staleAfter),
});
const lock = await FileLock.acquire(`${dir}/own`, { removeOnRelease: true });
await lock.release();
const kept = await Deno.lstat(lock.lockPath).then(() => true, () => false);
console.log(JSON.stringify({ ...report, removeOnReleaseKept: kept }));
