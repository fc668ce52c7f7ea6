// Locked, deliberately non-atomic increments of a counter file.
// Usage: increment.mjs PATH COUNT
import { readFileSync, writeFileSync } from "node:fs";
import { lockbox } from "./_lockbox.mjs";

const { withLock } = lockbox;

const [path, count] = process.argv.slice(2);
for (let i = 0; i < Number(count); i++) {
  await withLock(path, async () => {
    let n = 0;
    try {
      n = Number(readFileSync(path, "utf8"));
    } catch {
      // First increment.
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
    writeFileSync(path, String(n + 1));
  });
}
console.log("done");
