// The lockbox CLI as shell scripts and cron lines use it (issue #34): the
// store commands' pointers, raw output, delete and check --json, hints
// worded for the CLI, status for every held lock, completions and signal
// exit codes. Black-box: the real CLI on real files and processes.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { JsonStore } from "../../mod.ts";
import { Child, output, withTempDir } from "../_helpers.ts";

const CLI_SOURCE = fileURLToPath(new URL("../../cli.ts", import.meta.url));
const CLI: string[] = Deno.env.get("LOCKBOX_CLI")
  ? [Deno.env.get("LOCKBOX_CLI")!]
  : [Deno.execPath(), "run", "--allow-all", "--quiet", CLI_SOURCE];

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string[]): Promise<Output> {
  const out = await output(command[0], {
    args: command.slice(1),
    stdin: "null",
  });
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

function lockbox(args: string[]): Promise<Output> {
  return run([...CLI, ...args]);
}

/** Runs lockbox and checks its exit status; returns its stdout. */
async function ok(args: string[]): Promise<string> {
  const out = await lockbox(args);
  assert.equal(out.code, 0, `${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

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

/** A flock(1) holding `lockFile` around `sh -c SCRIPT` until `release()`. */
async function holdWithFlock(lockFile: string, script = "cat") {
  const child = new Child("flock", [
    lockFile,
    "sh",
    "-c",
    `echo held; ${script}`,
  ], { stdin: true });
  await child.waitFor("held");
  return child;
}

Deno.test("lockbox status lists a lock file flock(1) holds with no lockbox record, with its COMMAND, and leaves it out once free", async () => {
  // A short path leaves the command room in a 100-column line.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "st" });
  try {
    await Deno.writeTextFile(`${dir}/Cargo.lock`, "# not a lock\n");
    const long = `cat; : ${"x".repeat(300)}`;
    const flock = await holdWithFlock(`${dir}/fl.lock`);
    const wordy = await holdWithFlock(`${dir}/long.lock`, long);
    try {
      const table = await ok(["status", dir]);
      const lines = table.trimEnd().split("\n");
      assert.match(
        lines[0],
        /^PATH\s+STATE\s+MODE\s+PID\s+HOST\s+AGE\s+STALE\s+COMMAND$/,
      );
      assert.equal(lines.length, 3, table);
      assert.ok(!table.includes("Cargo.lock"), "not held, not ours");
      const row = lines.find((l) => l.startsWith(`${dir}/fl.lock `))!;
      const cell = new RegExp(
        `held\\s+exclusive\\s+${flock.pid}\\s+-\\s+\\d+s\\s+(/\\S*flock .*)$`,
      ).exec(row);
      assert.ok(cell, row);
      // A long command is cut to fit the line (100 columns off a terminal).
      const cut = lines.find((l) => l.startsWith(`${dir}/long.lock `))!;
      assert.equal(cut.length, 100, cut);
      assert.match(cut, /flock .*…$/);
      const infos = JSON.parse(await ok(["status", "--json", dir]));
      assert.deepEqual(
        infos.map((i: { lockPath: string }) => i.lockPath),
        [`${dir}/fl.lock`, `${dir}/long.lock`],
      );
      assert.equal(infos[0].held, true);
      assert.deepEqual(infos[0].holders, [flock.pid]);
      assert.equal(infos[0].record, null);
      assert.match(
        infos[0].command,
        new RegExp(`flock ${dir}/fl\\.lock sh -c echo held; cat$`),
      );
      assert.ok(infos[1].command.endsWith(`sh -c echo held; ${long}`));
      // The table shows the start of the command the JSON gives whole.
      assert.ok(infos[0].command.startsWith(cell[1].replace(/…$/, "")));
    } finally {
      await flock.finish();
      await wordy.finish();
    }
    assert.equal(await ok(["status", dir]), "no lock files\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockbox status names the COMMAND of a lockbox holder, and none for a free lock", async () => {
  await withTempDir(async (dir) => {
    const holder = new Child(CLI[0], [
      ...CLI.slice(1),
      "run",
      `${dir}/job.lock`,
      "sh",
      "-c",
      "echo running; cat",
    ], { stdin: true });
    await holder.waitFor("running");
    try {
      await ok(["run", `${dir}/free.lock`, "true"]);
      const [free, job] = JSON.parse(await ok(["status", "--json", dir]));
      assert.equal(free.held, false);
      assert.equal(free.command, null);
      assert.equal(job.held, true);
      assert.match(job.command, new RegExp(`run ${dir}/job\\.lock sh -c`));
      const table = await ok(["status", dir]);
      const freeRow = table.split("\n").find((l) => l.includes("free.lock"))!;
      assert.match(freeRow, /free\s+-\s+-\s+-\s+\d+s$/);
    } finally {
      await holder.finish();
    }
  });
});

/** Whether `name` runs here (zsh and fish come from apt). */
async function have(name: string): Promise<boolean> {
  try {
    return (await output(name, { args: ["-c", "exit 0"] })).code === 0;
  } catch {
    return false;
  }
}

Deno.test("lockbox completions bash prints a script bash accepts, which completes commands, subcommands and options", async () => {
  await withTempDir(async (dir) => {
    const script = `${dir}/lockbox.bash`;
    await Deno.writeTextFile(script, await ok(["completions", "bash"]));
    const complete = async (words: string[]) =>
      (await run([
        "bash",
        "-c",
        `source '${script}' && complete -p lockbox && COMP_WORDS=(${
          words.map((w) => `'${w}'`).join(" ")
        }) && COMP_CWORD=${
          words.length - 1
        } && _lockbox && echo "\${COMPREPLY[*]}"`,
      ])).stdout.split("\n");
    const [registered, top] = await complete(["lockbox", "st"]);
    assert.equal(registered, "complete -o default -F _lockbox lockbox");
    assert.deepEqual(top.split(" ").sort(), ["state", "status", "store"]);
    assert.equal(
      (await complete(["lockbox", "store", ""]))[1],
      "get set delete edit check watch reset-fence",
    );
    assert.equal(
      (await complete(["lockbox", "store", "get", "--r"]))[1],
      "--raw",
    );
    assert.equal(
      (await complete(["lockbox", "--db", "x", "ops", "g"]))[1],
      "get",
    );
    // After a command's own words: nothing, so bash completes file names.
    assert.equal((await complete(["lockbox", "store", "get", "a"]))[1], "");
    const bad = await lockbox(["completions", "tcsh"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /expected bash, zsh or fish/);
  });
});

Deno.test("lockbox completions fish and zsh print scripts those shells load, which complete lockbox's commands", async () => {
  await withTempDir(async (dir) => {
    const fish = await ok(["completions", "fish"]);
    const zsh = await ok(["completions", "zsh"]);
    await Deno.writeTextFile(`${dir}/lockbox.fish`, fish);
    await Deno.writeTextFile(`${dir}/_lockbox`, zsh);
    if (await have("fish")) {
      const out = await output("fish", {
        args: [
          "-N",
          "-c",
          `source '${dir}/lockbox.fish'; complete -C 'lockbox store g'; complete -C 'lockbox store delete -'; complete -C 'lockbox st'`,
        ],
        env: { HOME: dir },
      });
      const lines = new TextDecoder().decode(out.stdout).trim().split("\n")
        .map((line) => line.split("\t")[0]);
      assert.equal(out.code, 0);
      assert.ok(lines.includes("get"), lines.join("|"));
      assert.ok(
        lines.includes("--force") && lines.includes("-f"),
        lines.join("|"),
      );
      assert.deepEqual(
        lines.filter((l) => /^st/.test(l)).sort(),
        ["state", "status", "store"],
      );
    } else {
      assert.match(
        fish,
        /complete -c lockbox -n '__lockbox_at \\' store\\'' -f -a 'get'/,
      );
    }
    if (await have("zsh")) {
      // Parses, and registers _lockbox for lockbox once sourced after compinit.
      const out = await output("zsh", {
        args: [
          "-f",
          "-c",
          `zsh -n '${dir}/_lockbox' && autoload -U compinit && compinit -u -D && source '${dir}/_lockbox' && print -r -- $_comps[lockbox]`,
        ],
        env: { HOME: dir },
      });
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(new TextDecoder().decode(out.stdout), "_lockbox\n");
    }
    assert.match(zsh, /^#compdef lockbox\n/);
    assert.match(zsh, /\(' store'\) subs=\('get:Print a store/);
  });
});

Deno.test("lockbox --help groups the commands as locks, stores, the seed systems and shell, and says what each seed system does", async () => {
  const help = await ok(["--help"]);
  const groups = [...help.matchAll(/^(\S[^:\n]*):\n((?: {2}.*\n)+)/gm)].map((
    m,
  ) => [
    m[1],
    m[2].split("\n").filter(Boolean).map((l) => l.trim().split(" ")[0]),
  ]);
  assert.deepEqual(
    Object.fromEntries(
      groups.filter(([name]) => name !== "Options" && name !== "Exit codes"),
    ),
    {
      "Locks": ["run", "status", "clean", "holder"],
      "Stores": ["store", "migrate"],
      "The seed systems": ["groups", "ops", "state", "files", "batch"],
      "Shell": ["completions", "help"],
    },
  );
  assert.match(help, /groups \[options\]\s+Capture groups: /);
  assert.match(help, /ops \[options\]\s+Operations: /);
  assert.match(help, /state \[options\]\s+Archiver run state: /);
  assert.match(help, /files \[options\]\s+File checkout: /);
  assert.match(help, /batch \[options\] <file\.\.\.>\s+Batch: /);
  assert.doesNotMatch(help, /^\s+\S+.*\s{2}Seed \d{3}'s/m);
});

Deno.test("lockbox status --watch stopped by SIGINT or SIGTERM exits 128 + the signal's number", async () => {
  await withTempDir(async (dir) => {
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const watching = new Child(CLI[0], [
        ...CLI.slice(1),
        "status",
        "--watch",
        "0.2",
        dir,
      ]);
      await watching.waitFor("no lock files");
      watching.process.kill(signal);
      const result = await watching.finish();
      assert.equal(result.code, code, `${signal}: ${result.stderr}`);
    }
  });
});

Deno.test("lockbox status on a terminal cuts COMMAND to the terminal's width", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tt" });
  try {
    const wordy = await holdWithFlock(
      `${dir}/x.lock`,
      `cat; : ${"y".repeat(200)}`,
    );
    try {
      // script(1) gives lockbox a terminal 90 columns wide.
      const cli = CLI.map((part) => `'${part}'`).join(" ");
      const out = await run([
        "script",
        "-q",
        "-e",
        "-c",
        `stty cols 90; ${cli} status '${dir}'`,
        "/dev/null",
      ]);
      assert.equal(out.code, 0, out.stderr);
      const lines = out.stdout
        // deno-lint-ignore no-control-regex
        .replace(/\x1b\[[0-9;]*m|\r/g, "").trimEnd().split("\n");
      assert.equal(lines.length, 2, out.stdout);
      assert.match(lines[1], /held\s.*\/flock.*…$/);
      for (const line of lines) assert.ok(line.length <= 90, line);
      assert.equal(lines[1].length, 90, lines[1]);
    } finally {
      await wordy.finish();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
