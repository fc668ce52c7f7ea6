// `lockbox status`: the lock files in directories, once or redrawn.

import type { Command } from "commander";
import { _connectDb, DB_HELP } from "./_database.ts";
import { _sleep } from "../base/promise.ts";
import { _columns, _isTerminal, _writeStdout } from "../runtime/mod.ts";
import {
  formatLockStatus,
  formatWaitGraph,
  listLocks,
  type LockInfo,
  readWaitGraph,
} from "../lock/lock_monitor.ts";
import { _color, _json, _print } from "./_output.ts";
import { _duration, _seconds } from "./_parse.ts";

/** Adds `lockbox status` to the program. */
export function _addStatus(program: Command): void {
  program.command("status")
    .description(
      "Show the lock files in directories (lockbox's, and any other *.lock file while it is held): state, mode, holder, age, command",
    )
    .argument("[dir...]", "directories to look in (default: .)")
    .option("-r, --recursive", "look in subdirectories too")
    .option(
      "--stale-after <duration>",
      "age after which a free lock file is stale (90s, 5m, 1h, 2d)",
      _duration,
    )
    .option("--json", "print LockInfo[] (with --waits, the WaitGraph) as JSON")
    .option(
      "--waits",
      "print who waits for whom (machine-wide), every deadlock marked",
    )
    .option(
      "--watch [seconds]",
      "redraw every few seconds until interrupted",
      _seconds,
    )
    .option("--db <url>", DB_HELP)
    .action(async (dirs: string[], options) => {
      if (options.db !== undefined) {
        return await _dbStatus(
          options.db,
          options.schema,
          dirs,
          options.json,
        );
      }
      if (options.waits) {
        const graph = await readWaitGraph(dirs.length ? dirs : ["."]);
        if (options.json) _json(graph);
        else _print(formatWaitGraph(graph));
        return;
      }
      const look = async () => {
        const infos: LockInfo[] = [];
        for (const dir of dirs.length ? dirs : ["."]) {
          infos.push(
            ...await listLocks(dir, {
              recursive: options.recursive,
              staleAfter: options.staleAfter,
            }),
          );
        }
        return infos;
      };
      if (options.watch === undefined) {
        const infos = await look();
        if (options.json) _json(infos);
        else _print(formatLockStatus(infos, _formatOptions()));
        return;
      }
      const every = options.watch === true
        ? 2000
        : Math.max(options.watch, 100);
      const terminal = _isTerminal("stdout");
      while (true) {
        const infos = await look();
        const text = options.json
          ? JSON.stringify(infos)
          : formatLockStatus(infos, _formatOptions());
        if (terminal) {
          _writeStdout(
            `\x1b[H\x1b[2J${text}\n\n${
              new Date().toLocaleTimeString()
            }, every ${every / 1000} s; Ctrl-C to stop\n`,
          );
        } else {
          _print(text + (options.json ? "" : "\n"));
        }
        await _sleep(every);
      }
    });
}

/** Colour, and on a terminal its width (off one, the default 100). */
function _formatOptions(): { color: boolean; width?: number } {
  return _isTerminal("stdout")
    ? { color: _color(), width: _columns() }
    : { color: _color() };
}

/**
 * `lockbox status --db URL [NAME...]`: lockbox's locks on a PostgreSQL
 * database (all, or the names given): name, state, token, holders.
 */
async function _dbStatus(
  url: string,
  schema: string | undefined,
  names: string[],
  json: boolean | undefined,
): Promise<void> {
  // No `await using`: Node 20 cannot parse it.
  const db = await _connectDb(url, schema);
  try {
    const all = await db.listLocks();
    const infos = names.length
      ? all.filter((info) => names.includes(info.name))
      : all;
    if (json) return _json(infos);
    if (infos.length === 0) return _print("no lockbox locks");
    for (const info of infos) {
      const holders = info.holders.map((h) =>
        `pid ${h.pid} on ${h.hostname} (session ${h.backendPid})`
      ).join(", ");
      _print(
        [info.name, info.mode ?? "free", `token ${info.token}`, holders]
          .filter(Boolean).join("\t"),
      );
      for (const waiter of info.waiters) {
        _print(
          `  waiting\t${waiter.mode}\t${
            waiter.pid === null
              ? ""
              : `pid ${waiter.pid} on ${waiter.hostname} `
          }(session ${waiter.backendPid})`,
        );
      }
    }
  } finally {
    await db.close();
  }
}
