// JSON Lines logs: whole-line appends from many processes, and reads that
// report damage instead of hiding it.

import { _parsePython, _toPython } from "./python_json.ts";
import { _toPath } from "../runtime/mod.ts";
import { _appendHoldingLock, _readStoreFile } from "./atomic.ts";
import { withLock } from "../lock/with_lock.ts";

/** How {@linkcode appendJsonl} appends. */
export interface AppendJsonlOptions {
  /**
   * `true`: `fdatasync` the log (and its directory when the append created
   * it) before resolving, so the lines survive a power loss. `false`: they
   * survive a crash of the process, not of the machine.
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * The lock file that serializes appends.
   *
   * @default {`${path}.lock`}
   */
  lockPath?: string | URL;
  /**
   * How long to wait for the lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * `"python"`: each line as Python's `json.dumps(record, ensure_ascii=...)`
   * writes it (`", "` and `": "` between items, `NaN` and `Infinity` as
   * such), for a log Python programs share.
   *
   * @default {"json"}
   */
  format?: "json" | "python";
  /**
   * With `format: "python"`: escape non-ASCII characters, as Python's
   * default `ensure_ascii=True` does.
   *
   * @default {true}
   */
  ensureAscii?: boolean;
}

/** What {@linkcode readJsonl} found in a log. */
export interface JsonlContents<T> {
  /** Every whole line that parsed, in order. */
  records: T[];
  /** 1 if the last line was cut short (a write that never finished), else 0. */
  torn: number;
  /** Whole lines that did not parse, with their 1-based line numbers. */
  invalid: { line: number; text: string }[];
}

/**
 * Appends records to a JSON Lines file, one line each, in a single write
 * under the file's lock, so lines from concurrent processes never interleave.
 *
 * If the file ends in a line cut short by a crash, a newline is written first
 * so that the new records stay whole (the cut line is then reported by
 * {@linkcode readJsonl} as invalid, not lost silently). Requires
 * `--allow-read` and `--allow-write`.
 *
 * @param path The log file (created if missing).
 * @param records The values to append; each must be JSON-serializable.
 * @param options Durability, locking, and the line format.
 * @returns A promise that resolves once the lines are written (and durable,
 *   with `durable: true`).
 * @throws {TypeError} If a record cannot be represented as JSON (a BigInt, a
 *   cycle, `undefined`); nothing is written.
 * @throws {StoreError} If the file cannot be written.
 * @throws {LockTimeoutError} If the lock could not be taken in time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { appendJsonl, readJsonl } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await appendJsonl(`${dir}/audit.jsonl`, [{ action: "save" }]);
 * const { records } = await readJsonl(`${dir}/audit.jsonl`);
 * assert.ok(records.length === 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function appendJsonl(
  path: string | URL,
  records: unknown[],
  options: AppendJsonlOptions = {},
): Promise<void> {
  if (!Array.isArray(records)) {
    throw new TypeError(
      "Cannot append to a JSONL log: records must be an array",
    );
  }
  const target = _toPath(path);
  let text = "";
  for (const [i, record] of records.entries()) {
    let line: string | undefined;
    try {
      line = options.format === "python"
        ? _toPython(record, null, options.ensureAscii ?? true)
        : JSON.stringify(record);
    } catch (error) {
      throw new TypeError(
        `Cannot append record ${i} to '${target}': it is not JSON (${
          (error as Error).message
        })`,
        { cause: error },
      );
    }
    if (line === undefined) {
      throw new TypeError(
        `Cannot append record ${i} to '${target}': ${typeof record} is not JSON`,
      );
    }
    text += line + "\n";
  }
  if (text === "") return;
  await withLock(
    target,
    () => _appendHoldingLock(target, text, options.durable ?? true),
    { lockPath: options.lockPath, timeout: options.lockTimeout ?? 30_000 },
  );
}

/**
 * Reads a JSON Lines file without taking a lock. A missing file is an empty
 * log. A last line without its newline (a write that never finished) is left
 * out and counted in `torn`; a whole line that does not parse is listed in
 * `invalid`, never skipped silently. Blank lines are ignored.
 *
 * Requires `--allow-read`.
 *
 * @param path The log file.
 * @param options `format: "python"` reads lines Python wrote with `NaN` and
 *   `Infinity` in them, and keeps their number text and key order.
 * @returns The records, the torn count and the invalid lines.
 * @throws {StoreError} If the file cannot be read (a directory, no permission).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonl } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/log.jsonl`, '{"a":1}\nnot json\n{"b":');
 * const { records, torn, invalid } = await readJsonl(`${dir}/log.jsonl`);
 * assert.ok(records.length === 1 && torn === 1 && invalid[0].line === 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readJsonl<T = unknown>(
  path: string | URL,
  options: { format?: "json" | "python" } = {},
): Promise<JsonlContents<T>> {
  const parse = options.format === "python" ? _parsePython : JSON.parse;
  const target = _toPath(path);
  const bytes = await _readStoreFile(target);
  const result: JsonlContents<T> = { records: [], torn: 0, invalid: [] };
  if (bytes === null || bytes.length === 0) return result;
  const lines = new TextDecoder().decode(bytes).split("\n");
  const last = lines.pop()!;
  if (last !== "") result.torn = 1;
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    try {
      result.records.push(parse(line) as T);
    } catch {
      result.invalid.push({ line: i + 1, text: line });
    }
  }
  return result;
}
