// One demo process: appends one entry to a shared JSON list, naively or
// under a FileLock. Each does read -> 5 ms of "work" -> write, as real
// programs do (validation, a network call) between reading and writing.
// With "group", it adds ENTRY as a transaction of capture group "demo" in a
// seed-000 capture group DB instead.
// Usage: append_worker.ts naive|locked|group FILE ENTRY
import { CaptureGroups, withLock } from "../mod.ts";

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

if (mode === "group") {
  await new CaptureGroups(file).addTransaction("demo", entry);
} else if (mode === "locked") await withLock(file, appendEntry);
else await appendEntry();
