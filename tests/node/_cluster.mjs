// A throwaway PostgreSQL cluster for the Node suite, as the Deno tests'
// testing/postgres.ts makes one: initdb (as the postgres user when
// root), fsync on, a Unix socket and 127.0.0.1. `null` when PostgreSQL's
// server is not installed, except in CI (CI=true), where that is an error.

import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";

function binDir() {
  if (!existsSync("/usr/lib/postgresql")) return null;
  const versions = readdirSync("/usr/lib/postgresql")
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const bin = `/usr/lib/postgresql/${version}/bin`;
    if (existsSync(`${bin}/initdb`)) return bin;
  }
  return null;
}

export const PG_BIN = binDir();
export const NO_POSTGRES = PG_BIN === null && process.env.CI !== "true";

const isRoot = process.getuid?.() === 0;

/** A TCP port on 127.0.0.1 that nothing listens on now, the kernel's pick. */
export function freePort() {
  const result = spawnSync(process.execPath, [
    "-e",
    `const server = require("node:net").createServer();
server.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
  server.close();
});`,
  ], { encoding: "utf8", timeout: 60_000 });
  const port = Number(result.stdout);
  if (result.status !== 0 || !Number.isInteger(port) || port <= 0) {
    throw new Error(`No free port: ${result.stderr}${result.stdout}`);
  }
  return port;
}

function asServerUser(command, args) {
  const argv = isRoot
    ? ["runuser", "-u", "postgres", "--", command, ...args]
    : [command, ...args];
  const result = spawnSync(argv[0], argv.slice(1), {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${
        args.join(" ")
      } exited ${result.status}: ${result.stderr}${result.stdout}`,
    );
  }
  return result.stdout;
}

/** A running cluster: its directory, port, URL and libpq variables. */
export class Cluster {
  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    this.env = {
      PGHOST: dir,
      PGPORT: String(port),
      PGUSER: "postgres",
      PGDATABASE: "postgres",
    };
  }

  /** initdb and start, on `options.port` if it is free, else on another. */
  static start(options = {}) {
    if (PG_BIN === null) {
      throw new Error(
        "PostgreSQL's server binaries are missing: apt-get install postgresql (.ci/run does)",
      );
    }
    const dir = mkdtempSync(`${tmpdir()}/lockbox_node_pg_`);
    chmodSync(dir, 0o755);
    if (isRoot) {
      const uid = Number(
        spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout,
      );
      chownSync(dir, uid, 0);
    }
    asServerUser(`${PG_BIN}/initdb`, [
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
    // A port the kernel picks (test files run in parallel, and a port
    // computed from a pid can be another cluster's); one taken between the
    // pick and the server's bind is tried again.
    let port = options.port ?? freePort();
    for (let attempt = 1;; attempt++) {
      try {
        new Cluster(dir, port).ctl("start");
        return new Cluster(dir, port);
      } catch (error) {
        const log = existsSync(`${dir}/log`)
          ? readFileSync(`${dir}/log`, "utf8")
          : "";
        if (attempt === 5 || !log.includes("Address already in use")) {
          throw error;
        }
        rmSync(`${dir}/log`);
        port = freePort();
      }
    }
  }

  ctl(action, ...extra) {
    asServerUser(`${PG_BIN}/pg_ctl`, [
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

  /** A server crash and restart. */
  crash() {
    this.ctl("restart", "-m", "immediate");
  }

  /** Runs SQL through psql as the superuser; its unaligned output. */
  sql(query) {
    const result = spawnSync(`${PG_BIN}/psql`, [
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
    ], { encoding: "utf8", timeout: 60_000 });
    if (result.status !== 0) throw new Error(`psql: ${result.stderr}`);
    return result.stdout.trim();
  }

  stop() {
    try {
      this.ctl("stop", "-m", "fast");
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
