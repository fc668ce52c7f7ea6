// `lockbox holder`: who holds a lock, as its exit status and output say.

import assert from "node:assert/strict";
import { spawnWorker, withTempDir } from "../_helpers.ts";
import { lockbox } from "./_cli.ts";

Deno.test("lockbox holder exits 0 naming the holder, 1 when free", async () => {
  await withTempDir(async (dir) => {
    const lock = `${dir}/a.json.lock`;
    const holder = spawnWorker("hold.ts", [
      `${dir}/a.json`,
      "--metadata",
      '{"user":"ann"}',
    ], {
      stdin: true,
    });
    try {
      await holder.waitFor("locked");
      const held = await lockbox(["holder", lock]);
      assert.equal(held.code, 0);
      assert.match(
        held.stdout,
        new RegExp(
          `^held exclusive by pid ${holder.pid} on .+ token \\d+ \\{"user":"ann"\\}\\n$`,
        ),
      );
      const json = JSON.parse(
        (await lockbox(["holder", "--json", lock])).stdout,
      );
      assert.equal(json.record.metadata.user, "ann");
    } finally {
      await holder.send("release");
      await holder.finish();
    }
    const free = await lockbox(["holder", lock]);
    assert.equal(free.code, 1);
    assert.equal(free.stdout, "free\n");
    const missing = await lockbox(["holder", `${dir}/typo.lock`]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "free\n");
    assert.match(missing.stderr, /typo\.lock' does not exist/);
  });
});
