// The lockbox CLI, black-box, for the tests in this folder (one file per
// command): spawned as a user would run it. Set LOCKBOX_CLI to a compiled
// binary to test that instead of `deno run cli.ts`.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Child, output } from "../_helpers.ts";

const CLI_SOURCE = fileURLToPath(new URL("../../cli.ts", import.meta.url));
/** The command line that starts the CLI: LOCKBOX_CLI, or `deno run cli.ts`. */
export const CLI: string[] = Deno.env.get("LOCKBOX_CLI")
  ? [Deno.env.get("LOCKBOX_CLI")!]
  : [Deno.execPath(), "run", "--allow-all", "--quiet", CLI_SOURCE];

/** {@linkcode CLI} quoted for a shell command line. */
export const quoted = CLI.map((part) => `'${part}'`).join(" ");

/** How a process ended and what it printed. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` to its end, with no input. */
export async function run(
  command: string[],
  options: { env?: Record<string, string>; cwd?: string; clearEnv?: boolean } =
    {},
): Promise<Output> {
  const out = await output(command[0], {
    args: command.slice(1),
    env: options.env,
    clearEnv: options.clearEnv,
    cwd: options.cwd,
    stdin: "null",
  });
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** Runs the CLI with `args` to its end, with no input. */
export function lockbox(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Output> {
  return run([...CLI, ...args], options);
}

/** Runs lockbox and checks its exit status; returns its stdout. */
export async function ok(args: string[]): Promise<string> {
  const out = await lockbox(args);
  assert.equal(out.code, 0, `${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

/** A process holding `lockFile` with flock(1) until `release()`. */
export async function holdWithFlock(
  lockFile: string,
  mode: "-x" | "-s",
): Promise<{ release: () => Promise<void> }> {
  const child = new Child("flock", [
    mode,
    lockFile,
    "sh",
    "-c",
    "echo held; cat",
  ], {
    stdin: true,
  });
  await child.waitFor("held");
  return { release: async () => void await child.finish() };
}
