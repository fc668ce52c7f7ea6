// Holds a FileLock until stdin closes. Usage: hold.mjs PATH [--shared] [--metadata JSON]
import { lockbox } from "./_lockbox.mjs";

const { FileLock } = lockbox;

const [path, ...rest] = process.argv.slice(2);
const metadataAt = rest.indexOf("--metadata");
const lock = await FileLock.acquire(path, {
  shared: rest.includes("--shared"),
  metadata: metadataAt === -1 ? undefined : JSON.parse(rest[metadataAt + 1]),
});
console.log(`locked ${lock.token}`);
process.stdin.resume();
process.stdin.on("end", async () => {
  await lock.release();
  console.log("released");
});
