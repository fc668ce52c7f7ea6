// The seed systems' behaviour, written once and run on every backend: files
// (tests/seed_contract_test.ts) and PostgreSQL (tests/postgres/seeds_test.ts).
// Same calls, same results, same error types.

import assert from "node:assert/strict";
import {
  acquireInstanceLock,
  AlreadyCheckedOutError,
  appendToFailureLog,
  CaptureGroups,
  CheckoutRegistry,
  CorruptStoreError,
  DocumentNotFoundError,
  DocumentStore,
  FileService,
  getIncrementalStartRun,
  GroupNotFoundError,
  LockBusyError,
  NotCheckedOutError,
  NotOwnerError,
  Operations,
  parseRunRecordsFile,
  processFiles,
  readState,
  type StoreBackend,
  StoreError,
  updateAttemptedRunState,
  updateContiguousRunState,
  watchState,
  writeFailureLog,
  writeState,
} from "../mod.ts";

/** What a watch yields until `done` says stop, the first value awaited before `act`. */
async function watched<T, R>(
  source: (signal: AbortSignal) => AsyncIterable<{ value: T }>,
  pick: (value: T) => R,
  done: (picked: R) => boolean,
  act: () => Promise<void>,
): Promise<R[]> {
  const controller = new AbortController();
  const seen: R[] = [];
  let first!: () => void;
  const started = new Promise<void>((resolve) => first = resolve);
  const watching = (async () => {
    for await (const { value } of source(controller.signal)) {
      seen.push(pick(value));
      first();
      if (done(seen.at(-1)!)) controller.abort();
    }
  })();
  await started;
  await act();
  await watching;
  return seen;
}

/** One backend under test, for one test. */
export interface SeedPlace {
  /** The backend option (`undefined`: files). */
  backend: StoreBackend | undefined;
  /** A fresh name (a path in a temporary directory, or a document name). */
  name(label: string): string;
  /** A directory for files that stay on disk (a repository, a batch). */
  dir: string;
  /** Holds the lock a batch takes on `file`; returns its release. */
  hold(file: string): Promise<() => Promise<void>>;
}

/** A backend under test. */
export interface SeedStorage {
  label: string;
  test(name: string, fn: (place: SeedPlace) => Promise<void>): void;
}

/** Registers the seed systems' shared tests for one backend. */
export function seedContract(storage: SeedStorage): void {
  const t = (name: string, fn: (place: SeedPlace) => Promise<void>) =>
    storage.test(`seed contract (${storage.label}): ${name}`, fn);

  t(
    "capture groups: create, add once, list in order, delete, prune, and odd ids",
    async (place) => {
      const groups = new CaptureGroups(place.name("groups"), {
        backend: place.backend,
      });
      const made = await groups.create();
      assert.match(made, /^[0-9a-f]{16}$/);
      assert.equal(await groups.create("zeta"), "zeta");
      assert.equal(await groups.create("constructor"), "constructor");
      await groups.create("toString");
      await groups.addTransaction("zeta", "t1");
      await groups.addTransaction("zeta", "t1");
      await groups.addTransaction("zeta", "t2");
      assert.deepEqual(await groups.transactions("zeta"), ["t1", "t2"]);
      assert.deepEqual(await groups.transactions("missing"), []);
      assert.deepEqual(await groups.transactions("__proto__"), []);
      assert.equal(await groups.get("hasOwnProperty"), undefined);
      await assert.rejects(
        groups.addTransaction("missing", "t"),
        GroupNotFoundError,
      );
      assert.deepEqual(await groups.list(), [
        made,
        "zeta",
        "constructor",
        "toString",
      ]);
      assert.equal(await groups.delete("zeta"), true);
      assert.equal(await groups.delete("zeta"), false);
      assert.deepEqual(await groups.pruneOlderThan(3600), []);
      // Age 0 prunes the groups made before this second: some or all.
      const before = await groups.list();
      const pruned = await groups.pruneOlderThan(0);
      assert.deepEqual(
        await groups.list(),
        before.filter((id) => !pruned.includes(id)),
      );
      await assert.rejects(groups.pruneOlderThan(-1), RangeError);
      await assert.rejects(groups.create(""), TypeError);
    },
  );

  t(
    "operations: register for a group, look up, refuse a missing group",
    async (place) => {
      const groups = new CaptureGroups(place.name("groups"), {
        backend: place.backend,
      });
      const ops = new Operations(place.name("ops"), {
        groups,
        backend: place.backend,
      });
      const group = await groups.create();
      const op = await ops.register(group);
      assert.equal(await ops.captureGroupOf(op), group);
      assert.equal(await ops.captureGroupOf("constructor"), undefined);
      assert.deepEqual(await ops.list(), [op]);
      await assert.rejects(ops.register("nope"), GroupNotFoundError);
    },
  );

  t(
    "checkout registry and file service: one holder, only the owner checks in",
    async (place) => {
      const registry = new CheckoutRegistry(place.name("checkouts"), {
        backend: place.backend,
      });
      const record = await registry.checkout("part.mcam", "ann", "holes");
      assert.equal(record.user, "ann");
      assert.equal(record.message, "holes");
      await assert.rejects(
        registry.checkout("part.mcam", "bob"),
        (e) => e instanceof AlreadyCheckedOutError && e.holder.user === "ann",
      );
      await assert.rejects(registry.checkin("part.mcam", "bob"), NotOwnerError);
      await assert.rejects(
        registry.checkin("other.mcam", "ann"),
        NotCheckedOutError,
      );
      assert.equal((await registry.holder("part.mcam"))?.user, "ann");
      assert.equal(await registry.holder("constructor"), undefined);
      await registry.checkin("part.mcam", "ann");
      assert.deepEqual(await registry.list(), {});

      const repo = `${place.dir}/repo`;
      await Deno.mkdir(repo);
      await Deno.writeTextFile(`${repo}/a.MCAM`, "G0");
      const files = new FileService(repo, place.name("files"), {
        backend: place.backend,
      });
      await files.checkout("a.MCAM", "cy");
      const [status] = await files.filesWithStatus();
      assert.equal(status.lockedBy, "cy");
      await assert.rejects(files.checkout("../x.mcam", "cy"), TypeError);
      await assert.rejects(files.checkout("none.mcam", "cy"), StoreError);
    },
  );

  t(
    "archiver run state: contiguous and attempted runs, the start run, invalid state refused",
    async (place) => {
      const options = { backend: place.backend };
      const state = place.name("state");
      assert.deepEqual(await readState(state, options), {});
      assert.equal(await getIncrementalStartRun(state, options), 0);
      const s1 = await updateContiguousRunState(
        state,
        [101, 102, 104],
        options,
      );
      assert.equal(s1.last_contiguous_run, 102);
      const s2 = await updateContiguousRunState(
        state,
        [103, 104, 106],
        options,
      );
      assert.equal(s2.last_contiguous_run, 104);
      await updateAttemptedRunState(state, [110, 90], options);
      await updateAttemptedRunState(state, [100], options);
      assert.equal(await getIncrementalStartRun(state, options), 110);
      await writeState(
        state,
        { last_contiguous_run: 5, other: "kept" },
        options,
      );
      assert.deepEqual(await readState(state, options), {
        last_contiguous_run: 5,
        other: "kept",
      });
      await assert.rejects(
        writeState(state, { last_contiguous_run: -1 }, options),
        TypeError,
      );
    },
  );

  t(
    "archiver failure log: append, replace, read back; a missing log is a StoreError",
    async (place) => {
      const options = { backend: place.backend };
      const log = place.name("failures");
      await assert.rejects(parseRunRecordsFile(log, options), StoreError);
      await appendToFailureLog(log, [7, 3], options);
      await appendToFailureLog(log, [9], options);
      assert.deepEqual(await parseRunRecordsFile(log, options), [7, 3, 9]);
      await writeFailureLog(log, [3], options);
      assert.deepEqual(await parseRunRecordsFile(log, options), [3]);
      await assert.rejects(appendToFailureLog(log, [-1], options), TypeError);
      const empty = place.name("empty-failures");
      await appendToFailureLog(empty, [], options);
      await assert.rejects(parseRunRecordsFile(empty, options), StoreError);
      await writeFailureLog(empty, [], options);
      assert.deepEqual(await parseRunRecordsFile(empty, options), []);
    },
  );

  t(
    "archiver instance lock: a second instance is refused with LockBusyError until the first releases",
    async (place) => {
      const name = place.name("archiver.lock");
      const first = await acquireInstanceLock(name, {
        backend: place.backend,
        metadata: { job: "import" },
      });
      assert.equal(await first.isValid(), true);
      await assert.rejects(
        acquireInstanceLock(name, { backend: place.backend }),
        LockBusyError,
      );
      await first.release();
      assert.equal(await first.isValid(), false);
      const second = await acquireInstanceLock(name, {
        backend: place.backend,
      });
      await second.release();
    },
  );

  t(
    "batch: files locked elsewhere are reported, the others processed",
    async (place) => {
      const files = ["a", "b", "c"].map((n) => `${place.dir}/${n}.txt`);
      for (const file of files) await Deno.writeTextFile(file, file);
      const release = await place.hold(files[1]);
      try {
        const results = await processFiles(
          files,
          async (file) => (await Deno.readTextFile(file)).length,
          { backend: place.backend, lockTimeout: 100 },
        );
        assert.deepEqual(results.map((r) => r.ok), [true, false, true]);
        assert.equal(results[1].ok === false && results[1].locked, true);
        const failing = await processFiles(
          [files[0]],
          () => Promise.reject(new Error("boom")),
          { backend: place.backend },
        );
        assert.deepEqual(failing, [{
          file: files[0],
          ok: false,
          locked: false,
          error: "boom",
        }]);
      } finally {
        await release();
      }
    },
  );

  t(
    "document store: save, update, history, backups, restore, list and rebuild; missing ids and backups are DocumentNotFoundError",
    async (place) => {
      const root = place.backend ? place.name("docs") : `${place.dir}/docs`;
      const docs = new DocumentStore<{ title: string }>(root, {
        backend: place.backend,
        backups: 2,
        validate: (value) => {
          if (typeof (value as { title?: unknown }).title !== "string") {
            throw new TypeError("title must be a string");
          }
          return value as { title: string };
        },
      });
      await assert.rejects(docs.get("q3"), DocumentNotFoundError);
      await assert.rejects(
        docs.update("q3", () => {}),
        DocumentNotFoundError,
      );
      assert.deepEqual(
        await docs.save("q3", { title: "one" }, { actor: "ann" }),
        {},
      );
      const second = await docs.save("q3", { title: "two" }, { actor: "bob" });
      assert.equal(typeof second.backup, "string");
      const length = await docs.update("q3", (doc) => {
        doc.title = "three";
        return doc.title.length;
      });
      assert.equal(length, 5);
      // Saving the same document again is still an audited action.
      await docs.save("q3", { title: "three" });
      assert.deepEqual(await docs.get("q3"), { title: "three" });
      const history = await docs.history("q3");
      assert.deepEqual(history.map((e) => [e.action_type, e.actor]), [
        ["save", "ann"],
        ["save", "bob"],
        ["update", "lockbox"],
        ["save", "lockbox"],
      ]);
      assert.equal(history[1].payload.backup, second.backup);
      assert.equal(history[0].document_id, "q3");

      const kept = await docs.backups("q3");
      assert.equal(kept.length, 2);
      // Newest first: the version before the last save, then "two".
      await docs.restore("q3", kept[1], { actor: "cy" });
      assert.deepEqual(await docs.get("q3"), { title: "two" });
      await docs.restore("q3", kept[0]);
      assert.deepEqual(await docs.get("q3"), { title: "three" });
      const restored = await docs.history("q3");
      assert.equal(restored.at(-1)!.action_type, "restore");
      assert.equal(restored.at(-1)!.payload.restored, kept[0]);
      await assert.rejects(docs.restore("q3", "nonsense"), TypeError);
      // A rotated-away backup is gone, and said to be.
      const oldest = (await docs.backups("q3")).at(-1)!;
      await docs.save("q3", { title: "four" });
      await docs.save("q3", { title: "five" });
      await assert.rejects(
        docs.restore("q3", oldest),
        (e) =>
          e instanceof DocumentNotFoundError && /rotated away/.test(e.message),
      );

      await assert.rejects(
        docs.save("bad", { title: 5 } as unknown as { title: string }),
        /title must be a string/,
      );
      await docs.save("constructor", { title: "odd id" });
      await docs.save("a2", { title: "x" });
      assert.deepEqual(await docs.list(), ["q3", "constructor", "a2"]);
      assert.equal(await docs.rebuildIndex(), 3);
      assert.deepEqual(
        new Set(await docs.list()),
        new Set(["q3", "constructor", "a2"]),
      );
      await assert.rejects(docs.get("../x"), TypeError);
      await assert.rejects(docs.get(""), TypeError);
      assert.ok(CorruptStoreError);
    },
  );

  t(
    "watch: capture groups and the archiver's state yield now and then each change",
    async (place) => {
      const groups = new CaptureGroups(place.name("groups"), {
        backend: place.backend,
      });
      const counts = await watched(
        (signal) => groups.watch({ signal }),
        (db) => Object.keys(db).length,
        (count) => count === 3,
        async () => {
          for (const id of ["a", "b", "c"]) await groups.create(id);
        },
      );
      assert.equal(counts[0], 0);
      assert.equal(counts.at(-1), 3);
      for (let i = 1; i < counts.length; i++) {
        assert.ok(counts[i] > counts[i - 1]);
      }

      const state = place.name("state");
      const runs = await watched(
        (signal) => watchState(state, { backend: place.backend, signal }),
        (value) => value.last_contiguous_run ?? 0,
        (run) => run === 103,
        async () => {
          for (const run of [101, 102, 103]) {
            await updateContiguousRunState(state, [run], {
              backend: place.backend,
            });
          }
        },
      );
      assert.equal(runs[0], 0);
      assert.equal(runs.at(-1), 103);
    },
  );
}
