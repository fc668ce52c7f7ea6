// `lockbox holder`: who holds one lock file; the exit status says if held.

import type { Command } from "commander";
import { _connectDb, DB_HELP } from "./_database.ts";
import { _liveRecord } from "../lock/kernel.ts";
import { _lstat } from "../runtime/mod.ts";
import { lockInfo } from "../lock/lock_monitor.ts";
import { _Exit, _json, _print, EXIT_CONFLICT } from "./_output.ts";

/** Adds `lockbox holder` to the program. */
export function _addHolder(program: Command): void {
  program.command("holder")
    .description("Show who holds LOCKFILE; exit 0 when held, 1 when free")
    .argument("<lockfile>", "the lock file itself")
    .option("--json", "print the LockInfo as JSON")
    .option("--db <url>", DB_HELP)
    .action(async (lockfile: string, options) => {
      if (options.db !== undefined) {
        return await _dbHolder(
          options.db,
          options.schema,
          lockfile,
          options.json,
        );
      }
      if (_lstat(lockfile) === null) {
        // No lock file, no holder: free, but say why, in case of a typo.
        if (options.json) _json(null);
        else _print("free");
        throw new _Exit(EXIT_CONFLICT, `'${lockfile}' does not exist`);
      }
      const info = await lockInfo(lockfile);
      if (options.json) {
        _json(info);
      } else if (!info.held) {
        _print("free");
      } else {
        const record = _liveRecord(info.held, info.holders, info.record);
        const pids = info.holders.length
          ? info.holders.join(", ")
          : record
          ? String(record.pid)
          : "unknown";
        let line = `held ${info.mode} by pid ${pids}`;
        if (record) {
          line +=
            ` on ${record.hostname} since ${record.acquiredAt}, token ${record.token}`;
          if (record.metadata) line += ` ${JSON.stringify(record.metadata)}`;
        }
        _print(line);
      }
      if (!info.held) throw new _Exit(EXIT_CONFLICT);
    });
}

/** `lockbox holder --db URL NAME`: the holder of a PostgreSQL lock. */
async function _dbHolder(
  url: string,
  schema: string | undefined,
  name: string,
  json: boolean | undefined,
): Promise<void> {
  // No `await using`: Node 20 cannot parse it.
  const db = await _connectDb(url, schema);
  try {
    const holder = await db.lockHolder(name);
    if (json) _json(holder);
    else if (holder === null) _print("free");
    else {
      let line = `held ${
        holder.shared ? "shared" : "exclusive"
      } by pid ${holder.pid} on ${holder.hostname} since ${holder.acquiredAt}, token ${holder.token} (server session ${holder.backendPid}`;
      line += holder.clientAddress ? ` from ${holder.clientAddress})` : ")";
      if (holder.metadata) line += ` ${JSON.stringify(holder.metadata)}`;
      _print(line);
    }
    if (holder === null) throw new _Exit(EXIT_CONFLICT);
  } finally {
    await db.close();
  }
}
