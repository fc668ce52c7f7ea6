// How long `lockbox run -n LOCK true` takes from start to exit, beside
// `deno run` of an empty script (the baseline: the target is within 1.5x of
// it), `flock(1)`, and the npm package's CLI under Node (when
// `deno task build:npm` has built dist/npm). Two Deno forms: the installed
// command (`deno task install:cli`, run here into a temporary
// DENO_INSTALL_ROOT: the built CLI of dist/deno, through its shim) and
// `deno run -A cli.ts` from the sources. Each sample is one whole process;
// the variants take turns, so a change in the machine's load falls on all
// of them. Prints the median wall time and the mean CPU time (user +
// system, from this process's children's times in /proc/self/stat, which a
// busy machine disturbs far less). Linux.
//
// Usage: deno run -A bench/cli_startup.ts [RUNS] [CLI_TS]
// (CLI_TS: another checkout's cli.ts, to compare with it.)

import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const runs = Number(Deno.args[0] ?? 20);
const root = new URL("../", import.meta.url);
const cli = Deno.args[1] ?? fileURLToPath(new URL("cli.ts", root));
const nodeCli = fileURLToPath(new URL("dist/npm/cli.js", root));
const dir = await Deno.makeTempDir({ prefix: "lockbox_bench_startup_" });
const empty = `${dir}/empty.ts`;
const lock = `${dir}/job.lock`;
await Deno.writeTextFile(empty, "");

async function works(command: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args, stdout: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

// deno.json without its "unstable" list: Deno then reads and parses, at
// start, every module the CLI could import dynamically (the full program,
// PostgreSQL, commander, pg), which lazy-dynamic-imports leaves until used.
const config = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", root)),
);
delete config.unstable;
const eagerConfig = `${dir}/deno.json`;
await Deno.writeTextFile(eagerConfig, JSON.stringify(config));

// The command as `deno task install:cli` installs it.
const installed = await new Deno.Command(Deno.execPath(), {
  args: ["task", "--quiet", "install:cli"],
  cwd: fileURLToPath(root),
  env: { DENO_INSTALL_ROOT: dir },
  stdout: "null",
  stderr: "null",
}).output();
if (!installed.success) throw new Error("deno task install:cli failed");
// Its shim runs the `deno` on PATH: this one.
Deno.env.set("PATH", `${dirname(Deno.execPath())}:${Deno.env.get("PATH")}`);

const variants: [string, string, string[]][] = [
  ["deno run of an empty script", Deno.execPath(), ["run", empty]],
  ["lockbox run -n LOCK true (installed)", `${dir}/bin/lockbox`, [
    "run",
    "-n",
    lock,
    "true",
  ]],
  ["the same, deno run -A cli.ts", Deno.execPath(), [
    "run",
    "-A",
    cli,
    "run",
    "-n",
    lock,
    "true",
  ]],
  ["the same, dynamic imports at start", Deno.execPath(), [
    "run",
    "-A",
    "--config",
    eagerConfig,
    "--lock",
    fileURLToPath(new URL("deno.lock", root)),
    cli,
    "run",
    "-n",
    lock,
    "true",
  ]],
];
if (await works("node", [nodeCli, "--version"])) {
  variants.push([
    "lockbox run -n LOCK true (Node)",
    "node",
    [nodeCli, "run", "-n", lock, "true"],
  ]);
}
if (await works("flock", ["--version"])) {
  variants.push(["flock -n LOCK true", "flock", ["-n", lock, "true"]]);
}

/** This process's children's CPU time so far, in ms (cutime + cstime). */
function childCpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 16 and 17 of stat(5), counted after the command name.
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

// Every module compiled and cached first, as for an installed CLI after its
// first run.
for (const [name, command, args] of variants) {
  if (!await works(command, args)) throw new Error(`${name} failed`);
}
const wall = variants.map(() => [] as number[]);
const cpu = variants.map(() => 0);
for (let run = 0; run < runs; run++) {
  for (const [i, [, command, args]] of variants.entries()) {
    const cpuBefore = childCpuMs();
    const started = performance.now();
    await new Deno.Command(command, { args, stdout: "null" }).output();
    wall[i].push(performance.now() - started);
    cpu[i] += childCpuMs() - cpuBefore;
  }
}
await Deno.remove(dir, { recursive: true });

const median = (values: number[]) =>
  values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
const base = { wall: median(wall[0]), cpu: cpu[0] / runs };
console.log(`${runs} runs each, ${Deno.execPath()}, ${cli}`);

for (const [i, [name]] of variants.entries()) {
  const w = median(wall[i]);
  const c = cpu[i] / runs;
  console.log(
    `${name.padEnd(36)} wall median ${w.toFixed(0).padStart(5)} ms (${
      (w / base.wall).toFixed(2)
    }x)   CPU mean ${c.toFixed(0).padStart(4)} ms (${
      (c / base.cpu).toFixed(2)
    }x)`,
  );
}
