// A holder whose wall clock is HOURS behind: takes the lock on LOCK (as
// FileLock.acquire does) and writes {by: "behind"} to the store STORE fenced
// with its token; on a StaleFenceError it takes the lock again, ATTEMPTS - 1
// times (default 2 attempts in all).
// Prints "stale TOKEN HIGHEST" for a refusal and "wrote TOKEN" for a write.
// With "pid-file", the lock is taken with { pidFile: true }.
// Usage: behind_clock_fenced_write.ts HOURS LOCK STORE [ATTEMPTS [pid-file]]
const [hours, lockTarget, storePath, attempts = "2", mode] = Deno.args;
const realNow = Date.now;
Date.now = () => realNow() - Number(hours) * 3_600_000;

const { FileLock, JsonStore, StaleFenceError } = await import(
  "../../../mod.ts"
);
const store = new JsonStore<{ by: string }>(storePath, {
  initial: { by: "" },
});
for (let attempt = 0; attempt < Number(attempts); attempt++) {
  await using lock = await FileLock.acquire(lockTarget, {
    pidFile: mode === "pid-file",
  });
  try {
    await store.write({ by: "behind" }, { fence: lock.token });
    console.log(`wrote ${lock.token}`);
    break;
  } catch (error) {
    if (!(error instanceof StaleFenceError)) throw error;
    console.log(`stale ${lock.token} ${error.highest}`);
  }
}
