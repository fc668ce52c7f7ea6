// Operations (seed 000): background capture operations mapped to their
// capture groups, in a JSON DB shared with the Python system.

import { _checkId, _newHexId, _own, _unixSeconds } from "../base/ids.ts";
import {
  type CaptureGroups,
  type DbOptions,
  GroupNotFoundError,
} from "./capture_groups.ts";
import type { JsonStore } from "../store/json_store.ts";
import { _seedDb } from "./_seed_db.ts";

/** One operation, as stored: exactly seed 000's schema. */
export interface OperationRecord {
  /** The capture group the operation belongs to. */
  capture_group_id: string;
  /** When it was registered, in Unix seconds. */
  created: number;
}

/** Options of {@linkcode Operations}. */
export interface OperationsOptions extends Omit<DbOptions, "backups"> {
  /** The capture group DB that registered groups must exist in. */
  groups: CaptureGroups;
}

function _validateOperationDb(
  value: unknown,
): Record<string, OperationRecord> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("expected an object of operations");
  }
  for (const [id, op] of Object.entries(value)) {
    const o = op as OperationRecord;
    if (
      typeof o !== "object" || o === null ||
      typeof o.capture_group_id !== "string" || typeof o.created !== "number"
    ) {
      throw new TypeError(
        `operation '${id}' is not {capture_group_id, created}`,
      );
    }
  }
  return value as Record<string, OperationRecord>;
}

/**
 * The operation DB of seed 000, on lockbox:
 * `{"<operation_id>": {"capture_group_id": "<group_id>", "created": <unix s>}}`.
 * Errors are thrown, never turned into `""` or `[]`.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CaptureGroups, Operations } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const groups = new CaptureGroups(`${dir}/groups.json`);
 * const ops = new Operations(`${dir}/ops.json`, { groups });
 * const op = await ops.register(await groups.create());
 * assert.ok((await ops.captureGroupOf(op))?.length === 16);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Operations {
  /** The DB file (with a backend: the document's name). */
  readonly dbPath: string;
  #store: JsonStore<Record<string, OperationRecord>>;
  #groups: CaptureGroups;

  /**
   * Creates an Operations.
   *
   * @param dbPath The operation DB file (with a backend: a name).
   * @param options The capture groups, and the DB's options (lock timeout,
   *   durability, journal mode, backend).
   * @throws {TypeError} If `options.groups` is missing.
   */
  constructor(dbPath: string | URL, options: OperationsOptions) {
    if (!options?.groups) {
      throw new TypeError(
        "Cannot create Operations without options.groups: the capture group DB",
      );
    }
    const store = _seedDb<Record<string, OperationRecord>>(
      dbPath,
      _validateOperationDb,
      options,
    );
    this.dbPath = store.path;
    this.#store = store;
    this.#groups = options.groups;
  }

  /**
   * Registers a new operation for an existing capture group.
   *
   * @param groupId The capture group.
   * @returns The new operation id (16 hex characters).
   * @throws {GroupNotFoundError} If the group does not exist.
   */
  async register(groupId: string): Promise<string> {
    _checkId(groupId, "group id");
    if (await this.#groups.get(groupId) === undefined) {
      throw new GroupNotFoundError(groupId, this.#groups.dbPath);
    }
    const id = _newHexId();
    await this.#store.update((db) => {
      db[id] = { capture_group_id: groupId, created: _unixSeconds() };
    });
    return id;
  }

  /**
   * The capture group of an operation.
   *
   * @param operationId The operation.
   * @returns Its group id, or `undefined` for an unknown operation.
   * @throws {CorruptStoreError} If the DB is corrupt.
   */
  async captureGroupOf(operationId: string): Promise<string | undefined> {
    _checkId(operationId, "operation id");
    return _own(await this.#store.read(), operationId)?.capture_group_id;
  }

  /**
   * Every operation id.
   *
   * @returns The ids, in the DB's order.
   */
  async list(): Promise<string[]> {
    return Object.keys(await this.#store.read());
  }
}
