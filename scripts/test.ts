// `deno task test`: the whole suite, in parallel.
//
// 1. At once: the npm build and the per-module Node build (`deno task
//    build:npm --install`, `deno task build:node-sources --install`, which
//    some Deno tests use too) and the type check (`deno task check`: the
//    code, the tests and the API documentation's examples).
// 2. Then every test file as a job of its own: each Deno test file in a
//    `deno test` process of its own (`--no-check`: step 1 checked it), the
//    API documentation's examples (`deno test --doc`), and each Node test
//    file against each build (`node --test`), LOCKBOX_TEST_JOBS (default 4)
//    at a time, the slow kinds first, in turn. Tests mostly wait on processes,
//    timers and PostgreSQL, so more jobs than cores pay off.
//
// A job's output is printed whole when it ends (parallel output never
// interleaves), headed by its file. At the end: one summary line, `tests: N
// passed, N failed (deno N/N, node N/N)`, and when anything failed, the
// first failure's whole output (the test's name, file and error) in a
// marked block, also written to the file LOCKBOX_TEST_FAILURE_FILE names
// (.ci/run prints it again last). A job still running after 15 minutes is
// killed and fails with the output it printed (the test it hung in is the
// last one named).
//
// `deno run --allow-read scripts/test.ts --first-failure LOG` prints that
// block for a log of `deno test` or of `node --test --test-reporter=tap`
// (nothing, exit 1, when it holds no failure).

import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));
const deno = Deno.execPath();
const JOB_GUARD_MS = 15 * 60_000;

/** One command whose whole output is reported together. */
export interface Job {
  name: string;
  kind: "build" | "deno" | "node";
  args: string[];
  command: string;
  env?: Record<string, string>;
}

/** How a job ended. */
interface Outcome {
  job: Job;
  code: number;
  text: string;
  seconds: number;
  hung: boolean;
  passed: number;
  failed: number;
  ignored: number;
}

const rule = (title: string) => `${"=".repeat(8)} ${title} ${"=".repeat(8)}`;
export const FAILURE_START = "FIRST FAILURE";
export const FAILURE_END = "END OF FIRST FAILURE";

/** A running job: what it printed so far, and its process group. */
interface Running {
  chunks: string[];
  pid: number;
}

/** Sends `signal` to every process of a job's group. */
function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch { /* all gone */ }
}

/**
 * Runs `job` in a process group of its own (setsid), so that a job killed
 * takes what it started with it; returns its stdout and stderr in one text
 * as they arrived.
 */
async function run(job: Job, running: Map<Job, Running>): Promise<Outcome> {
  const started = performance.now();
  const child = new Deno.Command("setsid", {
    args: [job.command, ...job.args],
    cwd: root,
    env: job.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const chunks: string[] = [];
  running.set(job, { chunks, pid: child.pid });
  const readers = [child.stdout, child.stderr].map((stream) =>
    stream.pipeThrough(new TextDecoderStream()).getReader()
  );
  const pumps = Promise.all(readers.map(async (reader) => {
    for (let read = await reader.read(); !read.done;) {
      chunks.push(read.value);
      read = await reader.read();
    }
  }));
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    killGroup(child.pid, "SIGKILL");
  }, JOB_GUARD_MS);
  const status = await child.status;
  clearTimeout(guard);
  // A process the job left behind may hold its output open: its end is
  // not waited for long.
  let grace: ReturnType<typeof setTimeout> | undefined;
  const open = await Promise.race([
    pumps.then(() => false),
    new Promise<boolean>((resolve) => {
      grace = setTimeout(() => resolve(true), 10_000);
    }),
  ]);
  clearTimeout(grace);
  if (open) {
    killGroup(child.pid, "SIGKILL");
    await Promise.all(readers.map((reader) => reader.cancel()));
  }
  running.delete(job);
  const text = chunks.join("") +
    (open ? "\na process the job left behind kept its output open\n" : "") +
    (hung
      ? `\nhung: killed after ${
        JOB_GUARD_MS / 60_000
      } minutes, in the last test named above\n`
      : "");
  return {
    job,
    code: open && status.code === 0 ? 1 : status.code,
    text,
    seconds: (performance.now() - started) / 1000,
    hung,
    ...counts(job.kind, text),
  };
}

/** The passed, failed and ignored tests a job's output reports. */
function counts(kind: Job["kind"], text: string) {
  if (kind === "deno") {
    const match = text.match(
      /^(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed(?: \| (\d+) ignored)?/m,
    );
    if (match) {
      return {
        passed: Number(match[1]),
        failed: Number(match[2]),
        ignored: Number(match[3] ?? 0),
      };
    }
  } else if (kind === "node") {
    const tap = (key: string) =>
      Number(text.match(new RegExp(`^# ${key} (\\d+)$`, "m"))?.[1] ?? 0);
    return {
      passed: tap("pass"),
      failed: tap("fail") + tap("cancelled"),
      ignored: tap("skipped") + tap("todo"),
    };
  }
  return { passed: 0, failed: 0, ignored: 0 };
}

/**
 * The first failing test in `text`, a log of `deno test` (its ERRORS
 * section) or of `node --test --test-reporter=tap` (the first `not ok` with
 * its YAML block and the output before it), or `null`.
 */
export function firstFailure(text: string): string | null {
  const lines = text.split("\n");
  // deno test: " FAILURES " lists "name => ./file:line:col" per failed
  // test; " ERRORS " holds each one's error, from that line to the next.
  const failures = lines.lastIndexOf(" FAILURES ");
  const errors = lines.lastIndexOf(" ERRORS ", failures);
  if (failures > 0 && errors >= 0) {
    const headers = new Set(
      lines.slice(failures + 1).filter((line) => line.includes(" => ")),
    );
    const start = lines.findIndex((line, i) =>
      i > errors && i < failures && headers.has(line)
    );
    if (start >= 0) {
      let end = start + 1;
      while (end < failures && !headers.has(lines[end])) end++;
      const head = lines[start];
      const name = head.slice(0, head.lastIndexOf(" => "));
      return [
        ...testOutput(lines, name),
        ...lines.slice(start, end),
      ].join("\n").trimEnd();
    }
  }
  // node --test, TAP: the first "not ok" whose block is a failure of its
  // own (a suite whose subtest failed says 'subtestsFailed'; its subtest,
  // printed before it, is the one to show).
  for (let i = 0; i < lines.length; i++) {
    const match = lines[i].match(/^(\s*)not ok \d+ - /);
    if (!match) continue;
    const indent = match[1].length;
    let end = i + 1;
    while (
      end < lines.length &&
      (lines[end].trim() === "" ||
        lines[end].length - lines[end].trimStart().length > indent) &&
      lines[end].trim() !== "..."
    ) end++;
    const block = lines.slice(i, end + 1);
    if (block.some((line) => line.includes("failureType: 'subtestsFailed'"))) {
      continue;
    }
    // The comments (console output) and "# Subtest" line just before it.
    let begin = i;
    while (begin > 0 && lines[begin - 1].trimStart().startsWith("#")) begin--;
    return [...lines.slice(begin, i), ...block].join("\n").trimEnd();
  }
  return null;
}

/** The lines `deno test` captured from test `name`, where it printed any. */
function testOutput(lines: string[], name: string): string[] {
  const at = lines.findIndex((line) => line === `${name} ...`);
  if (at < 0 || lines[at + 1] !== "------- output -------") return [];
  const end = lines.indexOf("----- output end -----", at);
  return end < 0 ? [] : lines.slice(at, end + 1);
}

/** A failed job's block: its first failing test, or its output's end. */
function failureBlock(outcome: Outcome): string {
  const found = outcome.hung ? null : firstFailure(outcome.text);
  const body = found ??
    outcome.text.trimEnd().split("\n").slice(-80).join("\n");
  return [
    rule(`${FAILURE_START}: ${outcome.job.name} (exit ${outcome.code})`),
    body,
    rule(FAILURE_END),
  ].join("\n");
}

/** Test files under `dir` as deno test finds them, relative to the root. */
function testFiles(dir: string, pattern: RegExp, skip: string[]): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    for (const entry of Deno.readDirSync(`${root}${path}`)) {
      const child = `${path}/${entry.name}`;
      if (skip.includes(child)) continue;
      if (entry.isDirectory) walk(child);
      else if (pattern.test(entry.name)) found.push(child);
    }
  };
  walk(dir);
  return found;
}

/**
 * The order to start jobs in: the slow kinds (PostgreSQL, processes, the
 * CLI's processes, Node) taken in turn, so that their clusters and process
 * swarms do not all run at once, each kind's biggest files first; then the
 * rest, biggest first.
 */
export function schedule(jobs: Job[]): Job[] {
  const size = (job: Job) => {
    try {
      return Deno.statSync(`${root}${job.name.replace(/ \(.*\)$/, "")}`).size;
    } catch {
      return 0; // the documentation's examples
    }
  };
  const kinds = [
    "tests/postgres/",
    "tests/multiprocess/",
    "tests/cli/",
    "tests/node/",
    "",
  ];
  const groups = kinds.map((prefix) =>
    jobs.filter((job) =>
      kinds.find((kind) => job.name.startsWith(kind)) === prefix
    ).sort((a, b) => size(b) - size(a))
  );
  const slow = groups.slice(0, -1);
  const ordered: Job[] = [];
  while (slow.some((group) => group.length > 0)) {
    for (const group of slow) {
      const job = group.shift();
      if (job) ordered.push(job);
    }
  }
  return [...ordered, ...groups.at(-1)!];
}

async function pool(
  jobs: Job[],
  width: number,
  done: (outcome: Outcome) => void,
  running: Map<Job, Running>,
): Promise<void> {
  const queue = [...jobs];
  const lane = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      done(await run(job, running));
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
}

async function main(): Promise<number> {
  const width = Number(Deno.env.get("LOCKBOX_TEST_JOBS") ?? 4);
  if (!Number.isInteger(width) || width < 1) {
    throw new RangeError(
      `LOCKBOX_TEST_JOBS must be a whole number of jobs, at least 1, not '${
        Deno.env.get("LOCKBOX_TEST_JOBS")
      }'`,
    );
  }
  const started = performance.now();
  const running = new Map<Job, Running>();
  const outcomes: Outcome[] = [];
  let first: string | null = null;
  const report = (outcome: Outcome) => {
    outcomes.push(outcome);
    const ok = outcome.code === 0 && !outcome.hung;
    const tally = outcome.job.kind === "build"
      ? ""
      : `, ${outcome.passed} passed, ${outcome.failed} failed`;
    console.log(rule(
      `${outcome.job.name}: ${ok ? "ok" : "FAILED"} in ${
        outcome.seconds.toFixed(0)
      } s${tally}`,
    ));
    console.log(outcome.text.trimEnd());
    if (!ok && first === null) first = failureBlock(outcome);
  };
  // A stop from outside (CI's timeout): say what was still running.
  const stop = () => {
    for (const [job, { chunks, pid }] of running) {
      killGroup(pid, "SIGKILL");
      console.log(rule(`${job.name}: still running when stopped`));
      console.log(chunks.join("").trimEnd());
    }
    Deno.exit(143);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);

  const task = (name: string, ...args: string[]): Job => ({
    name,
    kind: "build",
    command: deno,
    args: ["task", "--quiet", name.split(" ")[2], ...args],
  });
  await pool(
    [
      task("deno task build:npm --install", "--install"),
      task("deno task build:node-sources --install", "--install"),
      task("deno task check"),
    ],
    3,
    report,
    running,
  );

  if (first === null) {
    const denoFlags = [
      "test",
      "--allow-all",
      "--no-check",
      "--sanitize-ops",
      "--sanitize-resources",
    ];
    const jobs: Job[] = [
      ...testFiles(
        "tests",
        /^(.*[_.])?test\.(ts|tsx|mts|js|mjs|jsx)$/,
        ["tests/node"],
      ).map((file): Job => ({
        name: file,
        kind: "deno",
        command: deno,
        args: [...denoFlags, file],
      })),
      {
        name: "the API documentation's examples (deno test --doc mod.ts src/)",
        kind: "deno",
        command: deno,
        args: [...denoFlags, "--doc", "mod.ts", "src/"],
      },
    ];
    for (const build of ["dist/npm", "dist/node-src"]) {
      for (const file of testFiles("tests/node", /\.test\.mjs$/, [])) {
        jobs.push({
          name: `${file} (${build})`,
          kind: "node",
          command: "node",
          // A test file is a test too, under the same timeout: long
          // enough for a whole file on a loaded machine.
          args: [
            "--test",
            "--test-reporter=tap",
            "--test-timeout=600000",
            file,
          ],
          env: { LOCKBOX_NODE_PACKAGE: build },
        });
      }
    }
    await pool(schedule(jobs), width, report, running);
  }

  const sum = (kind: Job["kind"], key: "passed" | "failed" | "ignored") =>
    outcomes.filter((o) => o.job.kind === kind).reduce((n, o) => n + o[key], 0);
  const [dp, df, np, nf] = [
    sum("deno", "passed"),
    sum("deno", "failed"),
    sum("node", "passed"),
    sum("node", "failed"),
  ];
  const ignored = sum("deno", "ignored") + sum("node", "ignored");
  const failedJobs = outcomes.filter((o) => o.code !== 0 || o.hung);
  console.log(
    `tests: ${dp + np} passed, ${
      df + nf
    } failed (deno ${dp}/${df}, node ${np}/${nf}), ${ignored} ignored or skipped; ${outcomes.length} jobs, ${failedJobs.length} failed, ${width} at a time, ${
      ((performance.now() - started) / 1000).toFixed(0)
    } s`,
  );
  for (const outcome of failedJobs) {
    console.log(`failed: ${outcome.job.name} (exit ${outcome.code})`);
  }
  if (first !== null) {
    console.log(first);
    const file = Deno.env.get("LOCKBOX_TEST_FAILURE_FILE");
    if (file) await Deno.writeTextFile(file, `${first}\n`);
  }
  return failedJobs.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  if (Deno.args[0] === "--first-failure") {
    const found = firstFailure(await Deno.readTextFile(Deno.args[1]));
    if (found !== null) console.log(found);
    Deno.exit(found === null ? 1 : 0);
  }
  Deno.exit(await main());
}
