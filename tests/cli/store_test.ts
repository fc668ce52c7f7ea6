// `lockbox store` get, set, delete, check, reset-fence and watch on real
// stores, whole-file and journal mode, beside JsonStores in this process.
// `store edit` is in store_edit_test.ts.

import assert from "node:assert/strict";
import { JsonStore, StaleFenceError, StoreError } from "../../mod.ts";
import { Child, names, withTempDir } from "../_helpers.ts";
import { CLI, lockbox, ok, quoted, run } from "./_cli.ts";

/** The bytes a store keeps its document in: the journal in journal mode. */
async function bytesOf(file: string): Promise<string> {
  const journal = `${file}.journal`;
  try {
    return await Deno.readTextFile(journal) +
      await Deno.readTextFile(file).catch(() => "");
  } catch {
    return await Deno.readTextFile(file);
  }
}

for (const journal of [false, true]) {
  const mode = journal ? "journal-mode" : "whole-file";
  Deno.test(`lockbox store get, set and delete take the pointer after FILE on a ${mode} store a JsonStore wrote`, async () => {
    await withTempDir(async (dir) => {
      const file = `${dir}/app.json`;
      const library = new JsonStore<Record<string, unknown>>(file, {
        initial: {},
        journal,
      });
      await library.write({ name: "web-1", retries: 3 });

      // `-` appends, and makes the array when the parent is missing.
      await ok(["store", "set", file, "/jobs/-", '"a"']);
      await ok(["store", "set", file, "/jobs/-", '"b"']);
      await ok(["store", "set", file, "/deep/list/-/id", "7"]);
      assert.deepEqual(await library.read(), {
        name: "web-1",
        retries: 3,
        jobs: ["a", "b"],
        deep: { list: [{ id: 7 }] },
      });

      // A bare word is not JSON: a usage error that names --string.
      const bare = await lockbox(["store", "set", file, "/name", "hello"]);
      assert.equal(bare.code, 2);
      assert.match(bare.stderr, /--string/);
      await ok(["store", "set", "--string", file, "/name", "hello"]);
      await ok(["store", "set", file, "/n", "42", "--string"]);
      assert.equal((await library.read()).name, "hello");
      assert.equal((await library.read()).n, "42");

      // get: positional pointer, --raw, and --pointer kept for old scripts.
      assert.equal(await ok(["store", "get", file, "/name"]), '"hello"\n');
      assert.equal(
        await ok(["store", "get", "--raw", file, "/name"]),
        "hello\n",
      );
      assert.equal(
        await ok(["store", "get", file, "--pointer", "/jobs/1", "--raw"]),
        "b\n",
      );
      assert.equal(
        await ok(["store", "get", "--raw", file, "/retries"]),
        "3\n",
      );
      assert.deepEqual(
        JSON.parse(await ok(["store", "get", "--raw", file, "/jobs"])),
        ["a", "b"],
      );
      const twice = await lockbox([
        "store",
        "get",
        file,
        "/a",
        "--pointer",
        "/b",
      ]);
      assert.equal(twice.code, 2);
      const none = await lockbox(["store", "get", file, "/nope"]);
      assert.equal(none.code, 1);

      // delete: an array element moves the rest up; an object key goes.
      await ok(["store", "delete", file, "/jobs/0"]);
      await ok(["store", "delete", file, "/retries"]);
      assert.deepEqual(await library.read(), {
        name: "hello",
        n: "42",
        jobs: ["b"],
        deep: { list: [{ id: 7 }] },
      });
      // Nothing there: status 1 and not a byte written; --force: status 0.
      const before = await bytesOf(file);
      for (const pointer of ["/retries", "/jobs/5", "/jobs/-", "/name/x"]) {
        const absent = await lockbox(["store", "delete", file, pointer]);
        assert.equal(absent.code, 1, pointer);
        assert.match(absent.stderr, /no value there; nothing written/);
        assert.equal(
          (await lockbox(["store", "delete", "-f", file, pointer])).code,
          0,
        );
      }
      assert.equal(await bytesOf(file), before);
      assert.equal((await lockbox(["store", "delete", file, ""])).code, 2);
      assert.deepEqual(
        await new JsonStore(file, { initial: null, journal }).read(),
        { name: "hello", n: "42", jobs: ["b"], deep: { list: [{ id: 7 }] } },
      );
    });
  });
}

Deno.test("lockbox store set makes a missing file an array for /-, and store delete never creates a file", async () => {
  await withTempDir(async (dir) => {
    await ok(["store", "set", `${dir}/q.json`, "/-", '"first"']);
    await ok(["store", "set", `${dir}/q.json`, "/-", '"second"']);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/q.json`)), [
      "first",
      "second",
    ]);
    const missing = await lockbox([
      "store",
      "delete",
      `${dir}/none.json`,
      "/x",
    ]);
    assert.equal(missing.code, 1);
    assert.equal(
      (await lockbox(["store", "delete", "-f", `${dir}/none.json`, "/x"])).code,
      0,
    );
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["q.json", "q.json.lock"],
    );
  });
});

Deno.test("lockbox store check --json gives each file's status and the worst exit status", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.json`, "{}");
    await Deno.writeTextFile(`${dir}/bad.json`, "{oops");
    const files = ["good.json", "bad.json", "none.json"].map((f) =>
      `${dir}/${f}`
    );
    const out = await lockbox(["store", "check", "--json", ...files]);
    assert.equal(out.code, 3, out.stderr);
    const results = JSON.parse(out.stdout);
    assert.deepEqual(
      results.map((r: { file: string; status: string }) => [r.file, r.status]),
      [[files[0], "ok"], [files[1], "corrupt"], [files[2], "missing"]],
    );
    assert.match(results[1].reason, /not valid JSON/);
    const missing = await lockbox(["store", "check", "--json", files[2]]);
    assert.equal(missing.code, 1);
    const fixed = await lockbox([
      "store",
      "check",
      "--json",
      "--quarantine",
      files[1],
    ]);
    assert.equal(fixed.code, 0, fixed.stderr);
    const [quarantined] = JSON.parse(fixed.stdout);
    assert.equal(quarantined.status, "quarantined");
    assert.match(quarantined.reason, /bad\.json\.corrupt-/);
  });
});

Deno.test("lockbox store get on a corrupt store names the CLI's remedy, which works, in both modes", async () => {
  await withTempDir(async (dir) => {
    const whole = `${dir}/my state.json`;
    await Deno.writeTextFile(whole, "{oops");
    const journaled = `${dir}/j.json`;
    await new JsonStore(journaled, { initial: {}, journal: true }).write({
      a: 1,
    });
    await Deno.writeTextFile(`${journaled}.journal`, "garbage\n");
    for (const file of [whole, journaled]) {
      const out = await lockbox(["store", "get", file]);
      assert.equal(out.code, 3);
      assert.doesNotMatch(out.stderr, /onCorrupt/);
      const command = /with: (lockbox store check --quarantine .*)\n$/.exec(
        out.stderr,
      );
      assert.ok(command, out.stderr);
      // The command as printed, run by a shell, clears the way.
      const fixed = await run([
        "bash",
        "-c",
        command[1].replace(/^lockbox/, CLI.map((p) => `'${p}'`).join(" ")),
      ]);
      assert.equal(fixed.code, 0, fixed.stderr);
      assert.equal((await lockbox(["store", "get", file])).code, 0);
    }
  });
});

Deno.test("lockbox store get on a file it may not read says so, not that the directory is not writable", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/secret.json`;
    await Deno.writeTextFile(file, '{"k":1}');
    await Deno.chmod(file, 0o000);
    // Root reads any file: drop the capabilities that let it.
    const out = await run([
      "setpriv",
      "--inh-caps=-all",
      "--bounding-set=-dac_override,-dac_read_search",
      ...CLI,
      "store",
      "get",
      file,
    ]);
    assert.equal(out.code, 3, out.stderr);
    assert.match(out.stderr, /Cannot read '.*secret\.json'/);
    assert.match(out.stderr, /may read the file/);
    assert.doesNotMatch(out.stderr, /directory is writable/);
  });
});

Deno.test("lockbox store set from 8 concurrent shells loses no write", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    const shells = Array.from({ length: 8 }, (_, i) =>
      new Child("sh", [
        "-c",
        `for j in 1 2 3; do ${quoted} store set ${file} /s${i}/k$j $j || exit 1; done`,
      ]));
    for (const shell of shells) {
      const result = await shell.finish();
      assert.equal(result.code, 0, result.stderr);
    }
    const doc = JSON.parse(await Deno.readTextFile(file));
    assert.equal(Object.keys(doc).length, 8);
    for (let i = 0; i < 8; i++) {
      assert.deepEqual(doc[`s${i}`], { k1: 1, k2: 2, k3: 3 });
    }
    const got = await lockbox(["store", "get", file, "--pointer", "/s3/k2"]);
    assert.equal(got.stdout, "2\n");
    assert.equal(
      (await lockbox(["store", "get", file, "--pointer", "/nope"])).code,
      1,
    );
    const bad = await lockbox(["store", "set", file, "/x", "{not json"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Usage: lockbox store set/);
  });
});

Deno.test("lockbox store reset-fence forgets a store's fences, in whole-file and journal mode", async () => {
  await withTempDir(async (dir) => {
    for (const journal of [false, true]) {
      const file = `${dir}/${journal}.json`;
      const store = new JsonStore<{ n: number }>(file, {
        initial: { n: 0 },
        journal,
      });
      await store.update((d) => void d.n++, { fence: 100 });
      await assert.rejects(
        store.update((d) => void d.n++, { fence: 5 }),
        StaleFenceError,
      );
      const out = await lockbox(["store", "reset-fence", file]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /reset the fence/);
      await store.update((d) => void d.n++, { fence: 5 });
      assert.equal((await store.read()).n, 2);
    }
  });
});

Deno.test("lockbox store check reports ok, corrupt and missing files, and quarantines on request", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.json`, "{}");
    await Deno.writeTextFile(`${dir}/bad.json`, "{oops");
    const out = await lockbox([
      "store",
      "check",
      `${dir}/good.json`,
      `${dir}/bad.json`,
      `${dir}/none.json`,
    ]);
    assert.equal(out.code, 3);
    assert.deepEqual(
      out.stdout.trim().split("\n").map((l) => l.split(" ")[0]),
      ["ok", "corrupt", "missing"],
    );
    assert.equal(await Deno.readTextFile(`${dir}/bad.json`), "{oops");
    const fixed = await lockbox([
      "store",
      "check",
      "--quarantine",
      `${dir}/bad.json`,
    ]);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.match(fixed.stdout, /^quarantined /);
    const moved = [...Deno.readDirSync(dir)].find((e) =>
      e.name.startsWith("bad.json.corrupt-")
    );
    assert.ok(moved);
    assert.equal(await Deno.readTextFile(`${dir}/${moved.name}`), "{oops");
  });
});

Deno.test("lockbox store commands read and write a journal-mode store through its journal; a whole-file JsonStore refuses it", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    const journaled = new JsonStore<{ n: number; m?: number }>(f, {
      initial: { n: 0 },
      journal: true,
    });
    for (let i = 0; i < 3; i++) await journaled.update((d) => void d.n++);
    const got = await lockbox(["store", "get", f]);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(JSON.parse(got.stdout), { n: 3 });
    assert.equal((await lockbox(["store", "check", f])).stdout, `ok ${f}\n`);
    const set = await lockbox(["store", "set", f, "/m", "1"]);
    assert.equal(set.code, 0, set.stderr);
    // Every acknowledged update is still there, for every kind of reader.
    assert.deepEqual(await journaled.read(), { n: 3, m: 1 });
    const fresh = new JsonStore(f, { initial: {}, journal: true });
    assert.deepEqual(await fresh.read(), { n: 3, m: 1 });
    // A whole-file store refuses rather than reading an old version or
    // writing past the journal.
    const whole = new JsonStore<{ n: number }>(f, { initial: { n: 0 } });
    await assert.rejects(whole.read(), /journal mode/);
    await assert.rejects(whole.update((d) => void (d.n = 99)), /journal mode/);
    assert.deepEqual(await fresh.read(), { n: 3, m: 1 });
  });
});

Deno.test("lockbox store check checks every file and exits with the worst status", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/good.json`, "{}");
    await Deno.mkdir(`${dir}/dir.json`);
    await Deno.symlink(`${dir}/good.json`, `${dir}/link.json`);
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    const out = await lockbox([
      "store",
      "check",
      `${dir}/dir.json`,
      `${dir}/link.json`,
      `${dir}/bad.json`,
      `${dir}/good.json`,
    ]);
    assert.equal(out.code, 3);
    const lines = out.stdout.trim().split("\n");
    assert.equal(lines.length, 4, out.stdout);
    assert.match(lines[0], /^error .*dir\.json.*a directory/);
    assert.match(lines[1], /^error .*link\.json.*Cannot read .*symbolic link/);
    assert.match(lines[2], /^corrupt .*bad\.json/);
    assert.equal(lines[3], `ok ${dir}/good.json`);
  });
});

Deno.test("lockbox store set as root keeps the owner, group and mode of a service's store, whole-file and journal mode", async () => {
  await withTempDir(async (dir) => {
    await Deno.chmod(dir, 0o755);
    for (const journal of [false, true]) {
      const f = `${dir}/service-${journal}.json`;
      const store = new JsonStore<Record<string, number>>(f, {
        initial: {},
        journal,
        compactAt: 0, // every update folds the journal: a new file each time
      });
      await store.update((d) => void (d.a = 1));
      for (const file of journal ? [f, `${f}.journal`] : [f]) {
        await Deno.chown(file, 65534, 65534);
        await Deno.chmod(file, 0o600);
      }
      const set = await lockbox(["store", "set", f, "/b", "2"]);
      assert.equal(set.code, 0, set.stderr);
      await store.update((d) => void (d.c = 3));
      for (const file of journal ? [f, `${f}.journal`] : [f]) {
        const info = await Deno.lstat(file);
        assert.deepEqual(
          [info.uid, info.gid, info.mode! & 0o7777],
          [65534, 65534, 0o600],
          file,
        );
      }
      assert.deepEqual(await store.read(), { a: 1, b: 2, c: 3 });
    }
  });
});

Deno.test("documents past the size and depth limits are a data error naming the file, never quarantined or reset", async () => {
  await withTempDir(async (dir) => {
    const deep = `${dir}/deep.json`;
    const levels = 200_000;
    await Deno.writeTextFile(deep, "[".repeat(levels) + "]".repeat(levels));
    const big = `${dir}/big.json`;
    // A valid document of 260 MiB: one long string.
    const file = await Deno.open(big, { write: true, create: true });
    await file.write(new TextEncoder().encode('{"s":"'));
    const chunk = new Uint8Array(1024 * 1024).fill(0x61);
    for (let i = 0; i < 260; i++) await file.write(chunk);
    await file.write(new TextEncoder().encode('"}'));
    file.close();
    const sizes = [(await Deno.stat(deep)).size, (await Deno.stat(big)).size];

    for (const f of [deep, big]) {
      const get = await lockbox(["store", "get", f]);
      assert.equal(get.code, 3, get.stderr);
      assert.ok(get.stderr.includes(f), get.stderr);
      assert.match(get.stderr, /limit/);
      const check = await lockbox(["store", "check", "--quarantine", f]);
      assert.equal(check.code, 3);
      assert.match(check.stdout, /^error .*limit/);
      await assert.rejects(
        new JsonStore(f, { initial: {}, onCorrupt: "quarantine" }).read(),
        (e: Error) => e instanceof StoreError && e.message.includes("limit"),
      );
    }
    // Nothing moved aside, nothing rewritten.
    assert.deepEqual(
      [(await Deno.stat(deep)).size, (await Deno.stat(big)).size],
      sizes,
    );
    assert.deepEqual(names(dir).filter((n) => n.includes("corrupt")), []);

    // Writing one level past the limit is refused before anything is written.
    const store = new JsonStore<unknown>(`${dir}/w.json`, { initial: {} });
    let value: unknown = 1;
    for (let i = 0; i < 1001; i++) value = [value];
    await assert.rejects(store.write(value), RangeError);
    assert.equal(await Deno.lstat(`${dir}/w.json`).catch(() => null), null);
  });
});

Deno.test("lockbox store watch prints each version, stops with status 130 on SIGINT and 143 on SIGTERM, and with 141 once | head has what it wants", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/s.json`;
    await Deno.writeTextFile(file, '{"n":0}');
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const watching = new Child(CLI[0], [
        ...CLI.slice(1),
        "store",
        "watch",
        "--json",
        file,
      ]);
      const first = await watching.waitFor('{"version":1');
      assert.deepEqual(JSON.parse(first), { version: 1, value: { n: 0 } });
      const set = await lockbox(["store", "set", file, "/n", "7"]);
      assert.equal(set.code, 0, set.stderr);
      await watching.waitFor('{"version":2,"value":{"n":7}}');
      watching.process.kill(signal);
      const result = await watching.finish();
      // 128 + the signal's number, as a shell reports a program it ended.
      assert.equal(
        result.code,
        signal === "SIGINT" ? 130 : 143,
        `${signal}: ${result.stderr}`,
      );
      assert.equal(result.stderr, "");
      await lockbox(["store", "set", file, "/n", "0"]);
    }
    // A pipeline: lockbox ends at its first write after head has gone.
    const writes = (async () => {
      for (let i = 1; i <= 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        await lockbox(["store", "set", file, "/n", String(i)]);
      }
    })();
    const piped = await run([
      "bash",
      "-c",
      `${quoted} store watch '${file}' | head -n 3; echo "status \${PIPESTATUS[0]}"`,
    ]);
    await writes;
    const lines = piped.stdout.trim().split("\n");
    assert.equal(lines.length, 4, piped.stdout + piped.stderr);
    // The writes are not paced by the watch's start, so the first version
    // it sees may be any of them; versions count up from 1 all the same.
    for (const [i, line] of lines.slice(0, 3).entries()) {
      assert.match(line, new RegExp(`^${i + 1} \\{"n":\\d+\\}$`));
    }
    assert.equal(lines[3], "status 141");
  });
});
