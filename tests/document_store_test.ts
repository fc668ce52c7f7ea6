import assert from "node:assert/strict";
import {
  CorruptStoreError,
  DocumentNotFoundError,
  DocumentStore,
  StoreError,
} from "../mod.ts";
import { names, withTempDir } from "./_helpers.ts";

type Doc = { title: string; rev: number };

Deno.test("DocumentStore round-trips save, update, history, backups and restore", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root, { onWarning: assert.fail });
    assert.deepEqual(await docs.save("q3", { title: "draft", rev: 1 }), {});
    const second = await docs.save("q3", { title: "review", rev: 2 }, {
      actor: "ann",
    });
    assert.match(second.backup!, /^document\.json\.\d{8}T\d{6}_\d{6}\.bak$/);
    const rev = await docs.update("q3", (doc) => {
      doc.title = "final";
      return ++doc.rev;
    }, { actor: "bob" });
    assert.equal(rev, 3);
    assert.deepEqual(await docs.get("q3"), { title: "final", rev: 3 });

    const backups = await docs.backups("q3");
    assert.equal(backups.length, 2);
    assert.equal(backups[1], second.backup);
    const dir = `${root}/by_id/q3`;
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${dir}/backups/${backups[0]}`)),
      { title: "review", rev: 2 },
    );
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${dir}/backups/${backups[1]}`)),
      { title: "draft", rev: 1 },
    );

    await docs.restore("q3", backups[1], { actor: "carol" });
    assert.deepEqual(await docs.get("q3"), { title: "draft", rev: 1 });
    const history = await docs.history("q3");
    assert.deepEqual(
      history.map((e) => [e.action_type, e.actor, e.document_id]),
      [
        ["save", "lockbox", "q3"],
        ["save", "ann", "q3"],
        ["update", "bob", "q3"],
        ["restore", "carol", "q3"],
      ],
    );
    assert.equal(history[3].payload.restored, backups[1]);
    assert.equal(history[3].payload.backup, (await docs.backups("q3"))[0]);
    assert.equal(history[0].payload.backup, undefined);
    assert.equal(new Set(history.map((e) => e.action_id)).size, 4);
    assert.deepEqual(names(dir), [
      ".lock",
      "audit.jsonl",
      "backups",
      "document.json",
    ]);
  });
});

Deno.test("DocumentStore keeps only the newest `backups` versions", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root, { backups: 2 });
    for (let rev = 1; rev <= 5; rev++) {
      await docs.save("d", { title: "t", rev });
    }
    const backups = await docs.backups("d");
    assert.equal(backups.length, 2);
    const revs = [];
    for (const b of backups) {
      revs.push(
        JSON.parse(await Deno.readTextFile(`${root}/by_id/d/backups/${b}`))
          .rev,
      );
    }
    assert.deepEqual(revs, [4, 3]);
  });
});

Deno.test("DocumentStore.rebuildIndex() restores the list after index.jsonl is deleted", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root, { backups: 0 });
    for (const id of ["a", "b", "c"]) {
      await docs.save(id, { title: id, rev: 1 });
      await docs.save(id, { title: id, rev: 2 });
    }
    assert.deepEqual(await docs.list(), ["a", "b", "c"]);
    await Deno.remove(`${root}/index.jsonl`);
    assert.deepEqual(await docs.list(), []);
    await Deno.mkdir(`${root}/by_id/empty`);
    assert.equal(await docs.rebuildIndex(), 3);
    assert.deepEqual((await docs.list()).sort(), ["a", "b", "c"]);
  });
});

Deno.test("DocumentStore.history() skips a torn last line and says so", async () => {
  await withTempDir(async (root) => {
    const warnings: string[] = [];
    const docs = new DocumentStore<Doc>(root, {
      onWarning: (m) => warnings.push(m),
    });
    await docs.save("d", { title: "t", rev: 1 });
    await Deno.writeTextFile(`${root}/by_id/d/audit.jsonl`, '{"action_id":', {
      append: true,
    });
    assert.equal((await docs.history("d")).length, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /torn last line/);
    // The next append starts on a fresh line, so no event is lost.
    await docs.save("d", { title: "t", rev: 2 });
    assert.equal((await docs.history("d")).length, 2);
  });
});

Deno.test("DocumentStore refuses ids that are paths", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    for (const id of ["../x", "a/b", "..", ".", "", "a\\b"]) {
      await assert.rejects(docs.save(id, { title: "", rev: 0 }), TypeError, id);
      await assert.rejects(docs.get(id), TypeError, id);
    }
    assert.deepEqual(names(root), []);
  });
});

Deno.test("DocumentStore.get() and update() throw DocumentNotFoundError for a missing document", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    await assert.rejects(docs.get("nope"), DocumentNotFoundError);
    await assert.rejects(docs.update("nope", () => {}), DocumentNotFoundError);
    assert.deepEqual(names(root), []);
  });
});

Deno.test("DocumentStore.save() and update() refuse an actor that is not a string before they lock or run fn", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    const bad = { actor: 5 as unknown as string };
    await assert.rejects(
      docs.save("q3", { title: "", rev: 0 }, bad),
      TypeError,
    );
    assert.deepEqual(names(root), []);
    await docs.save("q3", { title: "Q3", rev: 1 });
    let ran = false;
    await assert.rejects(
      docs.update("q3", (doc) => {
        ran = true;
        doc.rev = 2;
      }, bad),
      TypeError,
    );
    assert.equal(ran, false);
    assert.equal((await docs.get("q3")).rev, 1);
    assert.equal((await docs.history("q3")).length, 1);
  });
});

Deno.test("DocumentStore.save() fails and keeps the document when the backup cannot be made", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    await docs.save("d", { title: "t", rev: 1 });
    await Deno.writeTextFile(`${root}/by_id/d/backups`, "in the way");
    await assert.rejects(
      docs.save("d", { title: "t", rev: 2 }),
      (error: unknown) =>
        error instanceof StoreError &&
        error.message.includes("the document was not changed"),
    );
    assert.equal((await docs.get("d")).rev, 1);
    assert.equal((await docs.history("d")).length, 1);
  });
});

Deno.test("DocumentStore.save() reports a failed audit append to the caller", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    await docs.save("d", { title: "t", rev: 1 });
    await Deno.remove(`${root}/by_id/d/audit.jsonl`);
    await Deno.mkdir(`${root}/by_id/d/audit.jsonl`);
    await assert.rejects(
      docs.save("d", { title: "t", rev: 2 }),
      (error: unknown) =>
        error instanceof StoreError && error.message.includes("audit log"),
    );
  });
});

Deno.test("DocumentStore.get() of a document file that is a symlink says it cannot read it", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root);
    await docs.save("d", { title: "t", rev: 1 });
    const file = `${root}/by_id/d/document.json`;
    await Deno.rename(file, `${root}/elsewhere.json`);
    await Deno.symlink(`${root}/elsewhere.json`, file);
    await assert.rejects(
      docs.get("d"),
      (error: unknown) =>
        error instanceof StoreError &&
        error.message.startsWith(
          `Cannot read '${file}': it is a symbolic link`,
        ),
    );
  });
});

Deno.test("DocumentStore.get() throws CorruptStoreError for a damaged or invalid document", async () => {
  await withTempDir(async (root) => {
    const docs = new DocumentStore<Doc>(root, {
      validate: (v) => {
        if (typeof (v as Doc).rev !== "number") throw new Error("no rev");
        return v as Doc;
      },
    });
    await docs.save("d", { title: "t", rev: 1 });
    const file = `${root}/by_id/d/document.json`;
    await Deno.writeTextFile(file, '{"title": "t"}');
    await assert.rejects(docs.get("d"), CorruptStoreError);
    await assert.rejects(
      docs.update("d", () => {}),
      CorruptStoreError,
    );
    assert.equal(await Deno.readTextFile(file), '{"title": "t"}');
    await assert.rejects(
      docs.save("e", { title: "no rev" } as Doc),
      Error,
    );
  });
});

Deno.test("DocumentStore.list() leaves out an index entry whose save never wrote the document (a crash between the two)", async () => {
  await withTempDir(async (dir) => {
    const docs = new DocumentStore<{ n: number }>(`${dir}/docs`, {
      onWarning: () => {},
    });
    await docs.save("kept", { n: 1 });
    // What a power loss after the index append and before the document
    // leaves: the index names "lost", whose document does not exist.
    await Deno.writeTextFile(
      `${dir}/docs/index.jsonl`,
      JSON.stringify({ id: "lost", created: new Date().toISOString() }) + "\n",
      { append: true },
    );
    assert.deepEqual(await docs.list(), ["kept"]);
    await docs.save("lost", { n: 2 });
    assert.deepEqual(await docs.list(), ["kept", "lost"]);
  });
});

Deno.test("DocumentStore.restore() of a backup that was rotated away says so, not 'save it first'", async () => {
  await withTempDir(async (dir) => {
    const docs = new DocumentStore<{ n: number }>(`${dir}/docs`, {
      backups: 1,
    });
    await docs.save("q3", { n: 1 });
    await docs.save("q3", { n: 2 });
    const [first] = await docs.backups("q3");
    await docs.save("q3", { n: 3 }); // rotates `first` away
    assert.ok(!(await docs.backups("q3")).includes(first));
    await assert.rejects(
      docs.restore("q3", first),
      (error: Error) =>
        error instanceof DocumentNotFoundError &&
        /rotated away/.test(error.message) &&
        !/save it first/.test(error.message),
    );
  });
});
