import assert from "node:assert/strict";
import { ConfigError, loadLockingConfig } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

// Seed 001's config.yaml block, verbatim.
const SEED_BLOCK = `file_locking:
  enabled: true                   # Enable file locking
  timeout_seconds: 30             # Max wait time for lock
  retry_attempts: 3               # Number of retry attempts
  retry_delay_seconds: 2          # Delay between retries
  cleanup_stale_locks: true       # Auto-cleanup on startup
  stale_threshold_hours: 1        # Age threshold for stale locks
`;

Deno.test("loadLockingConfig() reads seed 001's sample block to the documented values", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config.yaml`,
      `other:\n  x: 1\n${
        SEED_BLOCK.replace("timeout_seconds: 30", "timeout_seconds: 12.5")
      }`,
    );
    const config = await loadLockingConfig(`${dir}/config.yaml`, {
      onWarning: assert.fail,
    });
    assert.deepEqual(config, {
      lock: true,
      lockTimeout: 12_500,
      retries: 3,
      retryDelay: 2_000,
      cleanupStaleLocks: true,
      staleAfter: 3_600_000,
    });
  });
});

Deno.test("loadLockingConfig() gives seed 001's defaults for a missing section and reads JSON", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/c.yaml`, "other: 1\n");
    const defaults = await loadLockingConfig(`${dir}/c.yaml`);
    assert.equal(defaults.lockTimeout, 30_000);
    assert.equal(defaults.retryDelay, 2_000);
    assert.equal(defaults.lock, true);
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({ file_locking: { enabled: false, retry_attempts: 0 } }),
    );
    const json = await loadLockingConfig(`${dir}/c.json`);
    assert.equal(json.lock, false);
    assert.equal(json.retries, 0);
    assert.equal(json.staleAfter, 3_600_000);
  });
});

Deno.test("loadLockingConfig() reports a bad type by key and file", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string][] = [
      ["timeout_seconds: soon", "timeout_seconds"],
      ["enabled: yes please", "enabled"],
      ["retry_attempts: 1.5", "retry_attempts"],
      ["stale_threshold_hours: -1", "stale_threshold_hours"],
    ];
    for (const [line, key] of cases) {
      const file = `${dir}/${key}.yaml`;
      await Deno.writeTextFile(file, `file_locking:\n  ${line}\n`);
      await assert.rejects(
        loadLockingConfig(file),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.key === `file_locking.${key}` &&
          error.message.includes(`file_locking.${key}`) &&
          error.message.includes(file),
        line,
      );
    }
  });
});

Deno.test("loadLockingConfig() warns about an unknown key, naming it and the file", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/c.yaml`;
    await Deno.writeTextFile(file, "file_locking:\n  timout_seconds: 5\n");
    const warnings: string[] = [];
    const config = await loadLockingConfig(file, {
      onWarning: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0].includes("file_locking.timout_seconds"));
    assert.ok(warnings[0].includes(file));
    assert.equal(config.lockTimeout, 30_000);
  });
});

Deno.test("loadLockingConfig() names the file when it is missing or does not parse", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      loadLockingConfig(`${dir}/none.yaml`),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes("none.yaml"),
    );
    await Deno.writeTextFile(`${dir}/bad.yaml`, "file_locking: [1,\n");
    await assert.rejects(
      loadLockingConfig(`${dir}/bad.yaml`),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes("bad.yaml"),
    );
    await Deno.writeTextFile(`${dir}/list.yaml`, "file_locking: [1, 2]\n");
    await assert.rejects(loadLockingConfig(`${dir}/list.yaml`), ConfigError);
  });
});
