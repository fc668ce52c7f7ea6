// The test helpers' own promises: a cleanup never hides the error it
// follows, and a mount is never left behind.

import assert from "node:assert/strict";
import { withCleanup, withTempDir, withTmpfs } from "./_helpers.ts";

Deno.test("withCleanup() throws fn's error first when the cleanup fails too, and the cleanup's alone when fn succeeded", async () => {
  await assert.rejects(
    withCleanup(() => {
      throw new Error("original");
    }, () => {
      throw new Error("cleanup");
    }),
    (error: unknown) =>
      error instanceof AggregateError &&
      (error.errors[0] as Error).message === "original" &&
      (error.errors[1] as Error).message === "cleanup" &&
      /original.*cleanup/.test(error.message),
  );
  await assert.rejects(
    withCleanup(() => {
      throw new Error("original");
    }, () => {}),
    (error: Error) => error.message === "original",
  );
  await assert.rejects(
    withCleanup(() => 1, () => {
      throw new Error("cleanup");
    }),
    (error: Error) => error.message === "cleanup",
  );
  assert.equal(await withCleanup(() => 1, () => {}), 1);
});

Deno.test("withTmpfs() reports a busy unmount without hiding fn's error, and leaves nothing mounted", async () => {
  let mountpoint = "";
  await withTempDir(async (dir) => {
    mountpoint = `${dir}/tiny`;
    let file: Deno.FsFile | undefined;
    await assert.rejects(
      withTmpfs(mountpoint, "1m", () => {
        // Left open: the unmount finds the target busy.
        file = Deno.openSync(`${mountpoint}/f`, { write: true, create: true });
        return Promise.reject(new Error("original"));
      }),
      (error: unknown) =>
        error instanceof AggregateError &&
        (error.errors[0] as Error).message === "original" &&
        /umount/.test((error.errors[1] as Error).message),
    );
    file?.close();
    const mounts = await Deno.readTextFile("/proc/self/mountinfo");
    assert.ok(!mounts.includes(` ${mountpoint} `), "still mounted");
  });
});
