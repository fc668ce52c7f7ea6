// Waits 200 ms for a lock held elsewhere, then exits 5 at once.
import { lockbox } from "./_lockbox.mjs";

const { FileLock, LockTimeoutError } = lockbox;

try {
  await FileLock.acquire(process.argv[2], { timeout: 200 });
} catch (error) {
  if (!(error instanceof LockTimeoutError)) throw error;
  console.log("timed out");
  process.exit(5);
}
