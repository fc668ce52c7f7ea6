// `deno task demo`: lockbox's guarantee beside the naive approach, with real
// processes, in a temporary directory.

import { fileURLToPath } from "node:url";

const PROCESSES = 50;
const worker = fileURLToPath(new URL("./append_worker.ts", import.meta.url));

async function race(mode: "naive" | "locked", dir: string): Promise<number> {
  const file = `${dir}/${mode}.json`;
  const children = Array.from(
    { length: PROCESSES },
    (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write",
          "--allow-sys=hostname",
          worker,
          mode,
          file,
          `entry-${i}`,
        ],
        stdout: "null",
        stderr: "inherit",
      }).output(),
  );
  for (const result of await Promise.all(children)) {
    if (!result.success) throw new Error(`a ${mode} process failed`);
  }
  let entries: string[] = [];
  try {
    entries = JSON.parse(await Deno.readTextFile(file));
  } catch {
    // The naive file can end up half-written.
  }
  return new Set(entries).size;
}

const dir = await Deno.makeTempDir({ prefix: "lockbox_demo_" });
try {
  console.log(`${PROCESSES} processes each append one entry to one JSON file`);
  console.log(`(read, 5 ms of work, write), all started at once, in ${dir}\n`);
  const naive = await race("naive", dir);
  console.log(
    `  naive read-modify-write:  ${naive} of ${PROCESSES} entries kept (${
      PROCESSES - naive
    } lost)`,
  );
  const locked = await race("locked", dir);
  console.log(
    `  lockbox withLock():       ${locked} of ${PROCESSES} entries kept (${
      PROCESSES - locked
    } lost)`,
  );
  if (locked !== PROCESSES) {
    console.error("lockbox lost an entry: please report this as a bug");
    Deno.exitCode = 1;
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
