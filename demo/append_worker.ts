// One demo process: appends one entry to a shared JSON list, naively or
// under a FileLock. Each does read -> 5 ms of "work" -> write, as real
// programs do (validation, a network call) between reading and writing.
// Usage: append_worker.ts naive|locked FILE ENTRY
import { withLock } from "../mod.ts";

const [mode, file, entry] = Deno.args;

async function appendEntry(): Promise<void> {
  let entries: string[] = [];
  try {
    entries = JSON.parse(await Deno.readTextFile(file));
  } catch {
    // What the naive scripts do with a missing or half-written file.
    entries = [];
  }
  entries.push(entry);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await Deno.writeTextFile(file, JSON.stringify(entries));
}

if (mode === "locked") await withLock(file, appendEntry);
else await appendEntry();
