// The crash checker's workloads: what each does (run under the recording
// runtime) and what a state left by a power loss must satisfy (checked by a
// fresh process with the real runtime). Every workload is deterministic, so
// the checker knows the document after each update.

import { join } from "node:path";
import {
  appendJsonl,
  CaptureGroups,
  DocumentStore,
  JsonStore,
  readJsonl,
} from "../../mod.ts";

/** A workload: `run` writes in `dir`; `check` judges a crash state. */
export interface Workload {
  /** How many updates it makes (acknowledged one by one). */
  updates: number;
  run(dir: string, ack: (i: number) => void): Promise<void>;
  /**
   * Checks a state: returns what is wrong, or `null`. `acked` updates were
   * acknowledged before the crash point.
   */
  check(dir: string, acked: number): Promise<string | null>;
}

type Doc = { count: number; items: number[] };
const doc = (n: number): Doc => ({
  count: n,
  items: Array.from({ length: n }, (_, i) => i + 1),
});

/** The document equals the one after update k, for some k >= acked. */
function prefixCheck(
  value: Doc,
  acked: number,
  updates: number,
): string | null {
  const n = value.count;
  if (!Number.isInteger(n) || n < 0 || n > updates) {
    return `count ${n} is no state of the workload`;
  }
  if (JSON.stringify(value) !== JSON.stringify(doc(n))) {
    return `the document is not the state after ${n} updates: ${
      JSON.stringify(value).slice(0, 200)
    }`;
  }
  if (n < acked) {
    return `update ${acked} was acknowledged, but only ${n} are there`;
  }
  return null;
}

/** Runs `fn`; an error is a violation, described. */
async function opens<T>(
  what: string,
  fn: () => Promise<T>,
): Promise<{ value?: T; error?: string }> {
  try {
    return { value: await fn() };
  } catch (error) {
    return { error: `${what} failed: ${(error as Error).message}` };
  }
}

function store(dir: string, journal: boolean): JsonStore<Doc> {
  return new JsonStore<Doc>(join(dir, "state.json"), {
    initial: doc(0),
    backups: journal ? 0 : 2,
    journal,
    compactAt: journal ? 300 : undefined,
    onWarning: () => {},
  });
}

function storeWorkload(journal: boolean, updates: number): Workload {
  return {
    updates,
    async run(dir, ack) {
      const s = store(dir, journal);
      for (let i = 1; i <= updates; i++) {
        await s.update((d) => {
          d.count = i;
          d.items.push(i);
        });
        ack(i);
      }
    },
    async check(dir, acked) {
      const read = await opens("read()", () => store(dir, journal).read());
      if (read.error) return read.error;
      const problem = prefixCheck(read.value!, acked, updates);
      if (problem) return problem;
      // The store must also take the next update without repair.
      const next = await opens(
        "update()",
        () => store(dir, journal).update((d) => void d.count),
      );
      return next.error ?? null;
    },
  };
}

/**
 * `updates` journal updates started at once in one process: they take the
 * lock in turn and share fdatasyncs, and each is acknowledged when its
 * promise resolves.
 */
function burstWorkload(updates: number): Workload {
  const sequential = storeWorkload(true, updates);
  return {
    updates,
    async run(dir, ack) {
      const s = store(dir, true);
      let acked = 0;
      await Promise.all(
        Array.from({ length: updates }, () =>
          s.update((d) => {
            d.count++;
            d.items.push(d.count);
          }).then(() => ack(++acked))),
      );
    },
    check: sequential.check,
  };
}

export const WORKLOADS: Record<string, Workload> = {
  "json-store": storeWorkload(false, 6),
  // compactAt 300 bytes: a compaction about every 4 updates.
  "journal": storeWorkload(true, 12),
  "journal-burst": burstWorkload(12),
  "jsonl": {
    updates: 8,
    async run(dir, ack) {
      for (let i = 1; i <= 8; i++) {
        await appendJsonl(join(dir, "log.jsonl"), [{ i, pad: "x".repeat(40) }]);
        ack(i);
      }
    },
    async check(dir, acked) {
      const read = await opens(
        "readJsonl()",
        () => readJsonl<{ i: number }>(join(dir, "log.jsonl")),
      );
      if (read.error) return read.error;
      const { records, invalid } = read.value!;
      if (invalid.length > 0) return `${invalid.length} damaged lines`;
      for (const [at, record] of records.entries()) {
        if (record.i !== at + 1) return `line ${at + 1} is record ${record.i}`;
      }
      if (records.length < acked) {
        return `append ${acked} was acknowledged, but only ${records.length} lines are there`;
      }
      return null;
    },
  },
  "document-store": {
    updates: 5,
    async run(dir, ack) {
      const docs = new DocumentStore<Doc>(join(dir, "docs"), {
        backups: 2,
        onWarning: () => {},
      });
      for (let i = 1; i <= 5; i++) {
        await docs.save("report", doc(i), { actor: "crash" });
        ack(i);
      }
    },
    async check(dir, acked) {
      const docs = new DocumentStore<Doc>(join(dir, "docs"), {
        backups: 2,
        onWarning: () => {},
      });
      const got = await opens("get()", () => docs.get("report"));
      if (got.error) {
        if (acked === 0 && /Cannot find document/.test(got.error)) {
          return null;
        }
        return got.error;
      }
      const problem = prefixCheck(got.value!, Math.max(acked, 1), 5);
      if (problem) return problem;
      const history = await opens("history()", () => docs.history("report"));
      if (history.error) return history.error;
      const listed = await opens("list()", () => docs.list());
      if (listed.error) return listed.error;
      if (!listed.value!.includes("report")) {
        return "the document exists but list() does not name it";
      }
      const saved = await opens(
        "save()",
        () => docs.save("report", got.value!, { actor: "check" }),
      );
      return saved.error ?? null;
    },
  },
  "capture-groups": {
    updates: 6,
    async run(dir, ack) {
      const groups = new CaptureGroups(join(dir, "groups.json"));
      await groups.create("0123456789abcdef");
      for (let i = 1; i <= 6; i++) {
        await groups.addTransaction("0123456789abcdef", `txn-${i}`);
        ack(i);
      }
    },
    async check(dir, acked) {
      const groups = new CaptureGroups(join(dir, "groups.json"));
      const got = await opens("get()", () => groups.get("0123456789abcdef"));
      if (got.error) return got.error;
      if (got.value === undefined) {
        return acked === 0
          ? null
          : `the group is gone after ${acked} acknowledged adds`;
      }
      const txns = got.value.transactions;
      for (const [at, txn] of txns.entries()) {
        if (txn !== `txn-${at + 1}`) return `transaction ${at + 1} is ${txn}`;
      }
      if (txns.length < acked) {
        return `add ${acked} was acknowledged, but only ${txns.length} are there`;
      }
      return null;
    },
  },
};
