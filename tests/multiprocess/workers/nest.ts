// Takes the first lock, says "holding", waits for a "go" line on stdin, then
// takes the others inside it (each inside the last). Prints "done" when it
// had them all, or "deadlock <DeadlockError.cycle as JSON>".
// Usage: nest.ts [--deadlock-timeout MS] PATH PATH...
import { parseArgs } from "node:util";
import { DeadlockError, withLock } from "../../../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { "deadlock-timeout": { type: "string" } },
});
const deadlockTimeout = values["deadlock-timeout"] === undefined
  ? undefined
  : Number(values["deadlock-timeout"]);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  .getReader();

async function nested(paths: string[], first: boolean): Promise<void> {
  if (paths.length === 0) return;
  await withLock(paths[0], async () => {
    if (first) {
      console.log("holding");
      let text = "";
      while (!text.includes("go")) {
        const { value, done } = await lines.read();
        if (done) return;
        text += value;
      }
    }
    await nested(paths.slice(1), false);
  }, { deadlockTimeout });
}

try {
  await nested(positionals, true);
  console.log("done");
} catch (error) {
  if (!(error instanceof DeadlockError)) throw error;
  console.log(`deadlock ${JSON.stringify(error.cycle)}`);
  // The given-up wait stays parked in the kernel until granted, and keeps
  // the process alive: as a command under lockbox run, it would keep its
  // lock from the others. Exit, as the FileLock docs advise.
  Deno.exit(0);
}
await lines.cancel();
