// Running a command to its end, bounded, so that a hang fails instead of
// stopping the run: for the tests (tests/_helpers.ts re-exports it) and the
// PostgreSQL servers that tests and benchmarks start (testing/postgres.ts).

/**
 * How long any wait on a child may take before the test fails: a guard
 * against hangs, generous enough for a stress test on a loaded machine (the
 * suite runs several test files at once).
 */
export const GUARD_MS = 300_000;

/**
 * Resolves with `promise`, or runs `onTimeout` and rejects once `ms` have
 * passed. The timer never outlives the race.
 */
export async function guarded<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  onTimeout: () => void = () => {},
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`gave up after ${ms} ms: ${what}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a finished command printed. */
export interface Output {
  code: number;
  success: boolean;
  signal: Deno.Signal | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/**
 * Runs a command to its end and collects its output, as
 * `Deno.Command.output()` does, but bounded: past `guardMs` the command is
 * killed, its pipes are abandoned (a process it left behind may hold them)
 * and the promise rejects.
 */
export async function output(
  command: string,
  options: Deno.CommandOptions & { guardMs?: number } = {},
): Promise<Output> {
  const { guardMs = GUARD_MS, ...rest } = options;
  const child = new Deno.Command(command, {
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...rest,
  }).spawn();
  const cancel = new AbortController();
  const collect = (stream: ReadableStream<Uint8Array> | null) =>
    stream === null ? Promise.resolve(new Uint8Array()) : new Response(
      stream.pipeThrough(new TransformStream(), { signal: cancel.signal }),
    ).bytes().catch(() => new Uint8Array());
  const [status, stdout, stderr] = await guarded(
    Promise.all([
      child.status,
      collect(
        rest.stdout === "null" || rest.stdout === "inherit"
          ? null
          : child.stdout,
      ),
      collect(
        rest.stderr === "null" || rest.stderr === "inherit"
          ? null
          : child.stderr,
      ),
    ]),
    guardMs,
    `${command} ${(rest.args ?? []).join(" ")}`,
    () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone; a process it left behind holds the pipes.
      }
      cancel.abort();
    },
  );
  return { ...status, stdout, stderr };
}
