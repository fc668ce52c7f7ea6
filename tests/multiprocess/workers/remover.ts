// Removes the lock file the way the protocol allows, as fast as it can: take
// the lock, check the inode, unlink, let go (removeOnRelease does exactly
// that). Usage: remover.ts PATH MS
import { FileLock } from "../../../mod.ts";

const [path, ms] = Deno.args;
const end = Date.now() + Number(ms);
let removed = 0;
while (Date.now() < end) {
  const lock = await FileLock.tryAcquire(path, { removeOnRelease: true });
  if (lock) {
    await lock.release();
    removed++;
  } else {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
console.log(`removed ${removed}`);
