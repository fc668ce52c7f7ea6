// Where `lockbox run -n LOCK true` spends its time beyond an empty
// `deno run`, step by step, each timed with performance.now() the first time
// it runs in a fresh process and again once warm: importing the modules the
// run evaluates, the first lock, finding the held lock file's descriptor (in
// /proc/self/fd, to pass it on), Deno's signal listeners, starting `true` in
// a session of its own as `lockbox run` does when stdin is not a terminal
// (`_spawn`: posix_spawn through FFI on Linux, the C library loaded the first
// time), and the same with `Deno.Command`'s `detached`, for comparison.
// Prints the median of RUNS processes per step. Linux.
//
// Usage: deno run -A bench/cli_startup_steps.ts [RUNS]

const runs = Number(Deno.args[0] ?? 10);
const steps = ["import", "lock", "descriptor", "signals", "spawn", "detached"];

if (Deno.args[0] === "--child") {
  const dir = Deno.args[1];
  const times: Record<string, number[]> = {};
  /** Times `fn`, or takes the time it returns (a step inside it). */
  const timed = async (name: string, fn: () => unknown) => {
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const took = await fn();
      (times[name] ??= []).push(
        typeof took === "number" ? took : performance.now() - started,
      );
    }
  };
  let lockModule: typeof import("../src/lock/file_lock.ts") | undefined;
  await timed("import", async () => {
    lockModule = await import("../src/lock/file_lock.ts");
    await import("../src/cli/_run.ts");
  });
  await timed("lock", async () => {
    const lock = await lockModule!.FileLock.acquire({
      lockFile: `${dir}/job.lock`,
    }, { metadata: { command: "true" } });
    await lock.release();
  });
  const { _lockInternals } = await import("../src/lock/lock_internals.ts");
  await timed("descriptor", async () => {
    const lock = await lockModule!.FileLock.acquire({
      lockFile: `${dir}/job.lock`,
    });
    const started = performance.now();
    _lockInternals.handleOf(lock)!.descriptor();
    const took = performance.now() - started;
    await lock.release();
    return took;
  });
  await timed("signals", () => {
    const listener = () => {};
    const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
    for (const signal of signals) Deno.addSignalListener(signal, listener);
    for (const signal of signals) Deno.removeSignalListener(signal, listener);
  });
  const { _spawn } = await import("../src/runtime/mod.ts");
  await timed("spawn", async () => {
    await (await _spawn("true", [], { newGroup: true })).status;
  });
  await timed("detached", async () => {
    await new Deno.Command("true", { detached: true, stdin: "inherit" })
      .spawn().status;
  });
  console.log(JSON.stringify(times));
} else {
  const dir = await Deno.makeTempDir({ prefix: "lockbox_bench_steps_" });
  const first: Record<string, number[]> = {};
  const warm: Record<string, number[]> = {};
  for (let run = 0; run < runs; run++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", import.meta.filename!, "--child", dir],
      stdin: "null",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    const times = JSON.parse(new TextDecoder().decode(out.stdout));
    for (const step of steps) {
      (first[step] ??= []).push(times[step][0]);
      (warm[step] ??= []).push(times[step][1]);
    }
  }
  await Deno.remove(dir, { recursive: true });
  const median = (values: number[]) =>
    values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`${runs} processes, median ms: first time, then warm`);
  for (const step of steps) {
    console.log(
      `${step.padEnd(10)} ${median(first[step]).toFixed(1).padStart(6)} ${
        median(warm[step]).toFixed(1).padStart(6)
      }`,
    );
  }
}
