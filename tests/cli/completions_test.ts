// `lockbox completions`: scripts that bash, fish and zsh load and complete
// lockbox's commands with.

import assert from "node:assert/strict";
import { output, withTempDir } from "../_helpers.ts";
import { lockbox, ok, run } from "./_cli.ts";

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
