// Prints, as one JSON line, everything the monitor and the inspection
// functions say about the lock files of DIR; and whether this process's
// /proc/locks lists the first of them at all.
// Usage: inspect.ts DIR LOCKFILE...
import {
  isLocked,
  isLockStale,
  listLocks,
  lockHolder,
  lockInfo,
} from "../../../mod.ts";

const [dir, ...lockFiles] = Deno.args;
const ino = (await Deno.stat(lockFiles[0])).ino;
const procLocks = await Deno.readTextFile("/proc/locks");
const files = [];
for (const lockFile of lockFiles) {
  const path = lockFile.replace(/\.lock$/, "");
  files.push({
    lockFile,
    info: await lockInfo(lockFile, { staleAfter: 60_000 }),
    stale: await isLockStale(lockFile, { staleAfter: 60_000 }),
    locked: await isLocked(path),
    holderPid: (await lockHolder(path))?.pid ?? null,
  });
}
console.log(JSON.stringify({
  pid: Deno.pid,
  listedInProcLocks: procLocks.includes(`:${ino} `),
  list: await listLocks(dir, { staleAfter: 60_000 }),
  files,
}));
