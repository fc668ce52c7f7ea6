// The JSONL logs' twin on PostgreSQL: a row per record in the schema's
// logs table, appended, read and replaced each in one transaction.

import { _checkName, type _Session } from "./_session.ts";
import type { _Pool } from "./_pool.ts";

function _logName(name: unknown): string {
  return _checkName(name, "log", "audit");
}

/** Appends the JSON array $2's elements, in order, to the log $1. */
const _appendLog = (schema: string) =>
  `INSERT INTO ${schema}.logs (name, entry)
  SELECT $1, value FROM json_array_elements($2::json)
    WITH ORDINALITY AS e(value, at) ORDER BY at`;

/** Records as JSON text, or a TypeError naming the first that is not JSON. */
function _logLines(
  name: string,
  records: readonly unknown[],
  action: "append" | "write",
): string[] {
  return records.map((record) => {
    const text = JSON.stringify(record);
    if (text === undefined) {
      throw new TypeError(
        `Cannot ${action} ${typeof record} to log '${name}': it is not JSON; nothing was ${
          action === "append" ? "appended" : "written"
        }`,
      );
    }
    return text;
  });
}

/** The logs of one backend's schema. */
export class _Logs {
  #pool: _Pool;

  constructor(pool: _Pool) {
    this.#pool = pool;
  }

  /** Appends `records` to the log `name`, in one transaction, in order. */
  async append(name: string, records: readonly unknown[]): Promise<void> {
    _logName(name);
    const lines = _logLines(name, records, "append");
    if (lines.length === 0) return;
    await this.#query(
      name,
      (session) =>
        session.query(_appendLog(this.#pool.schema.sql), [
          name,
          `[${lines.join(",")}]`,
        ]),
    );
  }

  /** The records of the log `name`, oldest first. */
  async read(name: string): Promise<unknown[]> {
    _logName(name);
    const rows = await this.#query(
      name,
      (session) =>
        session.query<{ entry: unknown }>(
          `SELECT entry FROM ${this.#pool.schema.sql}.logs WHERE name = $1 ORDER BY seq`,
          [name],
        ),
    );
    return rows.map((row) => row.entry);
  }

  /** Replaces the records of the log `name` in one transaction. */
  async write(name: string, records: readonly unknown[]): Promise<void> {
    _logName(name);
    const lines = _logLines(name, records, "write");
    const s = this.#pool.schema.sql;
    // One statement, so one transaction: the old records go as the new
    // ones come.
    await this.#query(name, (session) =>
      session.query(
        `WITH gone AS (DELETE FROM ${s}.logs WHERE name = $1) ${_appendLog(s)}`,
        [name, `[${lines.join(",")}]`],
      ));
  }

  #query<R>(
    name: string,
    fn: (session: _Session) => Promise<R>,
  ): Promise<R> {
    return this.#pool.storeQuery(
      `log '${name}'`,
      fn,
      `${name} (PostgreSQL log)`,
    );
  }
}
