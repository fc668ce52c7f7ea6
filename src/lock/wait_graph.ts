// Who waits for whom: the wait-for graph of flock(2) locks from /proc/locks,
// its cycles, and the deadlock a wait is part of, with its victim (the
// watch that looks during a wait is _deadlock_watch.ts). See
// ARCHITECTURE.md, "Deadlocks".

import {
  _openFilesOf,
  _parentPid,
  _pid,
  _readCommandLine,
  _readProcLocks,
} from "../runtime/mod.ts";
import { _devKey } from "./kernel.ts";
import { _readHolderRecord } from "./_holder_record.ts";
import type { DeadlockStep } from "../base/errors.ts";

/** One flock entry of /proc/locks: a holder, or a waiter (`->`). */
export interface _FlockEntry {
  pid: number;
  exclusive: boolean;
}

/** The flocks of /proc/locks by file (`"maj:min:ino"`). */
export interface _FlockTable {
  holders: Map<string, _FlockEntry[]>;
  waiters: Map<string, _FlockEntry[]>;
}

/** Parses the flock lines of /proc/locks, waiters (`->`) apart. */
export function _parseFlocks(text: string): _FlockTable {
  const table: _FlockTable = { holders: new Map(), waiters: new Map() };
  for (const line of text.split("\n")) {
    // "9: FLOCK ADVISORY WRITE 2127 fe:00:2146430 0 EOF", and each request
    // blocked on it as "9: -> FLOCK ...", nested deeper with more spaces.
    const fields = line.trim().split(/\s+/);
    const waiting = fields[1] === "->";
    const at = waiting ? 2 : 1;
    if (fields[at] !== "FLOCK" || fields.length < at + 5) continue;
    const pid = Number(fields[at + 3]);
    const id = fields[at + 4];
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const byId = waiting ? table.waiters : table.holders;
    let list = byId.get(id);
    if (!list) byId.set(id, list = []);
    if (!list.some((entry) => entry.pid === pid)) {
      list.push({ pid, exclusive: fields[at + 2] === "WRITE" });
    }
  }
  return table;
}

/** The key of a file in /proc/locks. */
export function _fileKey(stat: { dev: number; ino: number }): string {
  return `${_devKey(stat.dev)}:${stat.ino}`;
}

/** One edge of the wait-for graph: `waiter` waits for a lock `holder` has. */
export interface _WaitEdge {
  /** The waiting process (a helper that waits for it mapped to it). */
  waiter: number;
  /** The pid the kernel lists as waiting (`waiter`'s helper, or itself). */
  via: number;
  /** The lock file (`"maj:min:ino"`). */
  file: string;
  exclusive: boolean;
  holder: number;
}

/** The wait-for graph between processes, read once. */
export interface _WaitGraph {
  table: _FlockTable;
  edges: _WaitEdge[];
  /** Strongly connected sets of two or more processes: the deadlocks. */
  cycles: number[][];
  /** The process each waiting pid waits for (see `_waiterProcess`). */
  processOf: Map<number, number>;
}

// A lockbox Node process waits in `sh -c 'exec 4<&0; flock -x 3 ...'`.
const _NODE_HELPER = /^flock -[sx] 3$/;
const _NODE_HELPER_SHELL = /^sh -c exec 4<&0; flock /;

/**
 * The process a waiter waits for: itself if it holds a lock; a lockbox Node
 * process for its `flock(1)` helper; else the nearest ancestor that holds a
 * lock on a file the waiter has open (a command running under its parent's
 * lock, as `flock a.lock cmd` passes it on); else itself.
 */
function _waiterProcess(
  pid: number,
  holding: Map<number, Set<string>>,
): number {
  if (holding.has(pid)) return pid;
  const parent = _parentPid(pid);
  if (parent === null) return pid;
  if (_NODE_HELPER.test(_readCommandLine(pid) ?? "")) {
    const shell = _readCommandLine(parent) ?? "";
    const node = _parentPid(parent);
    if (_NODE_HELPER_SHELL.test(shell) && node !== null) return node;
  }
  let open: Set<string> | null = null;
  for (let up = parent, depth = 0; depth < 4 && up > 1; depth++) {
    const held = holding.get(up);
    if (held) {
      open ??= new Set((_openFilesOf(pid) ?? []).map(_fileKey));
      for (const file of held) if (open.has(file)) return up;
    }
    const next = _parentPid(up);
    if (next === null) break;
    up = next;
  }
  return pid;
}

/** Whether an ancestor of this process (four levels up) holds a flock. */
export function _underHeldLock(table: _FlockTable): boolean {
  const holders = new Set<number>();
  for (const entries of table.holders.values()) {
    for (const { pid } of entries) holders.add(pid);
  }
  let up = _parentPid(_pid());
  for (let depth = 0; depth < 4 && up !== null && up > 1; depth++) {
    if (holders.has(up)) return true;
    up = _parentPid(up);
  }
  return false;
}

/** Builds the graph from a table. */
export function _graphOf(table: _FlockTable): _WaitGraph {
  const holding = new Map<number, Set<string>>();
  for (const [file, holders] of table.holders) {
    for (const { pid } of holders) {
      let files = holding.get(pid);
      if (!files) holding.set(pid, files = new Set());
      files.add(file);
    }
  }
  const mapped = new Map<number, number>();
  const edges: _WaitEdge[] = [];
  for (const [file, waiters] of table.waiters) {
    for (const { pid, exclusive } of waiters) {
      let waiter = mapped.get(pid);
      if (waiter === undefined) {
        mapped.set(pid, waiter = _waiterProcess(pid, holding));
      }
      for (const { pid: holder } of table.holders.get(file) ?? []) {
        if (holder !== waiter) {
          edges.push({ waiter, via: pid, file, exclusive, holder });
        }
      }
    }
  }
  return {
    table,
    edges,
    cycles: _stronglyConnected(edges).map((set) => set.sort((a, b) => a - b))
      .sort((a, b) => a[0] - b[0]),
    processOf: mapped,
  };
}

/**
 * Reads the graph from /proc/locks (or from `text`, a copy of it already
 * read); `null` where there is none.
 */
export function _readWaitGraph(
  text: string | null = _readProcLocks(),
): _WaitGraph | null {
  return text === null ? null : _graphOf(_parseFlocks(text));
}

/**
 * Tarjan's algorithm: the sets of two or more processes that wait for each
 * other in a cycle, from edges waiter -> holder.
 */
export function _stronglyConnected<K>(
  edges: { waiter: K; holder: K }[],
): K[][] {
  const next = new Map<K, K[]>();
  for (const { waiter, holder } of edges) {
    const list = next.get(waiter) ?? [];
    if (!list.includes(holder)) list.push(holder);
    next.set(waiter, list);
  }
  const index = new Map<K, number>();
  const low = new Map<K, number>();
  const stack: K[] = [];
  const onStack = new Set<K>();
  const sets: K[][] = [];
  let counter = 0;
  const visit = (v: K) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const set: K[] = [];
      let w: K;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        set.push(w);
      } while (w !== v);
      if (set.length > 1) sets.push(set);
    }
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return sets;
}

/**
 * The path of each file in `files`: from `known` (`"maj:min:ino"` to
 * path), else from the open files of the processes that lock it.
 */
export function _pathsOf(
  graph: _WaitGraph,
  files: Iterable<string>,
  known: Map<string, string> = new Map(),
): Map<string, string> {
  const paths = new Map<string, string>();
  const looked = new Set<number>();
  for (const file of files) {
    if (paths.has(file)) continue;
    const path = known.get(file);
    if (path !== undefined) {
      paths.set(file, path);
      continue;
    }
    const pids = [
      ...graph.table.holders.get(file) ?? [],
      ...graph.table.waiters.get(file) ?? [],
    ].map((entry) => entry.pid);
    for (const pid of pids) {
      if (paths.has(file)) break;
      if (looked.has(pid)) continue;
      looked.add(pid);
      for (const open of _openFilesOf(pid) ?? []) {
        const key = _fileKey(open);
        if (!paths.has(key)) paths.set(key, open.path);
      }
    }
  }
  return paths;
}

/** What a wait's deadlock check found. */
export interface _Deadlock {
  /**
   * The checking process as the graph knows it: itself, or the holder it
   * runs under (a command of `lockbox run a.lock`, waiting for another lock).
   */
  self: number;
  /** The process that gives up its wait: one of the cycle's lockbox processes. */
  victim: number;
  /** From the checking process round to it again. */
  cycle: DeadlockStep[];
  /** The cycle's edges, to tell whether a second look sees the same one. */
  key: string;
}

/**
 * Whether process `self`, waiting for the lock on `file`, is in a deadlock:
 * a cycle of waits through that wait. The victim is the same whichever
 * process of the cycle checks: the highest pid among the cycle's lockbox
 * processes (those that hold a lock of the cycle with a lockbox record
 * naming them, and `self`), never a process that is not lockbox's.
 */
export function _findDeadlock(
  graph: _WaitGraph,
  pid: number,
  file: string,
  known: Map<string, string>,
): _Deadlock | null {
  const self = graph.processOf.get(pid) ?? pid;
  const set = graph.cycles.find((members) => members.includes(self));
  if (!set) return null;
  const inSet = new Set(set);
  const edges = graph.edges.filter((edge) =>
    inSet.has(edge.waiter) && inSet.has(edge.holder)
  );
  const first = edges.find((edge) =>
    edge.waiter === self && edge.file === file
  );
  if (!first) return null;
  // The shortest way back from the holder to this process.
  const from = new Map<number, _WaitEdge>();
  const queue = [first.holder];
  from.set(first.holder, first);
  while (queue.length > 0 && !from.has(self)) {
    const at = queue.shift()!;
    for (const edge of edges) {
      if (edge.waiter === at && !from.has(edge.holder)) {
        from.set(edge.holder, edge);
        queue.push(edge.holder);
      }
    }
  }
  const route: _WaitEdge[] = [];
  for (let at = self; route.length <= set.length;) {
    const edge = from.get(at);
    if (!edge) return null;
    route.unshift(edge);
    at = edge.waiter;
    if (at === self) break;
  }
  const paths = _pathsOf(graph, edges.map((edge) => edge.file), known);
  const lockbox = set.filter((pid) =>
    pid === self ||
    edges.some((edge) => {
      if (edge.holder !== pid) return false;
      const path = paths.get(edge.file);
      if (path === undefined) return false;
      try {
        return _readHolderRecord(path)?.pid === pid;
      } catch {
        return false;
      }
    })
  );
  return {
    self,
    victim: Math.max(...lockbox),
    cycle: route.map((edge) => ({
      pid: edge.waiter,
      lock: paths.get(edge.file) ?? edge.file,
    })),
    key: edges.map((edge) => `${edge.waiter}>${edge.file}>${edge.holder}`)
      .sort().join(" "),
  };
}
