// Takes the exclusive lock COUNT times and prints each fencing token.
// Usage: tokens.ts PATH COUNT
import { FileLock } from "../../../mod.ts";

const [path, count] = Deno.args;
const tokens = [];
for (let i = 0; i < Number(count); i++) {
  const lock = await FileLock.acquire(path);
  tokens.push(lock.token);
  await lock.release();
}
console.log(`tokens ${tokens.join(",")}`);
