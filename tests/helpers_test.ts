// The test helpers' own promises: a cleanup never hides the error it
// follows, and a mount is never left behind.

import assert from "node:assert/strict";
import {
  Child,
  killWriters,
  withCleanup,
  withTempDir,
  withTmpfs,
} from "./_helpers.ts";

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

Deno.test("killWriters() gives each check the IDs acknowledged before it began, not those other lanes add while it awaits its read", async () => {
  // The first check waits until a fifth kill, necessarily of a writer started
  // after a first check returned, has been checked: that writer's ID was
  // acknowledged after the first check began, so its read may not hold it.
  let checks = 0;
  let fifth!: () => void;
  const fifthChecked = new Promise<void>((resolve) => (fifth = resolve));
  let grew: string[] = [];
  await killWriters(
    8,
    (prefix) => new Child("sh", ["-c", `echo ack ${prefix}; exec sleep 60`]),
    async (acked) => {
      const n = ++checks;
      if (n === 5) fifth();
      if (n !== 1) return;
      const before = new Set(acked);
      await fifthChecked;
      grew = [...acked].filter((id) => !before.has(id));
    },
  );
  assert.ok(checks >= 5);
  assert.deepEqual(grew, []);
});
