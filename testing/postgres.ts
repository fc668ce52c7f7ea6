// PostgreSQL servers to run against, for the tests (tests/postgres/_cluster.ts)
// and the benchmarks (bench/_postgres.ts): a throwaway cluster, initdb in a
// temporary directory (as the postgres user when running as root, since
// initdb refuses root), fsync on, a Unix socket and 127.0.0.1, which its
// owner may crash (`pg_ctl restart -m immediate`) and stops at the end; and
// PgBouncer in front of one.

import { output } from "./output.ts";

function binDir(): string | null {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((entry) => entry.name)
      .filter((name) => /^\d+$/.test(name))
      .sort((a, b) => Number(a) - Number(b));
    for (const version of versions.reverse()) {
      const bin = `/usr/lib/postgresql/${version}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        return bin;
      } catch { /* next */ }
    }
  } catch { /* no Debian layout */ }
  return null;
}

/** The server binaries, or `null` when PostgreSQL is not installed. */
export const PG_BIN = binDir();

const isRoot = Deno.uid() === 0;

async function asServerUser(command: string, args: string[]): Promise<string> {
  const argv = isRoot
    ? ["runuser", "-u", "postgres", "--", command, ...args]
    : [command, ...args];
  const result = await output(argv[0], { args: argv.slice(1) });
  const text = new TextDecoder().decode(result.stdout);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} exited ${result.code}: ${
        new TextDecoder().decode(result.stderr)
      }${text}`,
    );
  }
  return text;
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on now, the kernel's pick:
 * test files run in parallel (and other suites on the machine), so a port
 * computed from a pid can be another cluster's or PgBouncer's.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A running throwaway cluster. */
export class Cluster {
  readonly dir: string;
  readonly port: number;
  /** libpq variables that point at it (PGHOST, PGPORT, PGUSER, PGDATABASE). */
  readonly env: Record<string, string>;
  /** Its URL over TCP, with the socket directory as host fallback. */
  readonly url: string;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    this.env = {
      PGHOST: dir,
      PGPORT: String(port),
      PGUSER: "postgres",
      PGDATABASE: "postgres",
    };
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  }

  /**
   * initdb and start a new cluster, on `options.port` if given and free, on
   * another free port otherwise (one taken between the pick and the server's
   * bind is tried again).
   */
  static async start(options: { port?: number } = {}): Promise<Cluster> {
    if (PG_BIN === null) {
      throw new Error(
        "PostgreSQL's server binaries are missing: apt-get install postgresql (.ci/run does)",
      );
    }
    const dir = await Deno.makeTempDir({ prefix: "lockbox_pg_" });
    await Deno.chmod(dir, 0o755);
    if (isRoot) await output("chown", { args: ["postgres", dir] });
    await asServerUser(`${PG_BIN}/initdb`, [
      "-D",
      `${dir}/data`,
      "-A",
      "trust",
      "-U",
      "postgres",
      "--no-sync",
      "-E",
      "UTF8",
    ]);
    let port = options.port ?? freePort();
    for (let attempt = 1;; attempt++) {
      try {
        await new Cluster(dir, port).#ctl("start");
        break;
      } catch (error) {
        let log = "";
        try {
          log = await Deno.readTextFile(`${dir}/log`);
        } catch { /* no log: not a bind failure */ }
        if (attempt === 5 || !log.includes("Address already in use")) {
          throw error;
        }
        await Deno.remove(`${dir}/log`);
        port = freePort();
      }
    }
    const cluster = new Cluster(dir, port);
    // Stopped at the end of the test run even when its own "stop" test did
    // not run (a --filter, a failure before it): unload allows only
    // synchronous work.
    globalThis.addEventListener("unload", () => cluster.#stopNow());
    return cluster;
  }

  #stopped = false;

  #stopNow(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const ctl = [
      `${PG_BIN}/pg_ctl`,
      "-D",
      `${this.dir}/data`,
      "-m",
      "immediate",
      "stop",
    ];
    const argv = isRoot ? ["runuser", "-u", "postgres", "--", ...ctl] : ctl;
    new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "null",
      stderr: "null",
    }).outputSync();
    Deno.removeSync(this.dir, { recursive: true });
  }

  async #ctl(action: string, ...extra: string[]): Promise<void> {
    await asServerUser(`${PG_BIN}/pg_ctl`, [
      "-D",
      `${this.dir}/data`,
      "-l",
      `${this.dir}/log`,
      "-w",
      ...extra,
      action,
      "-o",
      `-k ${this.dir} -p ${this.port} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on`,
    ]);
  }

  /** A server crash and restart: `pg_ctl restart -m immediate`. */
  async crash(): Promise<void> {
    await this.#ctl("restart", "-m", "immediate");
  }

  /** Runs SQL as the superuser through psql; its output, unaligned. */
  async sql(query: string): Promise<string> {
    const result = await output(`${PG_BIN}/psql`, {
      args: [
        "-h",
        this.dir,
        "-p",
        String(this.port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        query,
      ],
    });
    if (result.code !== 0) {
      throw new Error(`psql: ${new TextDecoder().decode(result.stderr)}`);
    }
    return new TextDecoder().decode(result.stdout).trim();
  }

  /** Stops the cluster and removes its directory. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      await this.#ctl("stop", "-m", "fast");
    } finally {
      await Deno.remove(this.dir, { recursive: true });
    }
  }
}

/** PgBouncer's binary, or `null` when it is not installed. */
export const PGBOUNCER = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].find(
  (path) => {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  },
) ?? null;

/**
 * Starts PgBouncer in front of `cluster` in `mode` ("session" or
 * "transaction"); returns its URL and a function that stops it.
 */
export async function startPgBouncer(
  cluster: Cluster,
  mode: "session" | "transaction",
): Promise<{ url: string; stop: () => Promise<void> }> {
  if (PGBOUNCER === null) {
    throw new Error("PgBouncer is missing: apt-get install pgbouncer");
  }
  const dir = `${cluster.dir}/pgbouncer-${mode}`;
  await Deno.mkdir(dir, { recursive: true });
  const port = freePort();
  await Deno.writeTextFile(`${dir}/users.txt`, `"postgres" ""\n`);
  await Deno.writeTextFile(
    `${dir}/pgbouncer.ini`,
    `[databases]
postgres = host=127.0.0.1 port=${cluster.port} dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${dir}/users.txt
pool_mode = ${mode}
default_pool_size = 4
max_client_conn = 100
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
`,
  );
  if (isRoot) await output("chown", { args: ["-R", "postgres", dir] });
  await asServerUser(PGBOUNCER, ["-d", `${dir}/pgbouncer.ini`]);
  // Ready once it accepts connections.
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      const pid = Number(await Deno.readTextFile(`${dir}/pgbouncer.pid`));
      Deno.kill(pid, "SIGTERM");
      for (let i = 0; i < 100; i++) {
        try {
          Deno.statSync(`/proc/${pid}`);
        } catch {
          return; // gone
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}
