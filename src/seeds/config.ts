// The `file_locking` section of seed 001's config file, read into options
// the rest of lockbox takes.

import { _readFile, _toPath } from "../runtime/mod.ts";

/**
 * Locking settings from a config file, named as the rest of lockbox names
 * them: pass it to {@linkcode processFiles} as it is, and `staleAfter` to
 * {@linkcode cleanupStaleLocks}.
 */
export interface LockingConfig {
  /** `enabled`: whether files are locked at all. */
  lock: boolean;
  /** `timeout_seconds`, in milliseconds: how long to wait for a lock. */
  lockTimeout: number;
  /** `retry_attempts`: how many more attempts after a timeout. */
  retries: number;
  /** `retry_delay_seconds`, in milliseconds. */
  retryDelay: number;
  /** `cleanup_stale_locks`: whether to clean stale locks on start. */
  cleanupStaleLocks: boolean;
  /** `stale_threshold_hours`, in milliseconds. */
  staleAfter: number;
}

/** Options of {@linkcode loadLockingConfig}. */
export interface LoadConfigOptions {
  /**
   * Receives warnings (an unknown key).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
}

/**
 * A config file cannot be read or has a bad value.
 *
 * @example
 * ```ts ignore
 * import { ConfigError, loadLockingConfig } from "@lockbox/lockbox";
 * try {
 *   await loadLockingConfig("config.yaml");
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.key);
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
  /**
   * Creates a ConfigError.
   *
   * @param path The config file.
   * @param key The key at fault (`file_locking.timeout_seconds`), if one is.
   * @param message What is wrong and what to do.
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly path: string,
    readonly key: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const _KEYS = {
  enabled: "boolean",
  timeout_seconds: "seconds",
  retry_attempts: "count",
  retry_delay_seconds: "seconds",
  cleanup_stale_locks: "boolean",
  stale_threshold_hours: "hours",
} as const;

/** Seed 001's defaults. */
const _DEFAULTS = {
  enabled: true,
  timeout_seconds: 30,
  retry_attempts: 3,
  retry_delay_seconds: 2,
  cleanup_stale_locks: true,
  stale_threshold_hours: 1,
};

/**
 * Reads the `file_locking` section of a YAML or JSON config file (JSON when
 * the name ends in `.json`), with seed 001's keys and defaults:
 *
 * | key | default | becomes |
 * |---|---|---|
 * | `enabled` | `true` | `lock` |
 * | `timeout_seconds` | `30` | `lockTimeout` (ms) |
 * | `retry_attempts` | `3` | `retries` |
 * | `retry_delay_seconds` | `2` | `retryDelay` (ms) |
 * | `cleanup_stale_locks` | `true` | `cleanupStaleLocks` |
 * | `stale_threshold_hours` | `1` | `staleAfter` (ms) |
 *
 * A missing section gives the defaults. An unknown key is a warning naming it
 * and the file; a value of the wrong type is a {@linkcode ConfigError}.
 *
 * Requires `--allow-read`.
 *
 * @param path The config file.
 * @param options Where warnings go.
 * @returns The settings.
 * @throws {ConfigError} If the file cannot be read or parsed, or a value has
 *   the wrong type or is negative.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadLockingConfig } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(
 *   `${dir}/config.yaml`,
 *   "file_locking:\n  timeout_seconds: 5\n",
 * );
 * const config = await loadLockingConfig(`${dir}/config.yaml`);
 * assert.ok(config.lockTimeout === 5_000 && config.retries === 3);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadLockingConfig(
  path: string | URL,
  options: LoadConfigOptions = {},
): Promise<LockingConfig> {
  const file = _toPath(path);
  const warn = options.onWarning ?? ((message) => console.warn(message));
  const document = await _parseConfig(file, await _readConfig(file));
  if (document !== null && document !== undefined && !_isObject(document)) {
    throw new ConfigError(
      file,
      undefined,
      `Cannot use config '${file}': expected a mapping of sections at the top level`,
    );
  }
  const section = _isObject(document) ? document.file_locking : undefined;
  const values: Record<string, unknown> = { ..._DEFAULTS };
  if (section !== undefined && section !== null) {
    if (!_isObject(section)) {
      throw new ConfigError(
        file,
        "file_locking",
        `Cannot use config '${file}': file_locking must be a mapping of keys such as timeout_seconds`,
      );
    }
    for (const [key, value] of Object.entries(section)) {
      if (!(key in _KEYS)) {
        warn(
          `Unknown key file_locking.${key} in '${file}' ignored; expected one of ${
            Object.keys(_KEYS).join(", ")
          }`,
        );
        continue;
      }
      values[key] = _check(file, key as keyof typeof _KEYS, value);
    }
  }
  const v = values as typeof _DEFAULTS;
  return {
    lock: v.enabled,
    lockTimeout: v.timeout_seconds * 1000,
    retries: v.retry_attempts,
    retryDelay: v.retry_delay_seconds * 1000,
    cleanupStaleLocks: v.cleanup_stale_locks,
    staleAfter: v.stale_threshold_hours * 3_600_000,
  };
}

async function _readConfig(file: string): Promise<Uint8Array> {
  let bytes;
  try {
    bytes = await _readFile(file);
  } catch (error) {
    throw new ConfigError(
      file,
      undefined,
      `Cannot read config '${file}': ${
        (error as Error).message
      }; check the path and its permissions`,
      { cause: error },
    );
  }
  if (bytes === null) {
    throw new ConfigError(
      file,
      undefined,
      `Cannot read config '${file}': no such file; check the path`,
    );
  }
  return bytes;
}

/** The config's document: JSON when the name ends in `.json`, else YAML. */
async function _parseConfig(file: string, bytes: Uint8Array): Promise<unknown> {
  const json = file.toLowerCase().endsWith(".json");
  let yaml: typeof import("yaml") | undefined;
  if (!json) {
    try {
      // Loaded on first use: most programs never read a YAML config, and the
      // parser would add to every start.
      yaml = await import("yaml");
    } catch (error) {
      throw new ConfigError(
        file,
        undefined,
        `Cannot read YAML config '${file}': the yaml package cannot be loaded (${
          (error as Error).message.split("\n")[0]
        }); install it (npm install yaml) or use a JSON config`,
        { cause: error },
      );
    }
  }
  try {
    const text = new TextDecoder().decode(bytes);
    // YAML 1.1, as the seeds' PyYAML reads it: merge keys (<<: *defaults),
    // 010 is octal, yes/no/on/off are booleans, 1_000 and 1:30 (sexagesimal)
    // are numbers, and a repeated key takes the last value.
    return json ? JSON.parse(text) : yaml!.parse(text, {
      version: "1.1",
      merge: true,
      uniqueKeys: false,
    });
  } catch (error) {
    throw new ConfigError(
      file,
      undefined,
      `Cannot parse config '${file}': ${
        (error as Error).message.split("\n")[0]
      }; fix the syntax`,
      { cause: error },
    );
  }
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function _check(file: string, key: keyof typeof _KEYS, value: unknown) {
  const kind = _KEYS[key];
  const bad = (expected: string): never => {
    throw new ConfigError(
      file,
      `file_locking.${key}`,
      `Cannot use file_locking.${key} = ${
        JSON.stringify(value)
      } in '${file}': expected ${expected}`,
    );
  };
  if (kind === "boolean") {
    if (typeof value !== "boolean") bad("true or false");
    return value;
  }
  if (kind === "count") {
    if (!Number.isInteger(value) || (value as number) < 0) {
      bad("a whole number of at least 0");
    }
    return value;
  }
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    bad(`a number of ${kind} of at least 0`);
  }
  return value;
}
