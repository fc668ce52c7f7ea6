// `lockbox store edit`: the editor's result applied under the lock, invalid
// JSON refused (or sent back on a terminal), signals to the editor, and the
// temporary copy removed.

import assert from "node:assert/strict";
import { Child, delay, withTempDir } from "../_helpers.ts";
import { CLI, lockbox, quoted, run } from "./_cli.ts";

Deno.test("lockbox store edit writes a valid edit, and leaves the file untouched on invalid JSON", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    const original = '{\n  "count": 1\n}';
    await Deno.writeTextFile(file, original);
    const editor = async (name: string, script: string) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, `#!/bin/sh\n${script}\n`);
      await Deno.chmod(path, 0o755);
      return path;
    };
    const breaks = await editor("breaks.sh", `printf '{"count": ' > "$1"`);
    const broken = await lockbox(["store", "edit", file], {
      env: { EDITOR: breaks, VISUAL: "" },
    });
    assert.equal(broken.code, 1, broken.stderr);
    assert.match(broken.stderr, /not valid JSON/);
    assert.equal(await Deno.readTextFile(file), original);

    const inode = (await Deno.stat(file)).ino;
    const keeps = await editor("keeps.sh", "true");
    const same = await lockbox(["store", "edit", file], {
      env: { EDITOR: keeps },
    });
    assert.equal(same.code, 0, same.stderr);
    assert.equal((await Deno.stat(file)).ino, inode);

    // The lock is held while the editor runs.
    const checks = await editor(
      "checks.sh",
      `flock -n "${file}.lock" true && exit 1; printf '{"count": 2}' > "$1"`,
    );
    const edited = await lockbox(["store", "edit", file], {
      env: { EDITOR: checks },
    });
    assert.equal(edited.code, 0, edited.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { count: 2 });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "breaks.sh",
      "checks.sh",
      "keeps.sh",
      "state.json",
      "state.json.lock",
    ]);
  });
});

Deno.test("lockbox store edit on a terminal sends you back to fix invalid JSON", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/state.json`;
    await Deno.writeTextFile(file, '{"count": 1}');
    // First edit: invalid JSON; second: valid.
    const editor = `${dir}/editor.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh
if [ -e "${dir}/once" ]; then printf '{"count": 3}' > "$1"
else touch "${dir}/once"; printf '{"count": ' > "$1"; fi
`,
    );
    await Deno.chmod(editor, 0o755);
    const session = new Child("script", [
      "-qec",
      `${quoted} store edit ${file}`,
      "/dev/null",
    ], { stdin: true, env: { EDITOR: editor, VISUAL: "" } });
    // The answer waits in the terminal's input until lockbox asks.
    await session.send("e");
    const result = await session.finish();
    const output = result.lines.join("\n");
    assert.equal(result.code, 0, output);
    assert.match(output, /not valid JSON/);
    assert.match(output, /What now\? \(e\)dit again/);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { count: 3 });
  });
});

Deno.test("lockbox store edit: Ctrl-C to the process group goes to the editor, whose result is applied; a killed edit's copy is removed by the next run", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    await Deno.writeTextFile(f, '{\n  "n": 1\n}\n');
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    // An editor that, like vi, ignores SIGINT, then saves once told to.
    const editor = `${dir}/editor.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh
trap '' INT
echo editing
while [ ! -e ${dir}/go ]; do sleep 0.02; done
printf '{"n": 2}' > "$1"
`,
    );
    await Deno.chmod(editor, 0o755);
    const env = { EDITOR: editor, TMPDIR: tmp };
    // Its own process group, as a shell gives a foreground job.
    const edit = new Child("setsid", [...CLI, "store", "edit", f], { env });
    await edit.waitFor("editing");
    const group = Number(
      (await Deno.readTextFile(`/proc/${edit.pid}/stat`)).split(" ")[4],
    );
    await run(["kill", "-INT", "--", `-${group}`]);
    await delay(200);
    await Deno.writeTextFile(`${dir}/go`, "");
    const done = await edit.finish(30_000);
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(f)), { n: 2 });
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "the copy is removed");
    await Deno.remove(`${dir}/go`);

    // SIGKILL leaves the copy; the next edit removes it.
    const killed = new Child(CLI[0], [...CLI.slice(1), "store", "edit", f], {
      env,
    });
    await killed.waitFor("editing");
    killed.process.kill("SIGKILL");
    await killed.process.status;
    await run(["pkill", "-f", editor]);
    assert.equal([...Deno.readDirSync(tmp)].length, 1);
    const again = await lockbox(["store", "edit", f], {
      env: { EDITOR: "true", TMPDIR: tmp },
    });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /unchanged, nothing written/);
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
  });
});

Deno.test("lockbox store edit writes nothing, and says so, when the editor only reformats the document", async () => {
  await withTempDir(async (dir) => {
    const f = `${dir}/state.json`;
    await Deno.writeTextFile(f, '{\n  "a": [1, 2],\n  "b": "x"\n}');
    const before = await Deno.stat(f);
    const editor = `${dir}/reformat.sh`;
    await Deno.writeTextFile(
      editor,
      `#!/bin/sh\nprintf '{"a":[1,2],"b":"x"}' > "$1"\n`,
    );
    await Deno.chmod(editor, 0o755);
    const out = await lockbox(["store", "edit", f], {
      env: { EDITOR: editor },
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /unchanged, nothing written/);
    assert.equal((await Deno.stat(f)).ino, before.ino);
  });
});
