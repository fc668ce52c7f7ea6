// One process taking and releasing a FileLock N times back to back, for the
// system-call count in docs/benchmarks.md: run it under `strace -f -c`, less the same
// run with N = 0 (the start-up). Usage: deno run -A bench/_acquisitions.ts [N]
import { FileLock } from "../mod.ts";

const n = Number(Deno.args[0] ?? 1000);
const dir = await Deno.makeTempDir({ prefix: "lockbox_acquisitions_" });
try {
  for (let i = 0; i < n; i++) {
    const lock = await FileLock.acquire(`${dir}/state.json`);
    await lock.release();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
