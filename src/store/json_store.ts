// JsonStore: a JSON document on disk that many processes read and change,
// with locked read-modify-write, durable atomic replace, backups, fencing,
// and corrupt-file handling that never loses data.

import {
  _link,
  _lstat,
  _readFile,
  _removeIfExists,
  _rename,
  _toPath,
} from "../runtime/mod.ts";
import {
  _checkTarget,
  _quarantineAside,
  _readStoreFile,
  _replaceHoldingLock,
} from "./_atomic.ts";
import { _fsError } from "../base/_fs_errors.ts";
import { type _Parsed, _parseJson, _toJson } from "./_json.ts";
import { _Journal } from "./_journal.ts";
import {
  type CorruptStoreError,
  StaleFenceError,
  StoreError,
} from "../base/errors.ts";
import { _checkBlockingWait, _checkTimeout } from "../lock/_kernel.ts";
import { FileLock } from "../lock/file_lock.ts";
import { _lockInternals } from "../lock/_lock_internals.ts";
import { _hasJournal } from "./_store_mode.ts";

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
   * `<path>.bak.N`.
   *
   * @default {0}
   */
  backups?: number;
  /**
   * Checks a value read from or about to be written to the file; throw to
   * reject it. What it returns is what the store uses.
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

type _Loaded<T> =
  | { ok: true; value: T; exists: boolean }
  | Extract<_Parsed<T>, { ok: false }>;

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
export class JsonStore<T> implements DocumentBackend<T> {
  /** The store file. */
  readonly path: string;
  /** The lock file. */
  readonly lockPath: string;
  #initial: T | (() => T);
  #durable: boolean;
  #backups: number;
  #validate: ((value: unknown) => T) | undefined;
  #lockTimeout: number;
  #blockingLock: boolean;
  #onCorrupt: "throw" | "quarantine";
  #indent: number;
  #warn: (message: string) => void;
  #journal: _Journal<T> | undefined;

  /**
   * Creates a JsonStore.
   *
   * @param path The store file (created on the first write).
   * @param options The initial value and how to read and write.
   * @throws {TypeError} If `initial` is missing, `onCorrupt` is unknown, or
   *   `blockingLock` comes with a `lockTimeout` other than `Infinity` or 0.
   * @throws {RangeError} If `backups`, `indent` or `lockTimeout` is out of range.
   */
  constructor(path: string | URL, options: JsonStoreOptions<T>) {
    if (options === undefined || !("initial" in options)) {
      throw new TypeError(
        "Cannot create a JsonStore without options.initial: the value while the file does not exist",
      );
    }
    this.path = _toPath(path);
    this.lockPath = options.lockPath === undefined
      ? `${this.path}.lock`
      : _toPath(options.lockPath);
    const backups = options.backups ?? 0;
    if (!Number.isInteger(backups) || backups < 0 || backups > 1000) {
      throw new RangeError(
        `Cannot use backups ${backups}: expected an integer from 0 to 1000`,
      );
    }
    const indent = options.indent ?? 2;
    if (!Number.isInteger(indent) || indent < 0 || indent > 10) {
      throw new RangeError(
        `Cannot use indent ${indent}: expected an integer from 0 to 10`,
      );
    }
    const lockTimeout = _checkTimeout(
      options.lockTimeout,
      "lockTimeout",
      30_000,
    );
    const blockingLock = options.blockingLock === true;
    if (blockingLock) {
      _checkBlockingWait("blockingLock", "lockTimeout", lockTimeout, undefined);
    }
    const onCorrupt = options.onCorrupt ?? "throw";
    if (onCorrupt !== "throw" && onCorrupt !== "quarantine") {
      throw new TypeError(
        `Cannot use onCorrupt "${onCorrupt}": expected "throw" or "quarantine"`,
      );
    }
    this.#initial = options.initial;
    this.#durable = options.durable ?? true;
    this.#backups = backups;
    this.#validate = options.validate;
    this.#lockTimeout = lockTimeout;
    this.#blockingLock = blockingLock;
    this.#onCorrupt = onCorrupt;
    this.#indent = indent;
    this.#warn = options.onWarning ?? ((message) => console.warn(message));
    const compactAt = options.compactAt;
    if (
      compactAt !== undefined &&
      (typeof compactAt !== "number" || !(compactAt >= 0))
    ) {
      throw new RangeError(
        `Cannot use compactAt ${compactAt}: expected a number of bytes of at least 0`,
      );
    }
    if (options.journal) {
      this.#journal = new _Journal<T>({
        path: this.path,
        durable: this.#durable,
        compactAt,
        onCorrupt,
        validate: this.#validate,
        initial: () => this.#initialValue(),
        serialize: (value) => this.#serialize(value),
        parse: (bytes) => this.#parse(bytes),
        locked: (fn, o) => this.#locked(fn, o),
        checkFence: (fence) => this.#checkFence(fence),
        writeFence: (fence) => this.#replace(this.#fencePath, `${fence}\n`),
        rotateBackups: () => {
          if (this.#backups > 0) this.#rotateBackups();
        },
        replaceSnapshot: (text) => this.#replace(this.path, text),
        quarantineSnapshot: async (error) =>
          (await this.#quarantine(error)).value,
        warn: this.#warn,
      });
    }
  }

  /**
   * Reads a consistent snapshot of the document without taking the lock
   * (writes are atomic renames, so a reader sees one whole version).
   *
   * If the file does not parse, it is read again under a shared lock, in case
   * a tool that writes in place (such as the Python seed systems) was caught
   * mid-write; only then is it corrupt.
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
  async read(): Promise<T> {
    if (this.#journal) return await this.#journal.read();
    const loaded = await this.#load();
    if (loaded.ok) return loaded.value;
    const quarantine = this.#onCorrupt === "quarantine";
    return await this.#locked(
      async () => (await this.#loadLocked()).value,
      { shared: !quarantine },
    );
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
    if (this.#journal) {
      return await this.#journal.change(async (value) => {
        const result = await fn(value);
        return { replace: false, value, result };
      }, options);
    }
    return await this.#change(async (value) => {
      const result = await fn(value);
      return { value, result };
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
    if (this.#journal) {
      return await this.#journal.change(async (current) => {
        const value = await fn(current);
        return { replace: true, value, result: value };
      }, options);
    }
    return await this.#change(async (current) => {
      const value = await fn(current);
      return { value, result: value };
    }, options);
  }

  async #change<R>(
    fn: (data: T) => Promise<{ value: T; result: R }>,
    options: StoreWriteOptions,
  ): Promise<R> {
    return await this.#locked(async () => {
      const { value, exists } = await this.#loadLocked();
      const highest = await this.#checkFence(options.fence);
      const before = exists ? this.#serialize(value) : undefined;
      const next = await fn(value);
      await this.#commit(next.value, before, options.fence, highest);
      return next.result;
    }, { signal: options.signal });
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
    if (this.#journal) {
      return this.#journal.change(
        () => Promise.resolve({ replace: true, value, result: undefined }),
        options,
      );
    }
    return this.#locked(async () => {
      await this.#loadLocked();
      const highest = await this.#checkFence(options.fence);
      await this.#commit(value, undefined, options.fence, highest);
    }, { signal: options.signal });
  }

  async #locked<R>(
    fn: () => Promise<R>,
    options: { shared?: boolean; signal?: AbortSignal },
  ): Promise<R> {
    const lock = await FileLock.acquire(this.path, {
      lockPath: this.lockPath,
      timeout: this.#lockTimeout,
      blocking: this.#blockingLock,
      shared: options.shared,
      signal: options.signal,
    });
    try {
      return await _lockInternals.runHolding(lock, fn);
    } finally {
      await lock.release();
    }
  }

  #initialValue(): T {
    const initial = this.#initial;
    return typeof initial === "function"
      ? (initial as () => T)()
      : structuredClone(initial);
  }

  #parse(bytes: Uint8Array, path = this.path): _Loaded<T> {
    const parsed = _parseJson(bytes, path, this.#validate);
    return parsed.ok ? { ...parsed, exists: true } : parsed;
  }

  async #load(): Promise<_Loaded<T>> {
    _checkTarget(this.path, "read");
    // Updates made in journal mode live in the journal until a compaction
    // folds them in: the file alone is an old version, and a whole-file
    // write would orphan them. (Checked under the lock for writes; journal
    // writers take the same lock.)
    if (_hasJournal(this.path)) {
      throw new StoreError(
        this.path,
        `Cannot use '${this.path}' as a whole file: '${this.path}.journal' beside it holds updates made in journal mode; open it with { journal: true } (the lockbox store commands do so on their own)`,
      );
    }
    const bytes = await _readStoreFile(this.path);
    if (bytes === null) {
      return { ok: true, value: this.#initialValue(), exists: false };
    }
    return this.#parse(bytes);
  }

  /** Loads under the lock, applying `onCorrupt`. */
  async #loadLocked(): Promise<{ value: T; exists: boolean }> {
    const loaded = await this.#load();
    if (loaded.ok) return loaded;
    if (this.#onCorrupt === "throw") throw loaded.error;
    return await this.#quarantine(loaded.error);
  }

  async #quarantine(
    error: CorruptStoreError,
  ): Promise<{ value: T; exists: boolean }> {
    let destination: string;
    try {
      destination = _quarantineAside(this.path);
    } catch (error) {
      throw _fsError("quarantine corrupt store", this.path, error);
    }
    let value: T | undefined;
    let source = "the initial value";
    for (let i = 1; i <= this.#backups && value === undefined; i++) {
      const backup = `${this.path}.bak.${i}`;
      // A backup that cannot be read is no candidate; the next one may be.
      const bytes = await _readFile(backup).catch(() => null);
      if (bytes === null) continue;
      const parsed = this.#parse(bytes, backup);
      if (parsed.ok) {
        value = parsed.value;
        source = `backup '${backup}'`;
      }
    }
    value ??= this.#initialValue();
    await this.#replace(this.path, this.#serialize(value));
    this.#warn(
      `${
        error.message.split(";")[0]
      }; moved its bytes to '${destination}' and continued from ${source}`,
    );
    return { value, exists: true };
  }

  #serialize(value: unknown): string {
    return _toJson(value, this.#indent, this.path);
  }

  get #fencePath(): string {
    return `${this.path}.fence`;
  }

  /** The highest fence applied so far; throws if `fence` is older. */
  async #checkFence(fence: number | undefined): Promise<number> {
    if (fence === undefined) return -Infinity;
    if (!Number.isSafeInteger(fence) || fence < 0) {
      throw new RangeError(
        `Cannot use fence ${fence}: expected a non-negative integer such as FileLock.token`,
      );
    }
    const bytes = await _readStoreFile(this.#fencePath);
    const highest = bytes === null
      ? -Infinity
      : Number(new TextDecoder().decode(bytes).trim());
    if (Number.isNaN(highest)) {
      throw new StoreError(
        this.#fencePath,
        `Cannot read the fence of '${this.path}': '${this.#fencePath}' does not hold a number; repair or remove it`,
      );
    }
    if (fence < highest) throw new StaleFenceError(this.path, fence, highest);
    return highest;
  }

  async #commit(
    value: T,
    before: string | undefined,
    fence: number | undefined,
    highest: number,
  ): Promise<void> {
    const checked = this.#validate ? this.#validate(value) : value;
    const text = this.#serialize(checked);
    if (text === before) return;
    // The fence goes first: if we die between the two writes, the fence has
    // moved on and the change (never acknowledged) is simply not there.
    if (fence !== undefined && fence > highest) {
      await this.#replace(this.#fencePath, `${fence}\n`);
    }
    if (this.#backups > 0) this.#rotateBackups();
    await this.#replace(this.path, text);
  }

  #rotateBackups(): void {
    const name = (i: number) => `${this.path}.bak.${i}`;
    try {
      if (!_exists(this.path)) return;
      _removeIfExists(name(this.#backups));
      for (let i = this.#backups - 1; i >= 1; i--) {
        if (_exists(name(i))) _rename(name(i), name(i + 1));
      }
      // A hard link keeps the current bytes as backup 1 for free; the atomic
      // replace then moves only the store's own name to the new version.
      _link(this.path, name(1));
    } catch (error) {
      throw _fsError(
        "rotate the backups of",
        this.path,
        error,
        "; nothing was written",
      );
    }
  }

  #replace(path: string, text: string): Promise<void> {
    return _replaceHoldingLock(path, text, this.#durable);
  }
}

function _exists(path: string): boolean {
  return _lstat(path) !== null;
}

/**
 * What a domain module needs from its store: the small interface
 * {@linkcode JsonStore} implements, so another backend can slot in.
 */
export interface DocumentBackend<T> {
  /** A consistent snapshot. */
  read(): Promise<T>;
  /** A locked read-modify-write; `fn` changes the document in place. */
  update<R>(
    fn: (data: T) => R | Promise<R>,
    options?: StoreWriteOptions,
  ): Promise<R>;
  /** Replaces the document. */
  write(value: T, options?: StoreWriteOptions): Promise<void>;
}
