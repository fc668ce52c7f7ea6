// JsonStore: a JSON document on disk that many processes read and change,
// with locked read-modify-write, durable atomic replace, backups, fencing,
// and corrupt-file handling that never loses data.

import { _checkBlockingWait, _checkTimeout } from "../base/checks.ts";
import { _toPath } from "../runtime/mod.ts";
import {
  _checkBackups,
  _checkOnCorrupt,
  type _JsonStoreStorage,
  _STORAGE,
  type _Storage,
} from "./json_store_storage.ts";
import { _Journal } from "./_journal.ts";
import { _StoreFiles, type _StoreSettings } from "./_store_files.ts";
import { _WholeFile } from "./_whole_file.ts";
import {
  _checkRecheck,
  type StoreVersion,
  type WatchOptions,
} from "./watch.ts";

export type { StoreVersion, WatchOptions };

/** How a {@linkcode JsonStore} reads and writes its file. */
export interface JsonStoreOptions<T> {
  /** The value while the file does not exist (a function is called each time). */
  initial: T | (() => T);
  /**
   * `true`: every write fsyncs the new file before renaming it into place and
   * fsyncs the directory after, so a resolved `update` survives a power loss.
   * `false`: skip both fsyncs; writes are still atomic and survive a crash of
   * the process, not of the machine.
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * How many previous versions to keep, as `<path>.bak.1` (newest) to
   * `<path>.bak.N`. Whole-file mode only.
   *
   * @default {0}
   */
  backups?: number;
  /**
   * Checks a value read from or about to be written to the file; throw to
   * reject it. What it returns is what the store uses and writes. In journal
   * mode, change the document only in a copy it returns: a change made in
   * place to the value it is given is not recorded.
   */
  validate?: (value: unknown) => T;
  /**
   * How long `update` and `write` wait for the lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * Wait for the lock by blocking this thread (FileLock's `blocking`): a
   * faster hand-off between processes that update the store in turn, but
   * nothing else runs in this thread while it waits. Needs
   * `lockTimeout: Infinity` or `0` (a blocked thread cannot time out), and then
   * `update`, `transform` and `write` take no `signal`. For worker processes
   * and scripts that only work on the store.
   *
   * @default {false}
   */
  blockingLock?: boolean;
  /**
   * What to do with a file that does not parse or validate: `"throw"` a
   * `CorruptStoreError` and leave the file as it is, or `"quarantine"`: move
   * its bytes to `<path>.corrupt-<timestamp>`, continue from the newest backup
   * that parses and validates (else `initial`), and warn.
   *
   * @default {"throw"}
   */
  onCorrupt?: "throw" | "quarantine";
  /**
   * JSON indentation, in spaces.
   *
   * @default {2}
   */
  indent?: number;
  /**
   * The lock file.
   *
   * @default {`${path}.lock`}
   */
  lockPath?: string | URL;
  /**
   * Journal mode: each update appends one line recording its change to
   * `<path>.journal` (with one `fdatasync` when durable) instead of rewriting
   * the file, so its cost does not grow with the document. The file at
   * `path` stays a valid JSON document, as of the last compaction; readers
   * through lockbox see every update. Only for stores that lockbox alone
   * writes: another tool writing `path` would make the journal refuse it.
   *
   * @default {false}
   */
  journal?: boolean;
  /**
   * Journal mode: the journal's size in bytes past which an update folds it
   * into a new snapshot (a durable atomic replace of `path`).
   *
   * @default {the larger of 1 MiB and the snapshot's size}
   */
  compactAt?: number;
  /**
   * `"python"`: read and write the file as Python's `json` module does, for
   * a file shared with Python programs. A write is byte for byte what
   * `json.dump(value, f, indent=indent, ensure_ascii=ensureAscii)` writes,
   * and values read from the file keep their number text (big integers,
   * `1.0`, `1e-07`, `-0.0`), `NaN`/`Infinity` and key order while they are
   * unchanged (JavaScript would move keys such as `"10"` first). Whole-file
   * mode only.
   *
   * @default {"json"}
   */
  format?: "json" | "python";
  /**
   * With `format: "python"`: escape every non-ASCII character as `\uXXXX`,
   * as Python's `ensure_ascii=True` (its default) does.
   *
   * @default {true}
   */
  ensureAscii?: boolean;
  /**
   * Keep the lock file (and in journal mode the journal) open between
   * calls, so that back-to-back calls skip opening them again, until
   * {@linkcode JsonStore.close} (or `await using`) closes them. Without it,
   * every call closes what it opened before its promise settles, so a
   * file system can be unmounted (or, on Windows, a file removed) right
   * after an `await`.
   *
   * @default {false}
   */
  keepOpen?: boolean;
  /**
   * Receives warnings (a quarantined file).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
}

/** Options of {@linkcode JsonStore.update} and {@linkcode JsonStore.write}. */
export interface StoreWriteOptions {
  /**
   * A fencing token (such as `FileLock.token`): the write is refused with
   * `StaleFenceError` if a higher fence was already applied to this store.
   */
  fence?: number;
  /** Gives up waiting for the lock; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * Checks the options of a store on files (the first bad one throws) and
 * gives the settings of its files.
 */
function _checkFileOptions<T>(
  options: JsonStoreOptions<T>,
): Omit<_StoreSettings<T>, "path" | "lockPath"> {
  const backups = _checkBackups(options.backups ?? 0);
  const indent = options.indent ?? 2;
  if (!Number.isInteger(indent) || indent < 0 || indent > 10) {
    throw new RangeError(
      `Cannot use indent ${indent}: expected an integer from 0 to 10`,
    );
  }
  const lockTimeout = _checkTimeout(options.lockTimeout, "lockTimeout", 30_000);
  const blockingLock = options.blockingLock === true;
  if (blockingLock) {
    _checkBlockingWait("blockingLock", "lockTimeout", lockTimeout, undefined);
  }
  const onCorrupt = _checkOnCorrupt(options.onCorrupt ?? "throw");
  const compactAt = options.compactAt;
  if (
    compactAt !== undefined &&
    (typeof compactAt !== "number" || !(compactAt >= 0))
  ) {
    throw new RangeError(
      `Cannot use compactAt ${compactAt}: expected a number of bytes of at least 0`,
    );
  }
  const format = options.format ?? "json";
  if (format !== "json" && format !== "python") {
    throw new TypeError(
      `Cannot use format "${format}": expected "json" or "python"`,
    );
  }
  if (backups > 0 && options.journal) {
    throw new TypeError(
      "Cannot keep backups in journal mode: backups are kept by whole-file stores, whose every write replaces the file; use one or the other",
    );
  }
  if (format === "python" && options.journal) {
    throw new TypeError(
      'Cannot use format "python" in journal mode: the journal is lockbox\'s own format, for stores only lockbox reads',
    );
  }
  return {
    initial: options.initial,
    durable: options.durable ?? true,
    backups,
    validate: options.validate,
    lockTimeout,
    blockingLock,
    onCorrupt,
    indent,
    warn: options.onWarning ?? ((message) => console.warn(message)),
    python: format === "python"
      ? { ensureAscii: options.ensureAscii ?? true }
      : null,
    keepOpen: options.keepOpen === true,
  };
}

/**
 * A JSON document in a file, shared safely by any number of processes.
 *
 * `update` holds the file's exclusive lock from the read to the rename, so
 * concurrent updates never lose each other's changes. Every write is an
 * atomic replace (durable by default). A file that does not parse or
 * validate is never silently replaced.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example Count from many processes
 * ```ts
 * import assert from "node:assert/strict";
 * import { JsonStore } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const store = new JsonStore(`${dir}/state.json`, {
 *   initial: { count: 0, items: [] as string[] },
 * });
 * await store.update((data) => {
 *   data.count++;
 *   data.items.push("first");
 * });
 * assert.ok((await store.read()).count === 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class JsonStore<T> implements AsyncDisposable {
  /** The store file (on PostgreSQL: the document's name). */
  readonly path: string;
  /** The lock file (on PostgreSQL: the name of the lock that fences it). */
  readonly lockPath: string;
  #storage: _JsonStoreStorage<T>;

  /**
   * Creates a JsonStore.
   *
   * @param path The store file (created on the first write).
   * @param options The initial value and how to read and write.
   * @throws {TypeError} If `initial` is missing, `onCorrupt` or `format` is
   *   unknown, `blockingLock` comes with a `lockTimeout` other than
   *   `Infinity` or 0, or `journal` comes with `backups` or
   *   `format: "python"`.
   * @throws {RangeError} If `backups`, `indent`, `lockTimeout` or
   *   `compactAt` is out of range.
   */
  constructor(path: string | URL, options: JsonStoreOptions<T>) {
    if (options === undefined || !("initial" in options)) {
      throw new TypeError(
        "Cannot create a JsonStore without options.initial: the value while the file does not exist",
      );
    }
    const storage = (options as { [_STORAGE]?: _Storage<T> })[_STORAGE];
    if (storage !== undefined) {
      this.path = storage.path;
      this.lockPath = storage.lockPath;
      this.#storage = storage.document;
      return;
    }
    this.path = _toPath(path);
    this.lockPath = options.lockPath === undefined
      ? `${this.path}.lock`
      : _toPath(options.lockPath);
    const files = new _StoreFiles<T>({
      path: this.path,
      lockPath: this.lockPath,
      ..._checkFileOptions(options),
    });
    this.#storage = options.journal
      ? new _Journal<T>(files, options.compactAt)
      : new _WholeFile<T>(files);
  }

  /**
   * Reads a consistent snapshot of the document without taking the lock
   * (writes are atomic renames, so a reader sees one whole version).
   *
   * If the file does not parse, it is read again under a shared lock, in case
   * a tool that writes in place (such as the Python seed systems) was caught
   * mid-write; only then is it corrupt (with `onCorrupt: "quarantine"` the
   * second read takes the exclusive lock, to quarantine). In journal mode, a
   * read that keeps meeting compactions half way, or finds an unfinished
   * one or damage, is made again under the exclusive lock.
   *
   * @returns The document, or `initial` while the file does not exist.
   * @throws {CorruptStoreError} If the file does not parse or validate (with
   *   `onCorrupt: "throw"`).
   * @throws {StoreError} If the path is a directory or a symlink, or unreadable.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const store = new JsonStore(`${dir}/s.json`, { initial: { n: 0 } });
   * assert.ok((await store.read()).n === 0);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  read(): Promise<T> {
    return this.#storage.read();
  }

  /**
   * Changes the document under the exclusive lock: reads it, calls `fn` to
   * change `data` in place, and writes it back (only if it changed) with an
   * atomic replace. If `fn` throws or rejects, nothing is written and the
   * error reaches the caller unchanged.
   *
   * @param fn Changes `data` in place; what it returns is returned.
   * @param options A fencing token and an abort signal.
   * @returns What `fn` returned.
   * @throws {StaleFenceError} If `options.fence` is older than one already applied.
   * @throws {CorruptStoreError} If the file does not parse or validate (with
   *   `onCorrupt: "throw"`).
   * @throws {TypeError} If the new value is not representable as JSON.
   * @throws {StoreError} If writing fails; the file is left as it was.
   * @throws {LockTimeoutError} If the lock was not free within `lockTimeout`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const store = new JsonStore(`${dir}/s.json`, { initial: { n: 0 } });
   * const n = await store.update((data) => ++data.n);
   * assert.ok(n === 1);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async update<R>(
    fn: (data: T) => R | Promise<R>,
    options: StoreWriteOptions = {},
  ): Promise<R> {
    if (typeof fn !== "function") {
      throw new TypeError("Cannot update a JsonStore: fn must be a function");
    }
    return await this.#storage.change(async (draft) => {
      const result = await fn(draft);
      return { replace: false, value: draft, result };
    }, options);
  }

  /**
   * Replaces the document with what `fn` returns, under the exclusive lock:
   * {@linkcode JsonStore.update} for code that builds a new value instead of
   * changing the old one in place. A value that serializes as the file
   * already is writes nothing; if `fn` throws, nothing is written.
   *
   * @param fn Returns the new document, given the current one.
   * @param options A fencing token and an abort signal.
   * @returns The new document.
   * @throws {StaleFenceError} If `options.fence` is older than one already applied.
   * @throws {CorruptStoreError} If the file does not parse or validate (with
   *   `onCorrupt: "throw"`).
   * @throws {StoreError} If writing fails; the file is left as it was.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const store = new JsonStore(`${dir}/s.json`, { initial: [1, 2] });
   * await store.transform((list) => list.filter((n) => n > 1));
   * assert.ok((await store.read()).length === 1);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async transform(
    fn: (data: T) => T | Promise<T>,
    options: StoreWriteOptions = {},
  ): Promise<T> {
    if (typeof fn !== "function") {
      throw new TypeError(
        "Cannot transform a JsonStore: fn must be a function",
      );
    }
    return await this.#storage.change(async (current) => {
      const value = await fn(current);
      return { replace: true, value, result: value };
    }, { ...options, replaces: true });
  }

  /**
   * Replaces the whole document under the exclusive lock.
   *
   * @param value The new document.
   * @param options A fencing token and an abort signal.
   * @returns A promise that resolves once the document is written.
   * @throws {StaleFenceError} If `options.fence` is older than one already applied.
   * @throws {CorruptStoreError} If the current file is corrupt (with
   *   `onCorrupt: "throw"`): it is never replaced silently.
   * @throws {TypeError} If the value is not representable as JSON.
   * @throws {StoreError} If writing fails; the file is left as it was.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const store = new JsonStore(`${dir}/s.json`, { initial: { n: 0 } });
   * await store.write({ n: 5 });
   * assert.ok((await store.read()).n === 5);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  write(value: T, options: StoreWriteOptions = {}): Promise<void> {
    return this.#storage.change(
      () => Promise.resolve({ replace: true, value, result: undefined }),
      { ...options, replaces: true },
    );
  }

  /**
   * Watches the document: yields the current version first, then each new
   * committed version made by any process (this one included), until
   * `signal` aborts or the loop stops (`break`), which releases everything
   * the watch holds. Versions may be coalesced when they come faster than
   * they are read, but the last one yielded once writes stop is the
   * store's final document.
   *
   * Files: the kernel's notifications on the store's directory (inotify),
   * plus a read every `recheckInterval` for file systems that send none
   * (NFS). PostgreSQL: `LISTEN`/`NOTIFY`, and a read after every reconnect.
   *
   * @param options The signal that ends it; the re-check interval.
   * @returns The versions, each `{ value, version }`.
   * @throws {RangeError} If `recheckInterval` is under 10 ms or over 2^31-1.
   * @throws {CorruptStoreError} If the document becomes corrupt (with
   *   `onCorrupt: "throw"`): the iteration throws.
   *
   * @example
   * ```ts ignore
   * const controller = new AbortController();
   * for await (const { value, version } of store.watch({ signal: controller.signal })) {
   *   console.log(version, value);
   * }
   * ```
   */
  watch(options: WatchOptions = {}): AsyncIterable<StoreVersion<T>> {
    return this.#storage.watch({
      signal: options.signal,
      recheckInterval: _checkRecheck(options.recheckInterval),
    });
  }

  /**
   * Forgets every fence applied to the store, under its exclusive lock, so
   * that the next fenced write is accepted whatever its token (and records
   * its fence anew). For a store fenced by mistake with a token that no
   * holder will reach, such as one from a lock that no longer guards it.
   * The CLI's `lockbox store reset-fence FILE` does the same.
   *
   * Fences of the two families of tokens are kept apart: FileLock's (2^50
   * and up) and counters' (below: a PostgreSQL lock's, or your own), so a
   * token of one family never refuses a write fenced by the other.
   *
   * @param options An abort signal for the wait for the lock.
   * @returns A promise that resolves once the fences are forgotten.
   * @throws {LockTimeoutError} If the lock was not free within `lockTimeout`.
   * @throws {StoreError} If the fence file cannot be removed.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore, StaleFenceError } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const store = new JsonStore(`${dir}/s.json`, { initial: { n: 0 } });
   * await store.write({ n: 1 }, { fence: 100 });
   * await assert.rejects(store.write({ n: 2 }, { fence: 7 }), StaleFenceError);
   * await store.resetFence();
   * await store.write({ n: 2 }, { fence: 7 });
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  resetFence(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#storage.resetFence(options);
  }

  /**
   * Closes the files a store made with `keepOpen` keeps open between calls
   * (its lock file, and in journal mode its journal). The store still
   * works afterwards, closing what each call opens before that call
   * settles; a call in flight closes its files as it settles. Without
   * `keepOpen` (and on PostgreSQL) there is nothing to close.
   *
   * @returns A promise that resolves once the kept files are closed.
   *
   * @example Keep the files open for a loop of updates
   * ```ts
   * import assert from "node:assert/strict";
   * import { JsonStore } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * {
   *   await using store = new JsonStore(`${dir}/s.json`, {
   *     initial: { n: 0 },
   *     journal: true,
   *     keepOpen: true,
   *   });
   *   for (let i = 0; i < 100; i++) await store.update((d) => void d.n++);
   *   assert.ok((await store.read()).n === 100);
   * } // closed here
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  close(): Promise<void> {
    return this.#storage.close?.() ?? Promise.resolve();
  }

  /** Closes the kept files: `await using store = new JsonStore(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
