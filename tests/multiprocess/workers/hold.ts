// Holds a lock until stdin closes (or a "release" line), then releases it.
// Usage: hold.ts PATH [--shared] [--metadata JSON] [--lock-path P]
import { parseArgs } from "node:util";
import { FileLock } from "../../../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    shared: { type: "boolean", default: false },
    metadata: { type: "string" },
    "lock-path": { type: "string" },
  },
});
const locks = [];
for (const path of positionals) {
  locks.push(
    await FileLock.acquire(path, {
      shared: values.shared,
      metadata: values.metadata ? JSON.parse(values.metadata) : undefined,
      lockPath: values["lock-path"],
    }),
  );
}
console.log(`locked ${locks.map((l) => l.token).join(" ")}`);
for await (
  const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
) {
  if (chunk.includes("release")) break;
}
for (const lock of locks) await lock.release();
console.log("released");
