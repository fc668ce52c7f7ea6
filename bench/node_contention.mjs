// `deno task bench:node` (or `node bench/node_contention.mjs` after
// `deno task build:npm --install`): 8 processes x 30 iterations of a durable
// JsonStore.update plus a withLock increment, with default options, on one
// store and one counter: lockbox on Node, proper-lockfile + write-file-atomic
// on Node doing the same work, and lockbox on Deno, in the same run, in
// rounds that alternate the order. Every process starts its iterations when
// all 8 have started and loaded their modules; updates/s = 240 / (last
// iteration's end - first one's start), so each runtime's start-up is left
// out (what a first lock loads is not); the figure per
// subject is the median of the rounds. proper-lockfile and write-file-atomic
// are installed by npm into dist/bench-node/ on first use.
// Usage: node bench/node_contention.mjs [ROUNDS] [ITERATIONS]
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";

const PROCESSES = 8;
const ITERATIONS = Number(process.argv[3] ?? 30);
const rounds = Number(process.argv[2] ?? 5);
const root = new URL("../", import.meta.url);
const worker = fileURLToPath(
  new URL("_contention_worker.mjs", import.meta.url),
);

if (!existsSync(new URL("dist/npm/node_modules/koffi", root))) {
  throw new Error("No npm build: run `deno task build:npm --install` first");
}
const deps = fileURLToPath(new URL("dist/bench-node/", root));
if (!existsSync(`${deps}node_modules/write-file-atomic`)) {
  mkdirSync(deps, { recursive: true });
  writeFileSync(`${deps}package.json`, '{"private":true}\n');
  const out = spawnSync("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    "proper-lockfile@4.1.2",
    "write-file-atomic@7.0.1",
  ], { cwd: deps, stdio: "inherit" });
  if (out.status !== 0) throw new Error("npm install failed");
}
const deno = spawnSync("deno", ["--version"]).status === 0 ? "deno" : null;

const subjects = {
  "lockbox on Node": [process.execPath, worker, "lockbox"],
  "proper-lockfile + write-file-atomic on Node": [
    process.execPath,
    worker,
    "proper-lockfile",
  ],
  ...(deno
    ? { "lockbox on Deno": [deno, "run", "-A", worker, "lockbox"] }
    : {}),
};

/** One race: the subject's processes at once; updates per second. */
async function race(argv, dir) {
  const store = `${dir}/store.json`;
  const counter = `${dir}/counter`;
  writeFileSync(store, '{"n":0}');
  writeFileSync(counter, "0");
  let ready = 0;
  let go;
  const allReady = new Promise((resolve) => go = resolve);
  const children = [];
  const outputs = Promise.all(
    Array.from({ length: PROCESSES }, () =>
      new Promise((resolve, reject) => {
        const child = spawn(argv[0], [
          ...argv.slice(1),
          store,
          counter,
          String(ITERATIONS),
        ], {
          stdio: ["pipe", "pipe", "inherit"],
        });
        children.push(child);
        let text = "";
        child.stdout.setEncoding("utf8").on("data", (chunk) => {
          if (!text.includes("ready") && (text + chunk).includes("ready")) {
            if (++ready === PROCESSES) go();
          }
          text += chunk;
        });
        child.on("close", (code) =>
          code === 0
            ? resolve(text)
            : reject(new Error(`${argv.join(" ")} exited ${code}`)));
      })),
  );
  // The iterations start together, once every process has started.
  await Promise.race([allReady, outputs]);
  for (const child of children) child.stdin.end("go\n");
  await outputs;
  const total = PROCESSES * ITERATIONS;
  const n = JSON.parse(readFileSync(store, "utf8")).n;
  const counted = Number(readFileSync(counter, "utf8"));
  if (n !== total || counted !== total) {
    throw new Error(
      `${
        argv.join(" ")
      }: lost updates (store ${n}, counter ${counted}, expected ${total})`,
    );
  }
  const times = (await outputs).map((text) =>
    /times (\d+) (\d+)/.exec(text).slice(1).map(Number)
  );
  const ms = Math.max(...times.map((t) => t[1])) -
    Math.min(...times.map((t) => t[0]));
  return total / (ms / 1000);
}

const figures = Object.fromEntries(
  Object.keys(subjects).map((name) => [name, []]),
);
const names = Object.keys(subjects);
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? names : [...names].reverse();
  for (const name of order) {
    const dir = mkdtempSync(`${tmpdir()}/lockbox_contention_`);
    try {
      figures[name].push(await race(subjects[name], dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
const median = (list) =>
  [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
const base = median(figures["proper-lockfile + write-file-atomic on Node"]);
const onDeno = figures["lockbox on Deno"]
  ? median(figures["lockbox on Deno"])
  : null;
console.log(
  `${PROCESSES} processes x ${ITERATIONS} iterations (durable update + withLock increment), median of ${rounds} rounds, Node ${process.version}`,
);
console.log(
  "| subject | updates/s | vs proper-lockfile | vs lockbox on Deno |",
);
console.log("| --- | ---: | ---: | ---: |");
for (const name of names) {
  const m = median(figures[name]);
  console.log(
    `| ${name} | ${m.toFixed(0)} | ${(m / base).toFixed(2)}x | ${
      onDeno ? (m / onDeno).toFixed(2) + "x" : "-"
    } |`,
  );
}
console.log(
  `rounds: ${
    JSON.stringify(Object.fromEntries(names.map((n) => [
      n,
      figures[n].map((f) => Math.round(f)),
    ])))
  }`,
);
