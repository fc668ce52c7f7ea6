// Test helpers: temporary directories and real child processes. Every wait
// on a child is bounded (GUARD_MS unless told), so a failure fails the test
// instead of hanging the run.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GUARD_MS, guarded, output } from "../testing/output.ts";

export { GUARD_MS, guarded, type Output, output } from "../testing/output.ts";

/**
 * Runs `fn`, then `cleanup`, whether `fn` threw or not. A cleanup that
 * fails never hides the error it followed: then both are thrown, `fn`'s
 * first, in an `AggregateError` whose message names both.
 */
export async function withCleanup<T>(
  fn: () => Promise<T> | T,
  cleanup: () => Promise<void> | void,
): Promise<T> {
  let result: T;
  try {
    result = await fn();
  } catch (error) {
    try {
      await cleanup();
    } catch (cleanupError) {
      const text = (e: unknown) => (e as Error)?.message ?? String(e);
      throw new AggregateError(
        [error, cleanupError],
        `${text(error)}; and then the cleanup failed too: ${
          text(cleanupError)
        }`,
        { cause: error },
      );
    }
    throw error;
  }
  await cleanup();
  return result;
}

/** Runs `fn` in a fresh temporary directory, removed afterwards. */
export async function withTempDir(
  fn: (dir: string) => Promise<void> | void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lockbox_test_" });
  await withCleanup(
    () => fn(dir),
    () => Deno.remove(dir, { recursive: true }),
  );
}

/** The absolute path of a worker script in `tests/multiprocess/workers/`. */
export function worker(name: string): string {
  return fileURLToPath(
    new URL(`./multiprocess/workers/${name}`, import.meta.url),
  );
}

/** A child process whose stdout is read line by line. */
export class Child {
  readonly process: Deno.ChildProcess;
  readonly pid: number;
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #ended = false;
  #stdoutDone: Promise<void>;
  #stderr: Promise<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null;
  #abandon = new AbortController();

  constructor(
    command: string,
    args: string[],
    options: { stdin?: boolean; env?: Record<string, string>; cwd?: string } =
      {},
  ) {
    this.process = new Deno.Command(command, {
      args,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: options.env,
      cwd: options.cwd,
    }).spawn();
    this.pid = this.process.pid;
    this.#stdin = options.stdin ? this.process.stdin.getWriter() : null;
    this.#stdoutDone = this.#readLines();
    this.#stderr = new Response(
      this.process.stderr.pipeThrough(new TransformStream(), {
        signal: this.#abandon.signal,
      }),
    ).text().catch(() => "(stderr abandoned)");
  }

  async #readLines(): Promise<void> {
    let buffer = "";
    const chunks = this.process.stdout.pipeThrough(new TextDecoderStream(), {
      signal: this.#abandon.signal,
    });
    try {
      for await (const chunk of chunks) {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf("\n")) !== -1) {
          this.#lines.push(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
        }
        this.#wake();
      }
    } catch {
      // Abandoned by finish() after its guard ran out.
    }
    if (buffer) this.#lines.push(buffer);
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Every stdout line read so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** Waits for a stdout line that starts with `prefix`; returns it. */
  async waitFor(prefix: string, guardMs = 120_000): Promise<string> {
    const deadline = Date.now() + guardMs;
    while (true) {
      const line = this.#lines.find((l) => l.startsWith(prefix));
      if (line !== undefined) return line;
      if (this.#ended) {
        throw new Error(
          `child ${this.pid} ended without printing '${prefix}': ${await this
            .#stderr}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`child ${this.pid} did not print '${prefix}' in time`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Writes a line to the child's stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(line + "\n"));
  }

  /**
   * Closes stdin, waits for the exit and for stdout to close; returns
   * status, stdout lines, stderr. Past `guardMs` it kills the child, gives
   * up on pipes that a process it left behind still holds, and throws.
   */
  async finish(guardMs: number = GUARD_MS): Promise<
    {
      code: number;
      signal: Deno.Signal | null;
      lines: readonly string[];
      stderr: string;
    }
  > {
    if (this.#stdin) {
      await this.#stdin.close().catch(() => {});
      this.#stdin = null;
    }
    const giveUp = () => {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      this.#abandon.abort();
    };
    const status = await guarded(
      this.process.status,
      guardMs,
      `child ${this.pid} did not exit`,
      giveUp,
    );
    await guarded(
      this.#stdoutDone,
      guardMs,
      `a process left behind by child ${this.pid} keeps its stdout open`,
      giveUp,
    );
    const stderr = await this.#stderr;
    return {
      code: status.code,
      signal: status.signal,
      lines: this.#lines,
      stderr,
    };
  }

  /** Kills the child with SIGKILL and reaps it. */
  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.finish();
  }
}

/** Starts a Deno worker script from `tests/multiprocess/workers/`. */
export function spawnWorker(
  name: string,
  args: string[],
  options: { stdin?: boolean; env?: Record<string, string> } = {},
): Child {
  return new Child(
    Deno.execPath(),
    ["run", "--allow-all", "--quiet", worker(name), ...args],
    options,
  );
}

/** Waits for every child and throws if one failed. */
export async function finishAll(children: Child[]): Promise<string[][]> {
  const results = await Promise.all(children.map((c) => c.finish()));
  for (const [i, r] of results.entries()) {
    if (r.code !== 0) {
      throw new Error(`child ${children[i].pid} exited ${r.code}: ${r.stderr}`);
    }
  }
  return results.map((r) => [...r.lines]);
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Counts, until `done` settles, how often a child's main thread is seen
 * asleep in the kernel's flock wait (`/proc/PID/wchan`). A wait on a helper
 * thread leaves the main thread in epoll instead, so this tells the two
 * kinds of wait apart.
 */
export async function countFlockSleeps(
  children: Child[],
  done: Promise<unknown>,
): Promise<number> {
  let finished = false;
  const watched = done.finally(() => finished = true);
  let sleeps = 0;
  while (!finished) {
    for (const child of children) {
      const wchan = await Deno.readTextFile(`/proc/${child.pid}/wchan`)
        .catch(() => "");
      if (wchan === "locks_lock_inode_wait") sleeps++;
    }
    await delay(1);
  }
  await watched;
  return sleeps;
}

/** Runs a command, fails the test if it fails, and returns its stdout. */
export async function sh(command: string, ...args: string[]): Promise<string> {
  const out = await output(command, { args });
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${decode(out.stderr)}`);
  }
  return decode(out.stdout);
}

/**
 * Runs `fn` while `dir` is immutable (`chattr +i`): unwritable even for root,
 * which ignores permission bits. Needs root and ext4.
 */
export async function withImmutableDir(
  dir: string,
  fn: () => Promise<void>,
): Promise<void> {
  await withCleanup(async () => {
    await sh("chattr", "+i", dir);
    await fn();
  }, () => sh("chattr", "-i", dir).then(() => {}));
}

/** Whether a file system is mounted at `path` (its device differs from its parent's). */
function mounted(path: string): boolean {
  try {
    return Deno.statSync(path).dev !== Deno.statSync(`${path}/..`).dev;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` with `mount ARGS... MOUNTPOINT` in place, unmounting after
 * (whatever failed, and however far the mount got). An unmount that fails
 * (a file left open there: "target is busy") is an error of its own, never
 * hiding the one before it; the file system is then detached lazily
 * (`umount -l`), so that the directory can still be removed.
 */
export async function withMount(
  args: string[],
  mountpoint: string,
  fn: () => Promise<void>,
): Promise<void> {
  await withCleanup(async () => {
    await sh("mount", ...args, mountpoint);
    await fn();
  }, async () => {
    if (!mounted(mountpoint)) return;
    try {
      await sh("umount", mountpoint);
    } catch (error) {
      await sh("umount", "-l", mountpoint);
      throw error;
    }
  });
}

/**
 * Runs `fn` with a new tmpfs of `size` (such as "1m") at `mountpoint`,
 * made for it and unmounted after: a disk that fills up. Needs root.
 */
export async function withTmpfs(
  mountpoint: string,
  size: string,
  fn: () => Promise<void>,
): Promise<void> {
  await Deno.mkdir(mountpoint);
  await withMount(
    ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs"],
    mountpoint,
    fn,
  );
}

/**
 * Runs `fn` with an ext4 file system at `${dir}/mnt` whose device cannot hold
 * what it promises: a 64 MB loop image on a 3 MB tmpfs. Writes succeed into
 * the page cache; the fsync that must push them to the device fails (ENOSPC,
 * or EIO), as a real failing disk's would. Needs root.
 */
export async function withFailingFsync(
  dir: string,
  fn: (mountpoint: string) => Promise<void>,
): Promise<void> {
  const small = `${dir}/small`;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  await withTmpfs(small, "3m", async () => {
    await sh("truncate", "-s", "64M", `${small}/img`);
    await sh("mkfs.ext4", "-q", "-F", `${small}/img`);
    await withMount(["-o", "loop", `${small}/img`], mnt, () => fn(mnt));
  });
}

/** The names in a directory, sorted. */
export function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/**
 * Kills store writers at random moments: in 4 lanes, starts `start(prefix)`
 * (a worker printing "ack ID" per acknowledged update), SIGKILLs it 0-40 ms
 * after its first ack, and calls `check(acked)` with every ID acknowledged so
 * far, until `kills` writers have been killed. Each check gets its own copy:
 * the IDs acknowledged before it began, which whatever it reads must hold,
 * and not those the other lanes add while it awaits its read (which may have
 * read the files before they were written).
 */
export async function killWriters(
  kills: number,
  start: (prefix: string) => Child,
  check: (acked: ReadonlySet<string>) => Promise<void>,
): Promise<void> {
  const acked = new Set<string>();
  let killed = 0;
  let round = 0;
  const lane = async (lane: number) => {
    while (killed < kills) {
      const child = start(`l${lane}r${round++}`);
      await child.waitFor("ack");
      await delay(Math.random() * 40);
      await child.kill();
      killed++;
      for (const line of child.lines) {
        if (line.startsWith("ack ")) acked.add(line.slice(4));
      }
      await check(new Set(acked));
    }
  };
  await Promise.all([lane(0), lane(1), lane(2), lane(3)]);
}

/** The paths this process has open that end with `suffix`, one per descriptor. */
export function openPaths(suffix: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
      if (target.endsWith(suffix)) found.push(target);
    } catch {
      // Closed while we looked.
    }
  }
  return found;
}

/**
 * The files under `dir` this process has open, one per descriptor (a
 * descriptor left open there keeps a file system from being unmounted).
 */
export function openUnder(dir: string): string[] {
  const prefix = `${Deno.realPathSync(dir)}/`;
  return openPaths("").filter((path) => path.startsWith(prefix)).sort();
}

/**
 * What a watch worker (`watch_store.ts`, `watch_store.mjs`) printed, as
 * [version, count, items, distinct] rows, checked: its versions strictly
 * grow, every document it saw was one a writer committed (count = items, all
 * distinct), its counts never go back, and the last is the final document.
 */
export function checkWatcher(
  lines: readonly string[],
  final: number,
): number[][] {
  const seen = lines.filter((l) => l.startsWith("v ")).map((l) =>
    l.split(" ").slice(1).map(Number)
  );
  assert.ok(seen.length >= 2, `only ${seen.length} versions seen`);
  for (const [i, [version, count, items, distinct]] of seen.entries()) {
    assert.equal(items, count, `version ${version}: half an update`);
    assert.equal(distinct, items);
    if (i > 0) {
      assert.ok(version > seen[i - 1][0], "versions must grow");
      assert.ok(
        count > seen[i - 1][1],
        `a later version is a later document: ${seen[i - 1]} then ${
          seen[i]
        } (${lines.length} lines)`,
      );
    }
  }
  assert.equal(seen.at(-1)![1], final);
  assert.ok(lines.includes("ended"));
  return seen;
}

/** Numbers in [0, 1) from a small seeded generator: the same for the same seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

/**
 * Runs `fn` with the process umask set to `mask` (restored after), and
 * returns the permission bits of each file `dir` holds then, by name.
 */
export async function modesUnderUmask(
  mask: number,
  dir: string,
  fn: () => Promise<void>,
): Promise<Record<string, string>> {
  const before = Deno.umask(mask);
  try {
    await fn();
  } finally {
    Deno.umask(before);
  }
  const modes: Record<string, string> = {};
  for (const name of names(dir)) {
    const mode = (await Deno.lstat(`${dir}/${name}`)).mode! & 0o7777;
    modes[name] = mode.toString(8);
  }
  return modes;
}

/**
 * The lines of an `strace -f` log with each call that another thread
 * interrupted ("<unfinished ...>", later "<... NAME resumed>") joined into
 * one line, at the place where it returned.
 */
export function straceLines(text: string): string[] {
  const started = new Map<string, string>();
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    const pid = line.split(/\s+/)[0];
    if (line.endsWith("<unfinished ...>")) {
      started.set(pid, line.slice(0, -"<unfinished ...>".length).trimEnd());
    } else if (/^\d+\s+<\.\.\. \w+ resumed>/.test(line)) {
      lines.push(`${started.get(pid) ?? ""}${line.replace(/^.*resumed>/, "")}`);
    } else lines.push(line);
  }
  return lines;
}
