// The seed systems on PostgreSQL: the shared seed tests
// (tests/_seed_contract.ts) with { backend }, 50 processes adding to one
// capture group, and 20 processes checking out one file.

import assert from "node:assert/strict";
import { CaptureGroups, DocumentStore, FileService } from "../../mod.ts";
import { PostgresBackend } from "../../src/postgres/mod.ts";
import { finishAll, spawnWorker, withTempDir } from "../_helpers.ts";
import { seedContract } from "../_seed_contract.ts";
import { pgSuite } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL seeds");

let names = 0;
seedContract({
  label: "PostgreSQL",
  test: (name, fn) =>
    pgTest(name, async (c) => {
      const db = await PostgresBackend.connect(c.url);
      const dir = await Deno.makeTempDir({ prefix: "lockbox_pg_seeds_" });
      try {
        await fn({
          backend: db,
          dir,
          name: (label) => `${label}-${names++}`,
          hold: async (file) => {
            const lock = await db.acquire(file);
            return () => lock.release();
          },
        });
      } finally {
        await db.close();
        await Deno.remove(dir, { recursive: true });
      }
    }),
});

pgTest(
  "PostgreSQL seeds: 50 processes adding to one capture group lose nothing",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const groups = new CaptureGroups("groups-50", { backend: db });
      const group = await groups.create();
      const env = { ...c.env, LOCKBOX_TEST_BACKEND: "postgres" };
      const children = Array.from(
        { length: 50 },
        (_, i) =>
          spawnWorker("groups_add.ts", ["groups-50", group, `a${i}`, `b${i}`], {
            env,
          }),
      );
      await finishAll(children);
      const txns = await groups.transactions(group);
      assert.equal(txns.length, 100);
      assert.equal(new Set(txns).size, 100);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL seeds: 20 processes checking out one file as 20 users: exactly one wins",
  async (c) => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/repo`);
      await Deno.writeTextFile(`${dir}/repo/part.mcam`, "G0 X0");
      const env = { ...c.env, LOCKBOX_TEST_BACKEND: "postgres" };
      const children = Array.from(
        { length: 20 },
        (_, i) =>
          spawnWorker(
            "checkout_once.ts",
            [`${dir}/repo`, "checkouts-20", "part.mcam", `user${i}`],
            { env },
          ),
      );
      const outputs = (await finishAll(children)).map((lines) => lines[0]);
      const winners = outputs.flatMap((line, i) =>
        line === "won" ? [`user${i}`] : []
      );
      assert.equal(winners.length, 1);
      for (const line of outputs) {
        if (line !== "won") assert.equal(line, `lost ${winners[0]}`);
      }
      const db = await PostgresBackend.connect(c.url);
      try {
        const files = new FileService(`${dir}/repo`, "checkouts-20", {
          backend: db,
        });
        const [status] = await files.filesWithStatus();
        assert.equal(status.lockedBy, winners[0]);
      } finally {
        await db.close();
      }
    });
  },
);

pgTest(
  "PostgreSQL seeds: DocumentStore.save() from 8 processes to one document loses no audit event, each in its change's transaction",
  async (c) => {
    const env = { ...c.env, LOCKBOX_TEST_BACKEND: "postgres" };
    const children = Array.from(
      { length: 8 },
      (_, i) =>
        spawnWorker("doc_save.ts", ["reports", "shared", `actor${i}`, "25"], {
          env,
        }),
    );
    await finishAll(children);
    const db = await PostgresBackend.connect(c.url);
    try {
      const docs = new DocumentStore("reports", { backend: db });
      const events = await docs.history("shared");
      assert.equal(events.length, 200);
      assert.equal(new Set(events.map((e) => e.action_id)).size, 200);
      for (let i = 0; i < 8; i++) {
        assert.equal(events.filter((e) => e.actor === `actor${i}`).length, 25);
      }
      // Every save but the very first backed up the version before it, and
      // its event names that version.
      assert.equal(events.filter((e) => e.payload.backup).length, 199);
      assert.deepEqual(
        events.slice(1).map((e) => e.payload.backup),
        Array.from({ length: 199 }, (_, i) => `v${i + 1}`),
      );
      assert.equal((await docs.backups("shared")).length, 3);
      assert.deepEqual(await docs.list(), ["shared"]);
      const version = await db.jsonStore("reports/by_id/shared", {
        initial: null,
      }).readWithVersion();
      assert.equal(version.version, 200);
    } finally {
      await db.close();
    }
  },
);

stopAfterwards();
