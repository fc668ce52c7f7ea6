// Database URLs and passwords: however a URL is malformed, no error, cause,
// stack or CLI output shows its password; passwords with '@', ':' and '/'
// work percent-encoded, and PGPASSWORD and a .pgpass file work with
// `--db env`, on a throwaway cluster with a password-protected role.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { output, withTempDir } from "../_helpers.ts";
import { type Cluster, pgSuite } from "./_cluster.ts";
import { LockError } from "../../src/base/errors.ts";
import { PostgresBackend } from "../../src/postgres/mod.ts";

const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));

const { test: pgTest, stopAfterwards } = pgSuite("credentials");

/** Two distinct halves of every password below, neither of which may show. */
const SECRETS = ["S3CRET", "X9Y8"];

/**
 * URLs with a password in them, each malformed or failing in its own way:
 * the error type each must give.
 */
function badUrls(
  c: Cluster,
): [string, string, new (message: string) => Error][] {
  const port = c.port;
  return [
    ["bad port", "postgres://user:S3CRET@127.0.0.1:5540x/db", TypeError],
    ["unclosed [", "postgres://user:S3CRET@[::1/db", TypeError],
    [
      "%zz escape",
      `postgres://user:S3CRET%zzX9Y8@127.0.0.1:${port}/db`,
      TypeError,
    ],
    [
      "'@' in the password",
      "postgres://user:S3CRET@X9Y8@127.0.0.1:1/db",
      LockError,
    ],
    [
      "':' in the password",
      "postgres://user:S3CRET:X9Y8@127.0.0.1:1/db",
      LockError,
    ],
    [
      "'/' in the password",
      "postgres://user:S3CRET/X9Y8@127.0.0.1:1/db",
      TypeError,
    ],
    [
      "'#' in the password",
      "postgres://user:S3CRET#X9Y8@127.0.0.1:1/db",
      TypeError,
    ],
    [
      "password= in the query",
      "postgres://user@127.0.0.1:1/db?password=S3CRET&sslpassword=X9Y8",
      LockError,
    ],
    [
      "key=value string",
      `host=127.0.0.1 port=${port} user=postgres password=S3CRET`,
      TypeError,
    ],
    ["not postgres://", "mysql://user:S3CRET@127.0.0.1/db", TypeError],
    [
      "server reached, no such database",
      `postgres://postgres:S3CRET@127.0.0.1:${port}/nodb?password=X9Y8`,
      LockError,
    ],
  ];
}

function assertNoSecret(text: string, what: string): void {
  for (const secret of SECRETS) {
    assert.ok(!text.includes(secret), `${what} shows '${secret}':\n${text}`);
  }
}

async function lockbox(
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<{ code: number; text: string }> {
  const result = await output(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", CLI, ...args],
    env,
    cwd,
  });
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: result.code,
    text: decode(result.stdout) + decode(result.stderr),
  };
}

pgTest(
  "PostgresBackend.connect() shows no password in the error, its cause chain or its stack when the URL is malformed",
  async (c) => {
    for (const [shape, url, type] of badUrls(c)) {
      const error = await PostgresBackend.connect(url, { connectTimeout: 5000 })
        .then(
          () => assert.fail(`${shape}: connected`),
          (error: Error) => error,
        );
      assert.ok(error instanceof type, `${shape}: ${error}`);
      assert.match(error.message, /^Cannot connect/, shape);
      // inspect shows the cause chain, stacks and every property.
      assertNoSecret(
        `${error.message}\n${error.stack}\n${
          Deno.inspect(error, { depth: 9 })
        }`,
        shape,
      );
    }
  },
);

pgTest(
  "lockbox --db shows no password when the URL, or LOCKBOX_DATABASE_URL, is malformed",
  async (c) => {
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/s.json`, "{}");
      for (const [shape, url, type] of badUrls(c)) {
        const code = type === TypeError ? 2 : 3;
        const direct = await lockbox(["holder", "--db", url, "job"]);
        assert.equal(direct.code, code, `${shape}: ${direct.text}`);
        assert.match(direct.text, /Cannot connect/, shape);
        assertNoSecret(direct.text, `holder --db (${shape})`);
        const env = await lockbox(["status", "--db", "env", "--json"], {
          LOCKBOX_DATABASE_URL: url,
        });
        assert.equal(env.code, code, `${shape}: ${env.text}`);
        assertNoSecret(env.text, `status --db env --json (${shape})`);
      }
      for (const command of [["holder"], ["store", "get"], ["migrate"]]) {
        const help = await lockbox([...command, "--help"]);
        assert.match(help.text, /shows in ps:\s+prefer\s+'env',\s+PGPASSWORD/);
      }
      // Where --db may name a file, a key=value string is still no file.
      const keyValue = `host=127.0.0.1 port=${c.port} password=S3CRET`;
      for (
        const command of [["groups", "--db", keyValue, "create"], [
          "ops",
          "--db",
          keyValue,
          "--groups-db",
          "g",
          "list",
        ]]
      ) {
        const result = await lockbox(command, {}, dir);
        assert.equal(result.code, 2, result.text);
        assertNoSecret(result.text, command.join(" "));
      }
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [
        "s.json",
      ]);
      const [, url] = badUrls(c)[0];
      for (
        const args of [
          ["migrate", "--db", url, `${dir}/s.json`],
          ["store", "get", "--db", url, "doc"],
          ["run", "--db", url, "job", "true"],
        ]
      ) {
        const result = await lockbox(args);
        assert.equal(result.code, 2, `${args[0]}: ${result.text}`);
        assertNoSecret(result.text, args.join(" "));
      }
    });
  },
);

pgTest(
  "PostgresBackend.connect() logs in with a password holding '@', ':', '/' and '%' percent-encoded, from PGPASSWORD and from a .pgpass file",
  async (c) => {
    const password = "p@ss:w/rd%?";
    await c.sql(
      `CREATE ROLE pwuser LOGIN PASSWORD '${password}' SUPERUSER`,
    );
    const hba = `${c.dir}/data/pg_hba.conf`;
    const original = await Deno.readTextFile(hba);
    await Deno.writeTextFile(
      hba,
      `host all pwuser 127.0.0.1/32 scram-sha-256\n${original}`,
    );
    await c.sql("SELECT pg_reload_conf()");
    try {
      const url = `postgres://pwuser:${
        encodeURIComponent(password)
      }@127.0.0.1:${c.port}/postgres`;
      {
        await using db = await PostgresBackend.connect(url);
        assert.equal((await db.acquire("pw")).token, 1);
      }
      // The role does need the password: a wrong one is refused.
      await assert.rejects(
        PostgresBackend.connect(
          `postgres://pwuser:wrong@127.0.0.1:${c.port}/postgres`,
        ),
        (error: Error) =>
          error instanceof LockError && /password/.test(error.message),
      );
      const tcp = {
        PGHOST: "127.0.0.1",
        PGPORT: String(c.port),
        PGUSER: "pwuser",
        PGDATABASE: "postgres",
      };
      const fromVariable = await lockbox(["status", "--db", "env", "--json"], {
        ...tcp,
        PGPASSWORD: password,
      });
      assert.equal(fromVariable.code, 0, fromVariable.text);
      await withTempDir(async (dir) => {
        const passfile = `${dir}/pgpass`;
        // .pgpass escapes ':' and '\' with a backslash.
        await Deno.writeTextFile(
          passfile,
          `127.0.0.1:${c.port}:*:pwuser:${password.replaceAll(":", "\\:")}\n`,
          { mode: 0o600 },
        );
        const fromFile = await lockbox(["status", "--db", "env", "--json"], {
          ...tcp,
          PGPASSFILE: passfile,
        });
        assert.equal(fromFile.code, 0, fromFile.text);
        const none = await lockbox(["status", "--db", "env", "--json"], tcp);
        assert.notEqual(none.code, 0, none.text);
      });
    } finally {
      await Deno.writeTextFile(hba, original);
      await c.sql("SELECT pg_reload_conf()");
    }
  },
);

stopAfterwards();
