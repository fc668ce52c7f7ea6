// The `lockbox` program as commander parses it: its commands (one module
// each in this folder, loaded only when needed) and its help text.

import { Command, CommanderError } from "commander";
import { VERSION } from "./_version.ts";
import { _addSchemaOptions } from "./_database.ts";
import { _writeStderr, _writeStdout } from "../runtime/mod.ts";
import { _Exit, EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE } from "./_output.ts";

/** Adds one command (and its subcommands) to the program. */
type _Adder = (program: Command, batchArgv?: string[]) => void;

// Each command's module, loaded only when that command runs or the whole
// program is needed (the top-level help, an unknown command, completions),
// so that `lockbox run` loads the lock layer and no store, seed system or
// database driver (of the stores and PostgreSQL, only the two pure modules
// the shared option parsers use: json_pointer.ts and schema.ts). The
// specifiers are string literals: `deno compile` and `deno bundle` follow
// them into the executable and the npm package's chunks.
const _GROUPS: [string, Record<string, () => Promise<_Adder>>][] = [
  ["Locks:", {
    run: async () => (await import("./run.ts"))._addRun,
    status: async () => (await import("./status.ts"))._addStatus,
    clean: async () => (await import("./clean.ts"))._addClean,
    holder: async () => (await import("./holder.ts"))._addHolder,
  }],
  ["Stores:", {
    store: async () => (await import("./store.ts"))._addStore,
    migrate: async () => (await import("./migrate.ts"))._addMigrate,
  }],
  ["The seed systems:", {
    groups: async () => (await import("./groups.ts"))._addGroups,
    ops: async () => (await import("./ops.ts"))._addOps,
    state: async () => (await import("./state.ts"))._addState,
    files: async () => (await import("./files.ts"))._addFiles,
    batch: async () => (await import("./batch.ts"))._addBatch,
  }],
  ["Shell:", {
    completions: async () => (await import("./completions.ts"))._addCompletions,
  }],
];

/**
 * The `lockbox` program: with `only`, that command alone (what running it
 * needs); otherwise every command, as the help and completions show them.
 */
export async function _program(
  batchArgv?: string[],
  only?: string,
): Promise<Command> {
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

  for (const [group, commands] of _GROUPS) {
    const names = Object.keys(commands).filter((name) =>
      only === undefined || name === only
    );
    if (names.length === 0) continue;
    program.commandsGroup(group);
    const adders = await Promise.all(names.map((name) => commands[name]()));
    for (const add of adders) add(program, batchArgv);
  }
  program.helpCommand("help [command]", "display help for command");
  _addSchemaOptions(program);
  _finishHelp(program);
  return program;
}

/** The one command `args` runs, when running it needs no other. */
function _onlyCommand(args: string[]): string | undefined {
  const name = args[0];
  if (name === undefined || name === "completions") return undefined;
  return _GROUPS.some(([, commands]) => Object.hasOwn(commands, name))
    ? name
    : undefined;
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
 * Parses `args` (without the program name) and runs the command they name;
 * a usage error (already printed by commander) becomes an `_Exit`.
 */
export async function _parseAndRun(args: string[]): Promise<void> {
  // `batch FILE... -- COMMAND`: the command is everything after the first
  // `--`, which commander would otherwise merge into the files.
  let argv = args;
  let batchArgv: string[] | undefined;
  const dashAt = args.indexOf("--");
  if (args[0] === "batch" && dashAt !== -1) {
    batchArgv = args.slice(dashAt + 1);
    argv = args.slice(0, dashAt);
  }
  const program = await _program(batchArgv, _onlyCommand(argv));
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      throw new _Exit(error.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
    }
    throw error;
  }
}
