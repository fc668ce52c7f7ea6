// What the build scripts share: running a program to its end.

import { fileURLToPath } from "node:url";

/**
 * Runs `command` with `args` in `cwd`, its output on this process's.
 *
 * @throws {Error} If it exits with a status other than 0.
 */
export async function run(
  command: string,
  args: string[],
  cwd: URL,
): Promise<void> {
  const { success, code } = await new Deno.Command(command, {
    args,
    cwd: fileURLToPath(cwd),
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`${command} ${args.join(" ")} exited ${code}`);
}
