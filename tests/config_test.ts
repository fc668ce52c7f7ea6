import assert from "node:assert/strict";
import { ConfigError, loadLockingConfig } from "../mod.ts";
import { output, withTempDir } from "./_helpers.ts";

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

Deno.test("loadLockingConfig() reads YAML as the seeds' PyYAML does: merge keys, octal, yes/no/on/off, 1_000, 1:30, a repeated key", async () => {
  await withTempDir(async (dir) => {
    const cases = [
      // Merge keys: the defaults, then the section's own values.
      "defaults: &defaults\n  timeout_seconds: 10\n  retry_attempts: 7\nfile_locking:\n  <<: *defaults\n  enabled: true\n",
      "file_locking:\n  retry_attempts: 010\n  enabled: no\n  cleanup_stale_locks: on\n",
      "file_locking:\n  timeout_seconds: 1_000\n  stale_threshold_hours: 1:30\n",
      "file_locking:\n  retry_attempts: 2\n  retry_attempts: 5\n  enabled: off\n",
    ];
    for (const [i, text] of cases.entries()) {
      const file = `${dir}/config-${i}.yaml`;
      await Deno.writeTextFile(file, text);
      // What PyYAML (yaml.safe_load) makes of the same file.
      const result = await output("python3", {
        args: [
          "-c",
          "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['file_locking']))",
          file,
        ],
      });
      assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
      const python = JSON.parse(new TextDecoder().decode(result.stdout));
      const warnings: string[] = [];
      const config = await loadLockingConfig(file, {
        onWarning: (m) => warnings.push(m),
      });
      const expect = (key: string, got: unknown, scale = 1) => {
        if (!(key in python)) return;
        const want = typeof python[key] === "number"
          ? python[key] * scale
          : python[key];
        assert.equal(got, want, `${i}: ${key}`);
      };
      expect("enabled", config.lock);
      expect("timeout_seconds", config.lockTimeout, 1000);
      expect("retry_attempts", config.retries);
      expect("cleanup_stale_locks", config.cleanupStaleLocks);
      expect("stale_threshold_hours", config.staleAfter, 3_600_000);
      assert.deepEqual(warnings, [], `${i}: ${warnings}`);
    }
  });
});

Deno.test("loadLockingConfig() says so when the yaml package cannot be loaded, instead of blaming the syntax", async () => {
  await withTempDir(async (dir) => {
    // The package's own imports, with yaml pointing nowhere.
    const config = JSON.parse(
      await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    );
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        imports: { ...config.imports, yaml: `file://${dir}/no-such-yaml.js` },
      }),
    );
    await Deno.writeTextFile(`${dir}/config.yaml`, "file_locking: {}\n");
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { loadLockingConfig } from "${
        new URL("../mod.ts", import.meta.url).href
      }";
try {
  await loadLockingConfig(Deno.args[0]);
} catch (error) {
  console.log(error.message);
}
`,
    );
    const result = await output(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--quiet",
        "--no-lock",
        `--config=${dir}/deno.json`,
        `${dir}/main.ts`,
        `${dir}/config.yaml`,
      ],
    });
    const said = new TextDecoder().decode(result.stdout);
    assert.match(said, /the yaml package cannot be loaded/);
    assert.doesNotMatch(said, /fix the syntax/);
  });
});
