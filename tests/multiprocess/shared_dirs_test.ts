// Stores, locks and logs in a directory that users share through a group
// (setgid 2775, umask 002), with real Unix users: each process runs as one
// of them (runuser) and works on the files the other made. Needs root, to
// make the users and to switch to them; skipped with a message otherwise.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { JsonStore } from "../../mod.ts";
import { names, output, sh, withTempDir } from "../_helpers.ts";

const ROOT = Deno.uid() === 0;
const GROUP = "lockbox_team";
const ANN = "lockbox_ann";
const BOB = "lockbox_bob";

/** What `act.ts` printed, parsed, or its error. */
// deno-lint-ignore no-explicit-any
type Result = Record<string, any>;

const ACT = `import {
  appendJsonl,
  atomicWriteFile,
  FileLock,
  JsonStore,
  lockHolder,
} from "./lib/mod.ts";
const { action, count, dir, user } = JSON.parse(Deno.args[0]);
const out: Record<string, unknown> = {};
try {
  for (let i = 0; action === "cycle" && i < (count ?? 1); i++) {
    // A job lock's token fences an update of each kind of store.
    const lock = await FileLock.acquire(\`\${dir}/job\`, { metadata: { user } });
    out.token = lock.token;
    out.tokens = [...(out.tokens as number[] ?? []), lock.token];
    out.holder = await lockHolder(\`\${dir}/job\`);
    for (const journal of [false, true]) {
      const store = new JsonStore<{ log: unknown[] }>(
        \`\${dir}/\${journal ? "journal" : "whole"}.json\`,
        { initial: { log: [] }, journal, compactAt: 0, backups: journal ? 0 : 2 },
      );
      await store.update((d) => void d.log.push({ user, token: lock.token }), {
        fence: lock.token,
      });
    }
    await appendJsonl(\`\${dir}/audit.jsonl\`, [{ user, token: lock.token }]);
    await atomicWriteFile(\`\${dir}/note-\${user}.txt\`, user);
    await lock.release();
  }
  if (action === "update") {
    const store = new JsonStore<{ log: unknown[] }>(\`\${dir}/whole.json\`, {
      initial: { log: [] },
    });
    await store.update((d) => void d.log.push({ user }));
  } else if (action === "append") {
    await appendJsonl(\`\${dir}/audit.jsonl\`, [{ user }]);
  } else if (action === "exclusive" || action === "shared") {
    const lock = await FileLock.acquire(\`\${dir}/job\`, {
      shared: action === "shared",
      metadata: { user },
    });
    out.token = lock.token;
    await lock.release();
  }
} catch (error) {
  out.error = { name: (error as Error).name, message: (error as Error).message };
}
console.log(JSON.stringify(out));
`;

/**
 * Makes the group and its two users, unless they exist (kept after). Another
 * suite on the machine may make them at the same moment: a failed add is
 * fine when the name exists afterwards.
 */
async function ensureUsers(): Promise<void> {
  const exists = async (db: string, name: string) =>
    (await output("getent", { args: [db, name] })).success;
  const add = async (db: string, name: string, ...args: string[]) => {
    if (await exists(db, name)) return;
    const command = db === "group" ? "groupadd" : "useradd";
    const added = await output(command, { args: [...args, name] });
    if (!added.success && !await exists(db, name)) {
      throw new Error(
        `${command} ${name} exited ${added.code}: ${
          new TextDecoder().decode(added.stderr)
        }`,
      );
    }
  };
  await add("group", GROUP);
  for (const user of [ANN, BOB]) {
    await add("passwd", user, "-M", "-N", "-g", GROUP, "-s", "/bin/sh");
  }
}

/** A user's uid, or a group's gid. */
async function idOf(db: "passwd" | "group", name: string): Promise<number> {
  return Number((await sh("getent", db, name)).split(":")[2]);
}

/**
 * A sandbox the test users can reach: this Deno (linked, or copied), the
 * library's sources, the script, and a home for each user.
 */
async function sandbox(tmp: string): Promise<
  (
    user: string,
    umask: string,
    job: Record<string, unknown>,
  ) => Promise<Result>
> {
  await Deno.chmod(tmp, 0o755);
  const deno = `${tmp}/deno`;
  try {
    await Deno.link(Deno.execPath(), deno);
  } catch {
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
  }
  await Deno.mkdir(`${tmp}/lib`);
  await sh(
    "cp",
    "-r",
    fileURLToPath(new URL("../../src", import.meta.url)),
    fileURLToPath(new URL("../../mod.ts", import.meta.url)),
    `${tmp}/lib/`,
  );
  await Deno.writeTextFile(`${tmp}/act.ts`, ACT);
  await sh("chmod", "-R", "a+rX", `${tmp}/lib`, `${tmp}/act.ts`);
  for (const user of [ANN, BOB]) {
    await Deno.mkdir(`${tmp}/home-${user}`);
    await sh("chown", user, `${tmp}/home-${user}`);
  }
  return async (user, umask, job) => {
    const home = `${tmp}/home-${user}`;
    const out = await output("runuser", {
      args: [
        "-u",
        user,
        "--",
        "/bin/sh",
        "-c",
        `umask ${umask} && exec "$@"`,
        "sh",
        deno,
        "run",
        "--allow-all",
        "--no-config",
        "--quiet",
        `${tmp}/act.ts`,
        JSON.stringify({ ...job, user }),
      ],
      env: { HOME: home, DENO_DIR: `${home}/deno`, NO_COLOR: "1" },
      clearEnv: true,
    });
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    assert.equal(out.code, 0, text(out.stderr));
    return JSON.parse(text(out.stdout));
  };
}

/** A directory of the group, setgid, as teams share one: 2775. */
async function teamDir(tmp: string, mode = 0o2775): Promise<string> {
  const dir = `${tmp}/team`;
  await Deno.mkdir(dir);
  await sh("chown", `root:${GROUP}`, dir);
  await Deno.chmod(dir, mode);
  return dir;
}

function test(name: string, fn: (tmp: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !ROOT,
    fn: () => withTempDir(async (tmp) => await fn(tmp)),
  });
}
if (!ROOT) {
  console.warn(
    "shared_dirs_test.ts: skipped, it needs root (to make users and run as them)",
  );
}
if (ROOT) await ensureUsers();

test("JsonStore, FileLock and appendJsonl in a setgid group directory with umask 002: two users update each other's files, files get 0664, tokens grow and holder records are written", async (tmp) => {
  const run = await sandbox(tmp);
  const dir = await teamDir(tmp);
  const gid = await idOf("group", GROUP);
  const users = [ANN, BOB, ANN, BOB];
  const tokens: number[] = [];
  for (const user of users) {
    const result = await run(user, "002", { action: "cycle", dir });
    assert.equal(result.error, undefined, JSON.stringify(result.error));
    // The record was written, by this user's process, with its token.
    assert.equal(result.holder?.metadata?.user, user);
    assert.equal(result.holder?.token, result.token);
    tokens.push(result.token);
  }
  for (let i = 1; i < tokens.length; i++) {
    assert.ok(tokens[i] === tokens[i - 1] + 1, `tokens ${tokens}`);
  }
  assert.ok(tokens[0] > 0);
  for (const name of ["whole.json", "journal.json"]) {
    const doc = JSON.parse(await Deno.readTextFile(`${dir}/${name}`));
    assert.deepEqual(
      doc.log,
      users.map((user, i) => ({ user, token: tokens[i] })),
      name,
    );
  }
  const audit = (await Deno.readTextFile(`${dir}/audit.jsonl`)).trim();
  assert.equal(audit.split("\n").length, 4);
  // Every file made here: 0666 less the umask, in the directory's group.
  const files = names(dir);
  for (
    const expected of [
      "job.lock",
      "whole.json",
      "whole.json.lock",
      "whole.json.fence",
      "whole.json.bak.1",
      "whole.json.bak.2",
      "journal.json",
      "journal.json.journal",
      "audit.jsonl",
      "audit.jsonl.lock",
      `note-${ANN}.txt`,
    ]
  ) assert.ok(files.includes(expected), `${expected} in ${files}`);
  for (const name of files) {
    const info = await Deno.lstat(`${dir}/${name}`);
    assert.deepEqual([info.mode! & 0o7777, info.gid], [0o664, gid], name);
  }
  // A replace by a user who is not root cannot keep another user's
  // ownership: the last writer owns the store, with its group and mode.
  const bob = await idOf("passwd", BOB);
  assert.equal((await Deno.lstat(`${dir}/whole.json`)).uid, bob);
  // Root writing it keeps it bob's.
  const store = new JsonStore<{ log: unknown[] }>(`${dir}/whole.json`, {
    initial: { log: [] },
  });
  await store.update((d) => void d.log.push({ user: "root" }));
  const info = await Deno.lstat(`${dir}/whole.json`);
  assert.deepEqual([info.uid, info.gid, info.mode! & 0o7777], [
    bob,
    gid,
    0o664,
  ]);
});

test("FileLock and JsonStore in a setgid group directory: two users' processes at once, 10 fenced cycles each, tokens one apart and every update kept", async (tmp) => {
  const run = await sandbox(tmp);
  const dir = await teamDir(tmp);
  const results = await Promise.all(
    [ANN, BOB].map((user) =>
      run(user, "002", { action: "cycle", dir, count: 10 })
    ),
  );
  for (const result of results) {
    assert.equal(result.error, undefined, JSON.stringify(result.error));
  }
  const tokens = results.flatMap((result) => result.tokens as number[]);
  // Each exclusive acquisition, whoever made it, one more than the last.
  const sorted = [...tokens].sort((a, b) => a - b);
  assert.deepEqual(sorted, sorted.map((_, i) => sorted[0] + i));
  for (const name of ["whole.json", "journal.json"]) {
    const doc = JSON.parse(await Deno.readTextFile(`${dir}/${name}`));
    // In lock order, so in token order, one per cycle.
    const logged = doc.log.map((entry: { token: number }) => entry.token);
    assert.deepEqual(logged, sorted, name);
  }
});

test("JsonStore.update() refuses another user's store this user may not write or whose group it is not in, and FileLock.acquire() an exclusive lock on such a lock file, naming the cause", async (tmp) => {
  const run = await sandbox(tmp);
  const dir = await teamDir(tmp);
  // Made under umask 022: 0644, not writable for the group.
  const made = await run(ANN, "022", { action: "cycle", dir });
  assert.equal(made.error, undefined, JSON.stringify(made.error));
  const before = await Deno.readTextFile(`${dir}/whole.json`);
  // The store's lock file may be shared; the store itself is ann's alone.
  await Deno.chmod(`${dir}/whole.json.lock`, 0o664);

  const update = await run(BOB, "002", { action: "update", dir });
  assert.equal(update.error?.name, "StoreError");
  assert.match(update.error.message, /may not write it/);
  assert.doesNotMatch(update.error.message, /chown|proc\/self/);
  assert.equal(await Deno.readTextFile(`${dir}/whole.json`), before);
  assert.deepEqual(
    names(dir).filter((name) => name.includes("tmp")),
    [],
  );
  // Writable for everyone, but in a group bob is not in: a replacement of
  // bob's could not keep that group, and its members would lose access.
  await Deno.chown(`${dir}/whole.json`, null, 0);
  await Deno.chmod(`${dir}/whole.json`, 0o666);
  const foreign = await run(BOB, "002", { action: "update", dir });
  assert.equal(foreign.error?.name, "StoreError");
  assert.match(foreign.error.message, /not a member/);
  assert.equal(await Deno.readTextFile(`${dir}/whole.json`), before);
  assert.equal((await Deno.lstat(`${dir}/whole.json`)).gid, 0);

  // The job lock file holds ann's record, which bob may not advance.
  const exclusive = await run(BOB, "002", { action: "exclusive", dir });
  assert.equal(exclusive.error?.name, "LockError");
  assert.match(exclusive.error.message, /may not write it.*fencing token/);
  // A shared lock keeps the token, which needs no write.
  const shared = await run(BOB, "002", { action: "shared", dir });
  assert.equal(shared.error, undefined, JSON.stringify(shared.error));
  assert.equal(shared.token, made.token);
});

test("appendJsonl() appends to another user's log in a sticky world-writable directory under fs.protected_regular, and JsonStore.update() says a sticky directory is why it cannot replace a store there", async (tmp) => {
  const sysctl = "/proc/sys/fs/protected_regular";
  let before: string;
  try {
    before = (await Deno.readTextFile(sysctl)).trim();
    await Deno.writeTextFile(sysctl, "1");
  } catch (error) {
    console.warn(`skipped: cannot set fs.protected_regular: ${error}`);
    return;
  }
  try {
    const run = await sandbox(tmp);
    const dir = `${tmp}/shared`; // like /tmp: root's, 1777
    await Deno.mkdir(dir);
    await Deno.chmod(dir, 0o1777);
    for (const user of [ANN, BOB, ANN]) {
      // umask 0: each log and lock file is writable by everyone.
      const result = await run(user, "000", { action: "append", dir });
      assert.equal(result.error, undefined, JSON.stringify(result.error));
    }
    const lines = (await Deno.readTextFile(`${dir}/audit.jsonl`)).trim()
      .split("\n").map((line) => JSON.parse(line).user);
    assert.deepEqual(lines, [ANN, BOB, ANN]);

    assert.equal(
      (await run(ANN, "000", { action: "update", dir })).error,
      undefined,
    );
    const update = await run(BOB, "000", { action: "update", dir });
    assert.equal(update.error?.name, "StoreError");
    assert.match(update.error.message, /sticky directory/);
  } finally {
    await Deno.writeTextFile(sysctl, before);
  }
});
