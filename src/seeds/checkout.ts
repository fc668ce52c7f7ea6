// File checkout by user (seed 002): a registry of who is editing which file,
// so that only one user edits a file at a time.

import { isAbsolute, join, relative, sep } from "node:path";
import {
  _lstat,
  _readDir,
  _realPath,
  _statFollow,
  _toPath,
} from "../runtime/mod.ts";
import { _fsError } from "../base/fs_errors.ts";
import { _checkId, _own, _pythonUtcNow, _setOwn } from "../base/ids.ts";
import type { DbOptions } from "./_seed_db.ts";
import type {
  JsonStore,
  StoreVersion,
  WatchOptions,
} from "../store/json_store.ts";
import { _seedDb } from "./_seed_db.ts";
import { StoreError } from "../base/errors.ts";

/** Who has a file checked out: seed 002's registry entry. */
export interface CheckoutRecord {
  /** The user who checked the file out. */
  user: string;
  /** When, as an ISO 8601 string in UTC. */
  timestamp: string;
  /** Why (may be empty; `null` when a Python writer left it so). */
  message: string | null;
}

/** The registry file: `{"<file>": {user, timestamp, message}}`. */
export type CheckoutRegistryData = Record<string, CheckoutRecord>;

/**
 * The file is already checked out (by anyone, the caller included).
 *
 * @example
 * ```ts ignore
 * import { AlreadyCheckedOutError, CheckoutRegistry } from "@lockbox/lockbox";
 * try {
 *   await new CheckoutRegistry("checkouts.json").checkout("part.mcam", "ann");
 * } catch (error) {
 *   if (error instanceof AlreadyCheckedOutError) console.error(error.holder.user);
 * }
 * ```
 */
export class AlreadyCheckedOutError extends Error {
  /** Always `"AlreadyCheckedOutError"`. */
  override name = "AlreadyCheckedOutError";
  /**
   * Creates an AlreadyCheckedOutError.
   *
   * @param file The file asked for.
   * @param holder Who has it.
   */
  constructor(readonly file: string, readonly holder: CheckoutRecord) {
    super(
      `Cannot check out '${file}': already checked out by ${holder.user} since ${holder.timestamp}; ask them to check it in`,
    );
  }
}

/**
 * The file is not checked out, so it cannot be checked in.
 *
 * @example
 * ```ts ignore
 * import { CheckoutRegistry, NotCheckedOutError } from "@lockbox/lockbox";
 * try {
 *   await new CheckoutRegistry("checkouts.json").checkin("part.mcam", "ann");
 * } catch (error) {
 *   if (error instanceof NotCheckedOutError) console.error(error.file);
 * }
 * ```
 */
export class NotCheckedOutError extends Error {
  /** Always `"NotCheckedOutError"`. */
  override name = "NotCheckedOutError";
  /**
   * Creates a NotCheckedOutError.
   *
   * @param file The file asked for.
   */
  constructor(readonly file: string) {
    super(`Cannot check in '${file}': it is not checked out`);
  }
}

/**
 * Someone else has the file checked out, so this user cannot check it in.
 *
 * @example
 * ```ts ignore
 * import { CheckoutRegistry, NotOwnerError } from "@lockbox/lockbox";
 * try {
 *   await new CheckoutRegistry("checkouts.json").checkin("part.mcam", "bob");
 * } catch (error) {
 *   if (error instanceof NotOwnerError) console.error(error.owner);
 * }
 * ```
 */
export class NotOwnerError extends Error {
  /** Always `"NotOwnerError"`. */
  override name = "NotOwnerError";
  /**
   * Creates a NotOwnerError.
   *
   * @param file The file asked for.
   * @param user Who tried to check it in.
   * @param owner Who has it checked out.
   */
  constructor(
    readonly file: string,
    readonly user: string,
    readonly owner: string,
  ) {
    super(
      `Cannot check in '${file}' as ${user}: it is checked out by ${owner}; only ${owner} can check it in`,
    );
  }
}

function _validateRegistry(value: unknown): CheckoutRegistryData {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("expected an object of checkouts");
  }
  for (const [file, record] of Object.entries(value)) {
    const r = record as CheckoutRecord;
    // What seed 002 needs of an entry is its user (ownership is checked
    // against it); whatever else it holds is kept as it is.
    if (typeof r !== "object" || r === null || typeof r.user !== "string") {
      throw new TypeError(
        `entry '${file}' is not {user, timestamp, message}: it has no user`,
      );
    }
  }
  return value as CheckoutRegistryData;
}

/**
 * Seed 002's checkout registry on lockbox: which user has which file checked
 * out. The file keeps the seed's JSON shape (indented by 2); each checkout
 * and checkin is one locked read-modify-write, so two users can never both
 * win, and a corrupt registry is an error, never read as empty.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CheckoutRegistry } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const registry = new CheckoutRegistry(`${dir}/checkouts.json`);
 * await registry.checkout("part.mcam", "ann", "fixing holes");
 * assert.ok((await registry.holder("part.mcam"))?.user === "ann");
 * await registry.checkin("part.mcam", "ann");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class CheckoutRegistry {
  /** The registry file (with a backend: the document's name). */
  readonly registryPath: string;
  #store: JsonStore<CheckoutRegistryData>;

  /**
   * Creates a CheckoutRegistry.
   *
   * @param registryFile The registry file (created on the first checkout).
   * @param options Lock timeout, durability, backups, journal mode,
   *   backend.
   */
  constructor(registryFile: string | URL, options: DbOptions = {}) {
    const store = _seedDb<CheckoutRegistryData>(
      registryFile,
      _validateRegistry,
      options,
    );
    this.registryPath = store.path;
    this.#store = store;
  }

  /**
   * Checks `name` out to `user`, if nobody has it.
   *
   * @param name The file's name.
   * @param user Who takes it.
   * @param message Why (kept in the registry).
   * @returns The new record.
   * @throws {AlreadyCheckedOutError} If anyone has it checked out.
   * @throws {TypeError} If `name` or `user` is not a non-empty string.
   * @throws {CorruptStoreError} If the registry is corrupt (it is left untouched).
   */
  async checkout(
    name: string,
    user: string,
    message = "",
  ): Promise<CheckoutRecord> {
    _checkId(name, "file name");
    _checkId(user, "user");
    if (typeof message !== "string") {
      throw new TypeError(`Cannot use message ${message}: expected a string`);
    }
    return await this.#store.update((registry) => {
      const holder = _own(registry, name);
      if (holder !== undefined) throw new AlreadyCheckedOutError(name, holder);
      const record: CheckoutRecord = {
        user,
        timestamp: _pythonUtcNow(),
        message,
      };
      _setOwn(registry, name, record);
      return record;
    });
  }

  /**
   * Checks `name` back in; only the user who checked it out can.
   *
   * @param name The file's name.
   * @param user Who returns it.
   * @throws {NotCheckedOutError} If nobody has it checked out.
   * @throws {NotOwnerError} If someone else has it checked out.
   * @throws {CorruptStoreError} If the registry is corrupt (it is left untouched).
   */
  async checkin(name: string, user: string): Promise<void> {
    _checkId(name, "file name");
    _checkId(user, "user");
    await this.#store.update((registry) => {
      const holder = _own(registry, name);
      if (holder === undefined) throw new NotCheckedOutError(name);
      if (holder.user !== user) {
        throw new NotOwnerError(name, user, holder.user);
      }
      delete registry[name];
    });
  }

  /**
   * Who has `name` checked out.
   *
   * @param name The file's name.
   * @returns The record, or `undefined` if the file is available.
   */
  async holder(name: string): Promise<CheckoutRecord | undefined> {
    return _own(await this.#store.read(), name);
  }

  /**
   * Every checkout.
   *
   * @returns The registry's contents.
   */
  async list(): Promise<CheckoutRegistryData> {
    return await this.#store.read();
  }

  /**
   * Watches the registry: yields it now, then each new version any process
   * commits (see `JsonStore.watch`), until the signal aborts or the loop
   * stops.
   *
   * @param options The signal that ends it; the re-check interval.
   * @returns The registry's versions.
   */
  watch(
    options: WatchOptions = {},
  ): AsyncIterable<StoreVersion<CheckoutRegistryData>> {
    return this.#store.watch(options);
  }
}

/** Options of {@linkcode FileService}. */
export interface FileServiceOptions extends DbOptions {
  /**
   * The extension of the repository's files, matched case-insensitively.
   *
   * @default {".mcam"}
   */
  extension?: string;
}

/** One repository file and who has it, from {@linkcode FileService.filesWithStatus}. */
export interface FileStatus {
  /** The file's name in the repository. */
  name: string;
  /** Its size. */
  sizeBytes: number;
  /** When it was last modified. */
  modified: Date;
  /** Whether someone has it checked out. */
  status: "available" | "checked_out";
  /** Who has it, or `null`. */
  lockedBy: string | null;
}

/**
 * Seed 002's file service: the files of a repository directory with their
 * checkout status, and checkout and checkin of files that exist there.
 * Names that leave the repository (`..`, absolute paths, symlinks pointing
 * outside) are refused.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileService } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/repo`);
 * await Deno.writeTextFile(`${dir}/repo/part.MCAM`, "G0 X0");
 * const files = new FileService(`${dir}/repo`, `${dir}/checkouts.json`);
 * await files.checkout("part.MCAM", "ann");
 * const [part] = await files.filesWithStatus();
 * assert.ok(part.lockedBy === "ann");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileService {
  /** The repository directory. */
  readonly repoDir: string;
  /** The checkout registry. */
  readonly registry: CheckoutRegistry;
  #extension: string;

  /**
   * Creates a FileService.
   *
   * @param repoDir The repository directory (it must exist when used).
   * @param registryFile The checkout registry file.
   * @param options The files' extension, and the registry's options.
   * @throws {TypeError} If `extension` is not a string.
   */
  constructor(
    repoDir: string | URL,
    registryFile: string | URL,
    options: FileServiceOptions = {},
  ) {
    const extension = options.extension ?? ".mcam";
    if (typeof extension !== "string") {
      throw new TypeError(
        `Cannot use extension ${extension}: expected a string such as ".mcam"`,
      );
    }
    this.repoDir = _toPath(repoDir);
    this.registry = new CheckoutRegistry(registryFile, options);
    this.#extension = extension.toLowerCase();
  }

  /**
   * The repository's files with the extension, with who has each.
   *
   * @returns The files, sorted by name.
   * @throws {StoreError} If the repository cannot be read.
   */
  async filesWithStatus(): Promise<FileStatus[]> {
    const repo = this.#realRepo();
    let entries;
    try {
      entries = await _readDir(this.repoDir);
    } catch (error) {
      throw _fsError("list", this.repoDir, error);
    }
    const checkouts = await this.registry.list();
    const files: FileStatus[] = [];
    for (const entry of entries) {
      if (!entry.name.toLowerCase().endsWith(this.#extension)) continue;
      const path = join(this.repoDir, entry.name);
      if (entry.isSymlink && !_inside(repo, path)) continue;
      const stat = _statFollow(path);
      if (stat === null || !stat.isFile) continue;
      const holder = checkouts[entry.name];
      files.push({
        name: entry.name,
        sizeBytes: stat.size,
        modified: new Date(stat.mtimeMs ?? 0),
        status: holder ? "checked_out" : "available",
        lockedBy: holder?.user ?? null,
      });
    }
    return files.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }

  /**
   * Checks a repository file out to `user`.
   *
   * @param name The file's name in the repository.
   * @param user Who takes it.
   * @param message Why.
   * @returns The new record.
   * @throws {AlreadyCheckedOutError} If anyone has it checked out.
   * @throws {StoreError} If `name` leaves the repository, does not exist, or
   *   lacks the extension.
   */
  async checkout(
    name: string,
    user: string,
    message = "",
  ): Promise<CheckoutRecord> {
    this.#checkName(name);
    return await this.registry.checkout(name, user, message);
  }

  /**
   * Checks a repository file back in.
   *
   * @param name The file's name in the repository.
   * @param user Who returns it.
   * @throws {NotCheckedOutError} If nobody has it checked out.
   * @throws {NotOwnerError} If someone else has it.
   * @throws {StoreError} If `name` leaves the repository.
   */
  async checkin(name: string, user: string): Promise<void> {
    // A file deleted while checked out can still be checked in.
    this.#checkName(name, false);
    await this.registry.checkin(name, user);
  }

  #realRepo(): string {
    try {
      return _realPath(this.repoDir);
    } catch (error) {
      throw _fsError("use repository", this.repoDir, error);
    }
  }

  #checkName(name: string, mustExist = true): void {
    _checkId(name, "file name");
    const message = (why: string) =>
      `Cannot use file name '${name}' in '${this.repoDir}': ${why}`;
    // A name of the wrong shape is a bad argument (a TypeError); a name
    // the repository does not have as a file is a StoreError.
    const malformed = (why: string): never => {
      throw new TypeError(message(why));
    };
    const refuse = (why: string): never => {
      throw new StoreError(join(this.repoDir, name), message(why));
    };
    if (
      isAbsolute(name) || name.includes("/") || name.includes(sep) ||
      name === "." || name === ".." || name.includes("\0")
    ) {
      malformed("expected the name of a file directly in the repository");
    }
    if (!name.toLowerCase().endsWith(this.#extension)) {
      malformed(`expected a name ending in ${this.#extension}`);
    }
    const path = join(this.repoDir, name);
    const link = _lstat(path);
    if (link === null) {
      if (mustExist) refuse("no such file; check the name with the file list");
      return;
    }
    if (link.isSymlink && !_inside(this.#realRepo(), path)) {
      malformed("it is a symbolic link that leads out of the repository");
    }
    const stat = _statFollow(path);
    if (mustExist && (stat === null || !stat.isFile)) {
      refuse("it is not a regular file");
    }
  }
}

/** Whether `path`, every symlink resolved, lies inside the directory `realRoot`. */
function _inside(realRoot: string, path: string): boolean {
  let real;
  try {
    real = _realPath(path);
  } catch {
    return false; // a dangling link leads nowhere we can vouch for
  }
  const rel = relative(realRoot, real);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) &&
    !isAbsolute(rel);
}
