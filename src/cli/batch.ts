// `lockbox batch FILE... -- COMMAND`: a command per file, each under that
// file's lock (seed 001).

import type { Command } from "commander";
import { _startCommand } from "../base/command.ts";
import { _columns, _isTerminal, _writeStderr } from "../runtime/mod.ts";
import { type FileResult, processFiles } from "../seeds/batch.ts";
import { loadLockingConfig } from "../seeds/config.ts";
import { _Exit, _print, _say, EXIT_CONFLICT } from "./_output.ts";
import { _integer, _seconds } from "./_parse.ts";
import { _usingDb } from "./_database.ts";

/** Adds `lockbox batch` to the program. */
export function _addBatch(
  program: Command,
  commandArgv: string[] | undefined,
): void {
  program.command("batch")
    .description(
      "Batch: run COMMAND for each FILE under that file's lock, a few at a time ({} stands for the file; else it is appended; seed 001's file locking)",
    )
    .usage("[options] FILE... -- COMMAND [ARG...]")
    .argument("<file...>", "the files, then -- and the command")
    .option(
      "--config <file>",
      "a YAML or JSON config with a file_locking section",
    )
    .option("--concurrency <n>", "files at once (default 4)", _integer(1, 1024))
    .option(
      "--lock-timeout <seconds>",
      "how long to wait for each file's lock (default 30, or the config's)",
      _seconds,
    )
    .option(
      "--db <url>",
      "lock each FILE by name on this PostgreSQL database (a postgres:// URL, or 'env') instead of by a lock file, for workers on several hosts",
    )
    .action(async (operands: string[], options, command: Command) => {
      const dash = commandArgv;
      if (!dash || dash.length === 0) {
        command.error("missing -- COMMAND [ARG...] after the files");
      }
      const config = options.config
        ? await loadLockingConfig(options.config, { onWarning: _say })
        : undefined;
      const progress = _isTerminal("stderr");
      const results = await _usingDb(options, (backend) =>
        processFiles(
          operands,
          async (file) => {
            const argv = dash.includes("{}")
              ? dash.map((a) => a === "{}" ? file : a)
              : [...dash, file];
            const { code, signal } = await (await _startCommand(argv)).status;
            if (signal !== null) throw new Error(`killed by signal ${signal}`);
            if (code !== 0) throw new Error(`exited with ${code}`);
          },
          {
            ...config,
            backend,
            concurrency: options.concurrency,
            lockTimeout: options.lockTimeout ?? config?.lockTimeout,
            onProgress: (done, total, result) => {
              if (progress) _progressBar(done, total, result.file);
              else _print(_resultLine(result));
            },
          },
        ));
      if (progress) {
        _writeStderr("\r\x1b[K");
        for (const result of results) _print(_resultLine(result));
      }
      const ok = results.filter((r) => r.ok).length;
      const locked = results.filter((r) => !r.ok && r.locked).length;
      _say(
        `${results.length} files: ${ok} ok, ${
          results.length - ok - locked
        } failed, ${locked} locked`,
      );
      if (ok < results.length) throw new _Exit(EXIT_CONFLICT);
    });
}

/** One line of `batch` output: `ok FILE`, or `failed|locked FILE: why`. */
function _resultLine(result: FileResult<void>): string {
  return result.ok
    ? `ok ${result.file}`
    : `${result.locked ? "locked" : "failed"} ${result.file}: ${result.error}`;
}

function _progressBar(done: number, total: number, file: string): void {
  const width = Math.max(10, Math.min(40, _columns() - 40));
  const filled = Math.round((done / total) * width);
  const name = file.length > 30 ? "…" + file.slice(-29) : file;
  _writeStderr(
    `\r\x1b[K[${"#".repeat(filled)}${
      "-".repeat(width - filled)
    }] ${done}/${total} ${name}`,
  );
}
