import assert from "node:assert/strict";
import {
  AlreadyCheckedOutError,
  CheckoutRegistry,
  CorruptStoreError,
  FileService,
  NotCheckedOutError,
  NotOwnerError,
  StoreError,
} from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("CheckoutRegistry.checkout() writes seed 002's registry shape", async () => {
  await withTempDir(async (dir) => {
    const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
    const before = Date.now();
    const record = await registry.checkout("a.mcam", "ann", "holes");
    const text = await Deno.readTextFile(`${dir}/checkouts.json`);
    assert.deepEqual(JSON.parse(text), { "a.mcam": record });
    assert.equal(text, JSON.stringify({ "a.mcam": record }, null, 2));
    assert.equal(record.user, "ann");
    assert.equal(record.message, "holes");
    // Python's datetime.now(timezone.utc).isoformat(): microseconds (left
    // out when zero) and +00:00, never Z (Python 3.10 cannot parse Z).
    assert.match(
      record.timestamp,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/,
    );
    assert.ok(Date.parse(record.timestamp) >= before - 1);
  });
});

Deno.test("CheckoutRegistry.checkout() refuses a checked-out file, naming the holder", async () => {
  await withTempDir(async (dir) => {
    const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
    await registry.checkout("a.mcam", "ann");
    for (const user of ["bob", "ann"]) {
      await assert.rejects(
        registry.checkout("a.mcam", user),
        (error: unknown) =>
          error instanceof AlreadyCheckedOutError &&
          error.holder.user === "ann" && error.message.includes("by ann"),
      );
    }
    assert.equal((await registry.holder("a.mcam"))?.user, "ann");
  });
});

Deno.test("CheckoutRegistry.checkin() lets only the owner check in", async () => {
  await withTempDir(async (dir) => {
    const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
    await assert.rejects(
      registry.checkin("a.mcam", "ann"),
      NotCheckedOutError,
    );
    await registry.checkout("a.mcam", "ann");
    await assert.rejects(
      registry.checkin("a.mcam", "bob"),
      (error: unknown) =>
        error instanceof NotOwnerError && error.owner === "ann" &&
        error.user === "bob",
    );
    assert.equal((await registry.holder("a.mcam"))?.user, "ann");
    await registry.checkin("a.mcam", "ann");
    assert.equal(await registry.holder("a.mcam"), undefined);
    assert.deepEqual(await registry.list(), {});
  });
});

Deno.test("CheckoutRegistry.list() throws on a corrupt registry instead of reading {}", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/checkouts.json`, '{"a.mcam": {"user"');
    const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
    await assert.rejects(registry.list(), CorruptStoreError);
    await assert.rejects(registry.checkout("b.mcam", "ann"), CorruptStoreError);
    assert.equal(
      await Deno.readTextFile(`${dir}/checkouts.json`),
      '{"a.mcam": {"user"',
    );
  });
});

async function repo(dir: string): Promise<FileService> {
  await Deno.mkdir(`${dir}/repo`);
  await Deno.writeTextFile(`${dir}/repo/b.MCAM`, "12345");
  await Deno.writeTextFile(`${dir}/repo/a.mcam`, "1");
  await Deno.writeTextFile(`${dir}/repo/notes.txt`, "not a part");
  await Deno.mkdir(`${dir}/repo/sub.mcam`);
  await Deno.writeTextFile(`${dir}/secret.mcam`, "outside");
  await Deno.symlink(`${dir}/secret.mcam`, `${dir}/repo/escape.mcam`);
  await Deno.symlink(`${dir}/repo/a.mcam`, `${dir}/repo/alias.mcam`);
  return new FileService(`${dir}/repo`, `${dir}/checkouts.json`);
}

Deno.test("FileService.filesWithStatus() lists the extension's files, case-insensitively, with holders", async () => {
  await withTempDir(async (dir) => {
    const files = await repo(dir);
    await files.checkout("b.MCAM", "ann");
    const status = await files.filesWithStatus();
    assert.deepEqual(
      status.map((f) => [f.name, f.sizeBytes, f.status, f.lockedBy]),
      [
        ["a.mcam", 1, "available", null],
        ["alias.mcam", 1, "available", null],
        ["b.MCAM", 5, "checked_out", "ann"],
      ],
    );
    const mtime = (await Deno.stat(`${dir}/repo/b.MCAM`)).mtime!;
    assert.equal(status[2].modified.getTime(), mtime.getTime());
  });
});

Deno.test("FileService.checkout() refuses traversal, absolute paths, outside symlinks and missing files", async () => {
  await withTempDir(async (dir) => {
    const files = await repo(dir);
    // A name of the wrong shape is a bad argument; one that is not a file
    // of the repository is a StoreError.
    // deno-lint-ignore no-explicit-any
    const refused: [string, new (...args: any[]) => Error][] = [
      ["../secret.mcam", TypeError],
      [`${dir}/secret.mcam`, TypeError],
      ["escape.mcam", TypeError],
      ["missing.mcam", StoreError],
      ["notes.txt", TypeError],
      ["sub.mcam", StoreError],
      ["..", TypeError],
    ];
    for (const [name, kind] of refused) {
      await assert.rejects(
        files.checkout(name, "ann"),
        (error: unknown) =>
          error instanceof kind && (error as Error).message.includes(name),
        name,
      );
    }
    assert.deepEqual(await files.registry.list(), {});
    await files.checkout("alias.mcam", "ann");
    await assert.rejects(files.checkin("../secret.mcam", "ann"), TypeError);
    await files.checkin("alias.mcam", "ann");
  });
});
