// `deno task demo`: lockbox's guarantee beside the naive approach, with real
// processes, in a temporary directory.

import { fileURLToPath } from "node:url";
import { CaptureGroups } from "../mod.ts";

const PROCESSES = 50;
const worker = fileURLToPath(new URL("./append_worker.ts", import.meta.url));
const cli = [
  "run",
  "--allow-all",
  "--quiet",
  fileURLToPath(new URL("../cli.ts", import.meta.url)),
];

async function race(
  mode: "naive" | "locked" | "group",
  dir: string,
): Promise<number> {
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
  if (mode === "group") {
    return new Set(await new CaptureGroups(file).transactions("demo")).size;
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

  console.log(
    `\nCapture groups (seed 000's DB): ${PROCESSES} processes each add one transaction`,
  );
  await new CaptureGroups(`${dir}/group.json`).create("demo");
  const group = await race("group", dir);
  console.log(
    `  CaptureGroups.addTransaction(): ${group} of ${PROCESSES} transactions in group "demo"`,
  );
  console.log(
    "  (in seed 000's exact JSON format, so the Python system shares the DB)",
  );

  console.log(
    `\nlockbox status ${dir} (while \`lockbox run\` holds job.lock, and the`,
  );
  console.log("lock files of the runs above sit free):\n");
  const holder = new Deno.Command(Deno.execPath(), {
    args: [...cli, "run", `${dir}/job.lock`, "sh", "-c", "echo held; sleep 1"],
    stdout: "piped",
  }).spawn();
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read(); // "held"
  const status = await new Deno.Command(Deno.execPath(), {
    args: [...cli, "status", dir],
    env: { NO_COLOR: "1" },
  }).output();
  console.log(
    new TextDecoder().decode(status.stdout).trimEnd().replace(/^/gm, "  "),
  );
  await reader.cancel();
  await holder.status;
  if (locked !== PROCESSES || group !== PROCESSES) {
    console.error("lockbox lost an entry: please report this as a bug");
    Deno.exitCode = 1;
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
