// The crash checker's model: from the mutations a workload recorded, the
// on-disk states a power loss could leave at every point, materialized in
// fresh directories and judged by a fresh process.
//
// The model (strict POSIX, as ALICE's):
// - A file's content is durable up to its last fsync (or fdatasync). Its
//   later writes and truncates may be lost from any point on, and the first
//   lost write may be kept in part: its first half of 4 KiB blocks, or its
//   length with zeros for data.
// - A create, rename, link, unlink or mkdir is durable only once its
//   directory is fsynced; later ones may be lost from any point on, in
//   order (a rename is one step: never half done).
// - Lock files, which lockbox never relies on after a crash, are whatever
//   the recorded operations made of them (empty when never written).
//
// States per crash point are bounded: everything durable only; everything
// the process saw; for each directory and each file with pending changes,
// each cut of its pending list (with the others all kept, and all lost);
// the torn variants of each file's first lost write; then seeded random
// combinations, up to `maxStates` distinct states per point.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { seededRandom } from "../_helpers.ts";
import { WORKLOADS } from "./_workloads.ts";

type DataOp = { write: Uint8Array } | { truncate: number };
type Entry = number | "dir" | null; // inode, directory, or removed
interface Effect {
  seq: number;
  changes: [string, Entry][];
}

interface Point {
  /** Operations recorded before this point. */
  at: number;
  acked: number;
  inodes: Map<number, { length: number; synced: number }>;
  dirs: Map<string, { length: number; synced: number }>;
}

interface Model {
  root: string;
  inodeOps: Map<number, DataOp[]>;
  dirEffects: Map<string, Effect[]>;
  points: Point[];
}

/** What exploring one workload found. */
export interface Exploration {
  workload: string;
  points: number;
  states: number;
  violations: { point: number; acked: number; problem: string }[];
}

const HERE = new URL("./", import.meta.url);
const ROOT = new URL("../../", import.meta.url);

function decode64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Replays the log into the model, noting every crash point. */
function buildModel(root: string, lines: Record<string, unknown>[]): Model {
  const inodeOps = new Map<number, DataOp[]>();
  const inodeSynced = new Map<number, number>();
  const dirEffects = new Map<string, Effect[]>();
  const dirSynced = new Map<string, number>();
  const live = new Map<string, Entry>([[root, "dir"]]);
  const handles = new Map<number, number>();
  let nextInode = 1;
  let acked = 0;
  const points: Point[] = [];
  const snapshot = (at: number) => {
    points.push({
      at,
      acked,
      inodes: new Map(
        [...inodeOps].map(([id, ops]) => [id, {
          length: ops.length,
          synced: inodeSynced.get(id) ?? 0,
        }]),
      ),
      dirs: new Map(
        [...dirEffects].map(([dir, effects]) => [dir, {
          length: effects.length,
          synced: dirSynced.get(dir) ?? 0,
        }]),
      ),
    });
  };
  const newInode = () => {
    const id = nextInode++;
    inodeOps.set(id, []);
    return id;
  };
  const effect = (dir: string, changes: [string, Entry][]) => {
    if (!dirEffects.has(dir)) dirEffects.set(dir, []);
    dirEffects.get(dir)!.push({
      seq: dirEffects.size * 0 + seqCounter++,
      changes,
    });
    for (const [path, entry] of changes) {
      if (entry === null) live.delete(path);
      else live.set(path, entry);
    }
  };
  let seqCounter = 0;
  const inodeAt = (path: string): number => {
    const entry = live.get(path);
    if (typeof entry === "number") return entry;
    // A file lockbox made without recording it (a lock file).
    const id = newInode();
    live.set(path, id);
    return id;
  };
  snapshot(0);
  for (const [index, line] of lines.entries()) {
    const path = line.path as string;
    switch (line.op) {
      case "create":
        effect(dirname(path), [[path, newInode()]]);
        break;
      case "mkdir":
        effect(dirname(path), [[path, "dir"]]);
        break;
      case "handle":
        handles.set(line.id as number, inodeAt(path));
        break;
      case "write":
        inodeOps.get(handles.get(line.id as number)!)!.push({
          write: decode64(line.data as string),
        });
        break;
      case "truncate":
        inodeOps.get(handles.get(line.id as number)!)!.push({
          truncate: line.size as number,
        });
        break;
      case "fsync": {
        const inode = handles.get(line.id as number)!;
        inodeSynced.set(inode, inodeOps.get(inode)!.length);
        break;
      }
      case "rename": {
        const from = line.from as string;
        const to = line.to as string;
        const entry = live.get(from) ?? inodeAt(from);
        effect(dirname(to), [[to, entry], [from, null]]);
        break;
      }
      case "link": {
        const to = line.to as string;
        effect(dirname(to), [[to, inodeAt(line.from as string)]]);
        break;
      }
      case "unlink":
        effect(dirname(path), [[path, null]]);
        break;
      case "fsyncDir":
        dirSynced.set(path, dirEffects.get(path)?.length ?? 0);
        break;
      case "mark":
        if (line.label === "ack") acked = line.value as number;
        break;
    }
    snapshot(index + 1);
  }
  return { root, inodeOps, dirEffects, points };
}

/** One crash state: how many pending steps each dir and file keeps. */
interface Choice {
  dirs: Map<string, number>;
  inodes: Map<number, number>;
  /** A file whose first lost write is kept in part: "half" or "zeros". */
  torn?: [number, "half" | "zeros"];
}

function key(choice: Choice): string {
  return JSON.stringify([
    [...choice.dirs].sort(),
    [...choice.inodes].sort((a, b) => a[0] - b[0]),
    choice.torn ?? null,
  ]);
}

function choicesAt(point: Point, model: Model, maxStates: number): Choice[] {
  const pendingDirs = [...point.dirs].filter(([, d]) => d.length > d.synced);
  const pendingFiles = [...point.inodes].filter(([, f]) => f.length > f.synced);
  const all = (keep: "min" | "max"): Choice => ({
    dirs: new Map(
      [...point.dirs].map((
        [dir, d],
      ) => [dir, keep === "min" ? d.synced : d.length]),
    ),
    inodes: new Map(
      [...point.inodes].map((
        [id, f],
      ) => [id, keep === "min" ? f.synced : f.length]),
    ),
  });
  const out = new Map<string, Choice>();
  const add = (choice: Choice) => {
    if (out.size < maxStates) out.set(key(choice), choice);
  };
  add(all("min"));
  add(all("max"));
  for (const base of ["max", "min"] as const) {
    for (const [dir, d] of pendingDirs) {
      for (let j = d.synced; j <= d.length; j++) {
        const choice = all(base);
        choice.dirs.set(dir, j);
        add(choice);
      }
    }
    for (const [id, f] of pendingFiles) {
      for (let k = f.synced; k <= f.length; k++) {
        const choice = all(base);
        choice.inodes.set(id, k);
        add(choice);
        const next = model.inodeOps.get(id)![k];
        if (k < f.length && next && "write" in next) {
          for (const how of ["half", "zeros"] as const) {
            add({ ...all(base), inodes: choice.inodes, torn: [id, how] });
          }
        }
      }
    }
  }
  // Seeded, so that every run explores the same states.
  const next = seededRandom(point.at + 1);
  for (let tries = 0; out.size < maxStates && tries < maxStates * 4; tries++) {
    const choice = all("max");
    for (const [dir, d] of pendingDirs) {
      choice.dirs.set(
        dir,
        d.synced + Math.floor(next() * (d.length - d.synced + 1)),
      );
    }
    for (const [id, f] of pendingFiles) {
      choice.inodes.set(
        id,
        f.synced + Math.floor(next() * (f.length - f.synced + 1)),
      );
    }
    add(choice);
  }
  return [...out.values()];
}

function content(
  ops: DataOp[],
  keep: number,
  torn?: "half" | "zeros",
): Uint8Array {
  let bytes = new Uint8Array(0);
  const apply = (op: DataOp) => {
    if ("truncate" in op) {
      bytes = bytes.slice(0, op.truncate);
      if (bytes.length < op.truncate) {
        const grown = new Uint8Array(op.truncate);
        grown.set(bytes);
        bytes = grown;
      }
    } else {
      const grown = new Uint8Array(bytes.length + op.write.length);
      grown.set(bytes);
      grown.set(op.write, bytes.length);
      bytes = grown;
    }
  };
  for (const op of ops.slice(0, keep)) apply(op);
  const next = ops[keep];
  if (torn && next && "write" in next) {
    if (torn === "zeros") apply({ write: new Uint8Array(next.write.length) });
    else {
      const blocks = Math.ceil(next.write.length / 4096);
      if (blocks >= 2) {
        apply({ write: next.write.subarray(0, Math.ceil(blocks / 2) * 4096) });
      }
    }
  }
  return bytes;
}

/** Writes the state a choice describes under `into` (the workload's root). */
async function materialize(
  model: Model,
  choice: Choice,
  into: string,
): Promise<void> {
  const kept: Effect[] = [];
  for (const [dir, j] of choice.dirs) {
    kept.push(...model.dirEffects.get(dir)!.slice(0, j));
  }
  kept.sort((a, b) => a.seq - b.seq);
  const names = new Map<string, Entry>([[model.root, "dir"]]);
  for (const { changes } of kept) {
    for (const [path, entry] of changes) {
      if (entry === null) names.delete(path);
      else names.set(path, entry);
    }
  }
  await Deno.mkdir(into, { recursive: true });
  const paths = [...names.keys()].filter((p) => p !== model.root).sort((a, b) =>
    a.length - b.length
  );
  for (const path of paths) {
    // An entry in a directory that itself did not survive is gone too.
    let parent = dirname(path);
    let reachable = true;
    while (parent.length >= model.root.length && parent !== model.root) {
      if (names.get(parent) !== "dir") reachable = false;
      parent = dirname(parent);
    }
    if (!reachable) continue;
    const target = into + path.slice(model.root.length);
    const entry = names.get(path)!;
    if (entry === "dir") await Deno.mkdir(target, { recursive: true });
    else {
      const torn = choice.torn?.[0] === entry ? choice.torn[1] : undefined;
      await Deno.writeFile(
        target,
        content(
          model.inodeOps.get(entry as number)!,
          choice.inodes.get(entry as number) ?? 0,
          torn,
        ),
      );
    }
  }
}

/** Runs `workload` under the recorder and judges every state it explores. */
export async function explore(
  workload: string,
  options: { maxStates: number; maxPoints?: number; breakMode?: string },
): Promise<Exploration> {
  const tmp = await Deno.makeTempDir({ prefix: "lockbox_crash_" });
  try {
    const work = join(tmp, "work");
    await Deno.mkdir(work);
    const log = join(tmp, "log.jsonl");
    // The real deno.json's imports, plus the recording runtime in place of
    // the runtime layer.
    const config = JSON.parse(
      await Deno.readTextFile(new URL("deno.json", ROOT)),
    );
    const configFile = join(tmp, "deno.json");
    await Deno.writeTextFile(
      configFile,
      JSON.stringify({
        imports: {
          ...config.imports,
          [new URL("src/runtime/mod.ts", ROOT).href]:
            new URL("_recording_runtime.ts", HERE).href,
        },
      }),
    );
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--quiet",
        "--no-lock",
        `--config=${configFile}`,
        fileURLToPath(new URL("_run_workload.ts", HERE)),
        workload,
        work,
      ],
      env: {
        LOCKBOX_CRASH_LOG: log,
        LOCKBOX_CRASH_BREAK: options.breakMode ?? "",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!run.success) {
      throw new Error(
        `workload ${workload} failed: ${new TextDecoder().decode(run.stderr)}`,
      );
    }
    const lines = (await Deno.readTextFile(log)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    const model = buildModel(work, lines);
    let points = model.points;
    if (options.maxPoints && points.length > options.maxPoints) {
      // Evenly spread, always with the first and the last.
      const step = (points.length - 1) / (options.maxPoints - 1);
      points = Array.from(
        { length: options.maxPoints },
        (_, i) => model.points[Math.round(i * step)],
      );
    }
    const states: { dir: string; acked: number; point: number }[] = [];
    for (const point of points) {
      for (const choice of choicesAt(point, model, options.maxStates)) {
        const dir = join(tmp, `state-${states.length}`);
        await materialize(model, choice, dir);
        states.push({ dir, acked: point.acked, point: point.at });
      }
    }
    const list = join(tmp, "states.json");
    await Deno.writeTextFile(list, JSON.stringify(states));
    const check = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--quiet",
        fileURLToPath(new URL("_check_states.ts", HERE)),
        workload,
        list,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!check.success) {
      throw new Error(
        `checking ${workload} failed: ${
          new TextDecoder().decode(check.stderr)
        }`,
      );
    }
    const byDir = new Map(states.map((s) => [s.dir, s]));
    const violations: Exploration["violations"] = [];
    for (
      const line of new TextDecoder().decode(check.stdout).trim().split("\n")
    ) {
      const { dir, problem } = JSON.parse(line);
      if (problem) {
        const state = byDir.get(dir)!;
        violations.push({ point: state.point, acked: state.acked, problem });
      }
    }
    return {
      workload,
      points: points.length,
      states: states.length,
      violations,
    };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The workloads, by name. */
export const WORKLOAD_NAMES = Object.keys(WORKLOADS);
