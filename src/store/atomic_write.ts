// Durable atomic replace: temp file, fsync, rename, fsync the directory.

import { basename, dirname } from "node:path";
import { _toPath } from "../runtime/mod.ts";
import { _atomicReplace } from "./atomic.ts";

/** How {@linkcode atomicWriteFile} writes. */
export interface AtomicWriteOptions {
  /**
   * `true`: fsync the file before the rename and the directory after it, so
   * the new content survives a power loss once the promise resolves. `false`:
   * skip both fsyncs; the replace is still atomic and survives a crash of the
   * process, but not of the machine.
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * Permission bits of the new file, given exactly (the umask does not
   * apply). Without it, a replaced file's mode is kept, and a new file gets
   * `0o666` less the process umask, as `touch` makes one (`0o664` under
   * umask `002`).
   *
   * @default {the replaced file's mode, else 0o666 less the umask}
   */
  mode?: number;
}

const _encoder = new TextEncoder();
let _counter = 0;

/**
 * Replaces a file's content atomically: readers see the old bytes or the new,
 * never a mix, and a crash leaves one or the other.
 *
 * It writes a uniquely named temp file in the same directory (exclusive
 * create), fsyncs it, renames it over `path` and fsyncs the directory, and
 * only then resolves. On any failure the temp file is removed, `path` is left
 * as it was, and the promise rejects. A `path` that is a symlink or a
 * directory is refused. Requires `--allow-read` and `--allow-write`.
 *
 * It takes no lock: concurrent writers each replace the whole file, and the
 * last rename wins. Use {@linkcode JsonStore} for read-modify-write.
 *
 * @param path The file to replace (created if missing).
 * @param data The new content; a string is written as UTF-8.
 * @param options Durability and permission bits.
 * @returns A promise that resolves once the content is in place (and durable,
 *   with `durable: true`).
 * @throws {StoreError} If the write, an fsync or the rename fails, or `path`
 *   is a symlink or a directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { atomicWriteFile } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await atomicWriteFile(`${dir}/config.json`, '{"ok":true}\n');
 * assert.ok((await Deno.readTextFile(`${dir}/config.json`)).includes("ok"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function atomicWriteFile(
  path: string | URL,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const target = _toPath(path);
  const bytes = typeof data === "string" ? _encoder.encode(data) : data;
  const unique = `${Date.now().toString(36)}${(++_counter).toString(36)}${
    Math.random().toString(36).slice(2, 8)
  }`;
  await _atomicReplace(target, bytes, {
    durable: options.durable ?? true,
    mode: options.mode,
    tempPath: `${dirname(target)}/.${basename(target)}.tmp-${unique}`,
    staleTemp: false,
  });
}
