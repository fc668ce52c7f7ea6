// The `lockbox` program: its commands (one module each in this folder), its
// help text, and how an error becomes an exit status.

import { Command, CommanderError } from "commander";
import { VERSION } from "./_version.ts";
import { _writeStderr, _writeStdout } from "../runtime/mod.ts";
import { CorruptStoreError, StoreError } from "../base/errors.ts";
import { ConfigError } from "../seeds/config.ts";
import {
  _corruptMessage,
  _Exit,
  _exitCodeOf,
  _say,
  EXIT_CODES_HELP,
  EXIT_IO,
  EXIT_OK,
  EXIT_USAGE,
} from "./_output.ts";
import { _addRun } from "./run.ts";
import { _addStatus } from "./status.ts";
import { _addClean } from "./clean.ts";
import { _addHolder } from "./holder.ts";
import { _addStore } from "./store.ts";
import { _addGroups } from "./groups.ts";
import { _addOps } from "./ops.ts";
import { _addState } from "./state.ts";
import { _addFiles } from "./files.ts";
import { _addBatch } from "./batch.ts";
import { _addMigrate } from "./migrate.ts";
import { _addCompletions } from "./completions.ts";
import { _addSchemaOptions } from "./_database.ts";

/** The `lockbox` program with every command. */
export function _program(batchArgv?: string[]): Command {
  const program = new Command("lockbox")
    .description(
      "Cross-process file locks and safe JSON state files",
    )
    .version(VERSION, "-V, --version")
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => _writeStdout(text),
      writeErr: (text) => _writeStderr(text),
      outputError: (text, write) =>
        write(`lockbox: ${text.replace(/^error: /, "")}`),
    })
    .addHelpText("after", EXIT_CODES_HELP);

  program.commandsGroup("Locks:");
  _addRun(program);
  _addStatus(program);
  _addClean(program);
  _addHolder(program);
  program.commandsGroup("Stores:");
  _addStore(program);
  _addMigrate(program);
  program.commandsGroup("The seed systems:");
  _addGroups(program);
  _addOps(program);
  _addState(program);
  _addFiles(program);
  _addBatch(program, batchArgv);
  program.commandsGroup("Shell:");
  _addCompletions(program);
  program.helpCommand("help [command]", "display help for command");
  _addSchemaOptions(program);
  _finishHelp(program);
  return program;
}

/** Every command prints its usage line and a pointer to --help after an error. */
function _finishHelp(command: Command): void {
  const path = (c: Command): string =>
    c.parent ? `${path(c.parent)} ${c.name()}` : c.name();
  command.showHelpAfterError(
    `Usage: ${path(command)} ${command.usage()}\nTry '${
      path(command)
    } --help' for more information.`,
  );
  for (const sub of command.commands) _finishHelp(sub);
}

/**
 * Runs the CLI with `args` (without the program name) and returns its exit
 * status; prints what went wrong on stderr.
 */
export async function _main(args: string[]): Promise<number> {
  // `batch FILE... -- COMMAND`: the command is everything after the first
  // `--`, which commander would otherwise merge into the files.
  let argv = args;
  let batchArgv: string[] | undefined;
  const dashAt = args.indexOf("--");
  if (args[0] === "batch" && dashAt !== -1) {
    batchArgv = args.slice(dashAt + 1);
    argv = args.slice(0, dashAt);
  }
  const program = _program(batchArgv);
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof _Exit) {
      if (error.message) _say(error.message);
      return error.code;
    }
    // The reader went away (`lockbox status | head -n 1`): stop quietly, as
    // a program killed by SIGPIPE would.
    if ((error as { code?: string })?.code === "EPIPE") return 128 + 13;
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (error instanceof CorruptStoreError) {
      _say(_corruptMessage(error));
      return EXIT_IO;
    }
    if (error instanceof ConfigError || error instanceof StoreError) {
      _say(error.message);
      return EXIT_IO;
    }
    _say(error instanceof Error ? error.message : String(error));
    return _exitCodeOf(error);
  }
}
