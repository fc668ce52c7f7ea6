// The seed systems' Python and lockbox take turns on the same files, three
// rounds each: after every lockbox write the file's bytes must be exactly
// what the seed's own Python would write for the same data (json.dump with
// its indent and ensure_ascii), and every value Python put there (big
// integers, 1.0, -0.0, 1e-07, NaN, Infinity, non-ASCII text, key order)
// must read back in Python as it wrote it.

import assert from "node:assert/strict";
import {
  CaptureGroups,
  CheckoutRegistry,
  DocumentStore,
  updateAttemptedRunState,
  updateContiguousRunState,
} from "../../mod.ts";
import { output, withTempDir, worker } from "../_helpers.ts";

const PY = worker("py_seeds.py");

async function python(args: string[]): Promise<string> {
  const result = await output("python3", { args: [PY, ...args] });
  const text = new TextDecoder().decode(result.stdout);
  if (result.code !== 0) {
    throw new Error(
      `py_seeds.py ${args.join(" ")}: ${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
  return text;
}

/** The seed's file must be what its Python writes, and keep Python's values. */
async function assertPythonBytes(seed: string, file: string, round: number) {
  const bytes = await Deno.readTextFile(file);
  assert.equal(bytes, await python(["redump", seed, file]));
  await python(["check", seed, file, String(round)]);
}

const SEEDS: {
  seed: string;
  what: string;
  file: (dir: string) => string;
  lockbox: (dir: string, round: number) => Promise<void>;
}[] = [
  {
    seed: "000",
    what: "capture groups (CaptureGroups.addTransaction)",
    file: (dir) => `${dir}/capture_groups.json`,
    lockbox: (dir, round) =>
      new CaptureGroups(`${dir}/capture_groups.json`).addTransaction(
        round.toString(16).padStart(16, "0"),
        `lockbox-${round}`,
      ),
  },
  {
    seed: "002",
    what: "checkouts (CheckoutRegistry.checkout, with a null message there)",
    file: (dir) => `${dir}/checkouts.json`,
    lockbox: async (dir, round) => {
      const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
      await registry.checkout(`lockbox-${round}.mcam`, "lb", `r${round}`);
      assert.equal(Object.keys(await registry.list()).length, 2 * round);
    },
  },
  {
    seed: "003",
    what: "run state (updateContiguousRunState, updateAttemptedRunState)",
    file: (dir) => `${dir}/import_state.json`,
    lockbox: async (dir, round) => {
      await updateContiguousRunState(`${dir}/import_state.json`, [100 + round]);
      await updateAttemptedRunState(`${dir}/import_state.json`, [100 + round]);
    },
  },
  {
    seed: "004",
    what: "a document (DocumentStore.update)",
    file: (dir) => `${dir}/docs/by_id/report/document.json`,
    lockbox: (dir, round) =>
      new DocumentStore<Record<string, unknown>>(`${dir}/docs`, {
        backups: 1,
      }).update("report", (doc) => {
        doc[`lockbox_${round}`] = { round, text: "d\u00e9j\u00e0" };
      }),
  },
];

for (const { seed, what, file, lockbox } of SEEDS) {
  Deno.test(`seed ${seed} ${what}: Python and lockbox alternate 3 rounds, and lockbox writes Python's bytes`, async () => {
    await withTempDir(async (dir) => {
      const path = file(dir);
      await Deno.mkdir(path.replace(/\/[^/]+$/, ""), { recursive: true });
      for (let round = 1; round <= 3; round++) {
        await python(["write", seed, path, String(round)]);
        await lockbox(dir, round);
        await assertPythonBytes(seed, path, round);
      }
      if (seed === "004") {
        // Its audit log, as seed 004 writes lines: json.dumps(event,
        // ensure_ascii=False), ", " and ": " between items.
        const audit = await Deno.readTextFile(
          `${dir}/docs/by_id/report/audit.jsonl`,
        );
        const lines = audit.trim().split("\n");
        assert.equal(lines.length, 3);
        for (const line of lines) {
          await Deno.writeTextFile(`${dir}/line.json`, line);
          const redumped = await python(["redump", "004", `${dir}/line.json`]);
          assert.equal(
            JSON.stringify(JSON.parse(line)),
            JSON.stringify(JSON.parse(redumped)),
          );
          assert.match(line, /^\{"action_id": "/);
        }
      }
    });
  });
}
