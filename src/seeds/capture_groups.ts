// Capture groups (seed 000): groups of file-transfer transactions, in a JSON
// DB that the Python system reads and writes too.

import {
  _checkId,
  _newHexId,
  _own,
  _setOwn,
  _unixSeconds,
} from "../base/ids.ts";
import type {
  JsonStore,
  StoreVersion,
  WatchOptions,
} from "../store/json_store.ts";
import { _seedDb, type DbOptions } from "./_seed_db.ts";

export type { DbOptions };

/** One capture group, as stored: exactly seed 000's schema. */
export interface CaptureGroupRecord {
  /** When the group was created, in Unix seconds. */
  created: number;
  /** Its transaction ids, in the order they were added. */
  transactions: string[];
}

/** The capture group DB: `{"<group_id>": {created, transactions}}`. */
export type CaptureGroupDb = Record<string, CaptureGroupRecord>;

/**
 * A group id names no group in the DB.
 *
 * @example
 * ```ts ignore
 * import { CaptureGroups, GroupNotFoundError } from "@lockbox/lockbox";
 * try {
 *   await new CaptureGroups("groups.json").addTransaction("nope", "t1");
 * } catch (error) {
 *   if (error instanceof GroupNotFoundError) console.error(error.groupId);
 * }
 * ```
 */
export class GroupNotFoundError extends Error {
  /** Always `"GroupNotFoundError"`. */
  override name = "GroupNotFoundError";
  /**
   * Creates a GroupNotFoundError.
   *
   * @param groupId The missing group.
   * @param dbPath The DB that was searched.
   */
  constructor(readonly groupId: string, readonly dbPath: string) {
    super(
      `Cannot find capture group '${groupId}' in '${dbPath}'; create it first`,
    );
  }
}

/** Checks the DB's shape when it is read and before it is written. */
function _validateGroupDb(value: unknown): CaptureGroupDb {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("expected an object of capture groups");
  }
  for (const [id, group] of Object.entries(value)) {
    const g = group as CaptureGroupRecord;
    if (
      typeof g !== "object" || g === null || typeof g.created !== "number" ||
      !Array.isArray(g.transactions) ||
      !g.transactions.every((t) => typeof t === "string")
    ) {
      throw new TypeError(`group '${id}' is not {created, transactions}`);
    }
  }
  return value as CaptureGroupDb;
}

/**
 * The capture group DB of seed 000, on lockbox. The file keeps exactly the
 * seed's JSON (indented by 2) and its lock file `<db>.lock`, so the Python
 * system and lockbox share one DB and exclude each other. Every change is one
 * locked read-modify-write; a corrupt DB is an error, never reset to `{}`.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CaptureGroups } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const groups = new CaptureGroups(`${dir}/capture_groups.json`);
 * const id = await groups.create();
 * await groups.addTransaction(id, "txn-1");
 * assert.ok((await groups.transactions(id))[0] === "txn-1");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class CaptureGroups {
  /** The DB file (with a backend: the document's name). */
  readonly dbPath: string;
  #store: JsonStore<CaptureGroupDb>;

  /**
   * Creates a CaptureGroups.
   *
   * @param dbPath The DB file (created on the first change; with a
   *   backend, a name).
   * @param options Lock timeout, durability, backups, journal mode,
   *   backend.
   */
  constructor(dbPath: string | URL, options: DbOptions = {}) {
    const store = _seedDb<CaptureGroupDb>(dbPath, _validateGroupDb, options);
    this.dbPath = store.path;
    this.#store = store;
  }

  /**
   * Adds a group; an existing group is left as it is.
   *
   * @param groupId The id to use; a new 16-hex-character id by default.
   * @returns The group id.
   * @throws {TypeError} If `groupId` is given and is not a non-empty string.
   * @throws {CorruptStoreError} If the DB is corrupt (it is left untouched).
   */
  async create(groupId?: string): Promise<string> {
    const id = _checkId(
      groupId === undefined ? _newHexId() : groupId,
      "group id",
    );
    return await this.#store.update((db) => {
      if (!Object.hasOwn(db, id)) {
        _setOwn<CaptureGroupRecord>(db, id, {
          created: _unixSeconds(),
          transactions: [],
        });
      }
      return id;
    });
  }

  /**
   * Adds a transaction to a group; adding it twice changes nothing.
   *
   * @param groupId The group.
   * @param txnId The transaction id.
   * @returns A promise that resolves once the DB is written.
   * @throws {GroupNotFoundError} If the group does not exist.
   * @throws {TypeError} If an id is not a non-empty string.
   */
  async addTransaction(groupId: string, txnId: string): Promise<void> {
    _checkId(groupId, "group id");
    _checkId(txnId, "transaction id");
    await this.#store.update((db) => {
      const group = _own(db, groupId);
      if (!group) throw new GroupNotFoundError(groupId, this.dbPath);
      if (!group.transactions.includes(txnId)) group.transactions.push(txnId);
    });
  }

  /**
   * The transactions of a group.
   *
   * @param groupId The group.
   * @returns Its transaction ids; `[]` for a missing group, as in seed 000.
   * @throws {CorruptStoreError} If the DB is corrupt.
   */
  async transactions(groupId: string): Promise<string[]> {
    _checkId(groupId, "group id");
    return [...(_own(await this.#store.read(), groupId)?.transactions ?? [])];
  }

  /**
   * One group's record.
   *
   * @param groupId The group.
   * @returns Its record, or `undefined` if there is no such group.
   */
  async get(groupId: string): Promise<CaptureGroupRecord | undefined> {
    _checkId(groupId, "group id");
    return _own(await this.#store.read(), groupId);
  }

  /**
   * Removes a group and its transactions.
   *
   * @param groupId The group.
   * @returns `true` if it existed.
   */
  async delete(groupId: string): Promise<boolean> {
    _checkId(groupId, "group id");
    return await this.#store.update((db) => {
      if (!Object.hasOwn(db, groupId)) return false;
      delete db[groupId];
      return true;
    });
  }

  /**
   * Every group id in the DB.
   *
   * @returns The ids, in the DB's order.
   */
  async list(): Promise<string[]> {
    return Object.keys(await this.#store.read());
  }

  /**
   * Removes groups created more than `seconds` ago.
   *
   * @param seconds The age limit.
   * @returns The ids removed.
   * @throws {RangeError} If `seconds` is negative or not a number.
   */
  async pruneOlderThan(seconds: number): Promise<string[]> {
    if (typeof seconds !== "number" || !(seconds >= 0)) {
      throw new RangeError(
        `Cannot prune groups older than ${seconds} s: expected a non-negative number`,
      );
    }
    return await this.#store.update((db) => {
      const cutoff = _unixSeconds() - seconds;
      const old = Object.keys(db).filter((id) => db[id].created < cutoff);
      for (const id of old) delete db[id];
      return old;
    });
  }

  /**
   * Watches the DB: yields it now, then each new version any process
   * commits (see `JsonStore.watch`), until the signal aborts or the loop
   * stops.
   *
   * @param options The signal that ends it; the re-check interval.
   * @returns The DB's versions.
   */
  watch(
    options: WatchOptions = {},
  ): AsyncIterable<StoreVersion<CaptureGroupDb>> {
    return this.#store.watch(options);
  }
}
