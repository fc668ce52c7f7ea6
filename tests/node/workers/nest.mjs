// Node twin of tests/multiprocess/workers/nest.ts: takes the first lock,
// says "holding", waits for "go" on stdin, then takes the others nested.
// Prints "done", or "deadlock <cycle JSON>" on a DeadlockError.
// Usage: nest.mjs [--deadlock-timeout MS] PATH PATH...
import { lockbox } from "./_lockbox.mjs";

const { DeadlockError, withLock } = lockbox;

let args = process.argv.slice(2);
let deadlockTimeout;
if (args[0] === "--deadlock-timeout") {
  deadlockTimeout = Number(args[1]);
  args = args.slice(2);
}
let text = "";
const go = new Promise((resolve) => {
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    text += chunk;
    if (text.includes("go")) resolve(true);
  });
  process.stdin.on("end", () => resolve(false));
});

async function nested(paths, first) {
  if (paths.length === 0) return;
  await withLock(paths[0], async () => {
    if (first) {
      console.log("holding");
      if (!await go) return;
    }
    await nested(paths.slice(1), false);
  }, { deadlockTimeout });
}

try {
  await nested(args, true);
  console.log("done");
} catch (error) {
  if (!(error instanceof DeadlockError)) throw error;
  console.log(`deadlock ${JSON.stringify(error.cycle)}`);
}
process.stdin.destroy();
