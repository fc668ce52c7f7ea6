// `lockbox batch`: a command per file under that file's lock.

import assert from "node:assert/strict";
import { spawnWorker, withTempDir } from "../_helpers.ts";
import { lockbox, quoted, run } from "./_cli.ts";

Deno.test("lockbox batch runs the command per file under its lock and exits 1 if any was locked", async () => {
  await withTempDir(async (dir) => {
    const files = ["a", "b", "c"].map((n) => `${dir}/${n}.txt`);
    for (const f of files) await Deno.writeTextFile(f, "");
    const held = spawnWorker("hold.ts", [files[1]], { stdin: true });
    try {
      await held.waitFor("locked");
      const out = await lockbox([
        "batch",
        "--lock-timeout",
        "0.2",
        ...files,
        "--",
        "sh",
        "-c",
        'flock -n "$1.lock" true && exit 1; echo done > "$1"',
        "sh",
        "{}",
      ]);
      assert.equal(out.code, 1, out.stderr);
      assert.deepEqual(out.stdout.trim().split("\n").sort(), [
        `locked ${files[1]}: locked by another process (pid ${held.pid})`,
        `ok ${files[0]}`,
        `ok ${files[2]}`,
      ]);
      assert.match(out.stderr, /3 files: 2 ok, 0 failed, 1 locked/);
      assert.equal(await Deno.readTextFile(files[0]), "done\n");
      assert.equal(await Deno.readTextFile(files[1]), "");
    } finally {
      await held.send("release");
      await held.finish();
    }
    const all = await lockbox(["batch", ...files, "--", "true"]);
    assert.equal(all.code, 0, all.stderr);
    // On a terminal (script(1) gives it one): a progress bar, then results.
    const bar = await run([
      "script",
      "-qec",
      `${quoted} batch ${files.join(" ")} -- true`,
      "/dev/null",
    ]);
    assert.equal(bar.code, 0, bar.stdout);
    assert.match(bar.stdout, /\[#+\] 3\/3 /);
    assert.match(bar.stdout, /3 files: 3 ok, 0 failed, 0 locked/);
    const config = `${dir}/config.yaml`;
    await Deno.writeTextFile(
      config,
      "file_locking:\n  timeout_seconds: oops\n",
    );
    const bad = await lockbox([
      "batch",
      "--config",
      config,
      ...files,
      "--",
      "true",
    ]);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /file_locking\.timeout_seconds/);
  });
});
