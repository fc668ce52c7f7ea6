// Locked, deliberately non-atomic increments of a counter file.
// Usage: increment.ts PATH COUNT [--remove-on-release] [--blocking]
import { withLock } from "../../../mod.ts";

const [path, count] = Deno.args;
const removeOnRelease = Deno.args.includes("--remove-on-release");
const blocking = Deno.args.includes("--blocking");
for (let i = 0; i < Number(count); i++) {
  await withLock(path, async () => {
    let n = 0;
    try {
      n = Number(Deno.readTextFileSync(path));
    } catch {
      // First increment.
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
    Deno.writeTextFileSync(path, String(n + 1));
  }, { removeOnRelease, blocking });
}
console.log("done");
