// atomicWriteFile: content, refusals, and the durable system call sequence.

import assert from "node:assert/strict";
import { atomicWriteFile, StoreError } from "../mod.ts";
import {
  modesUnderUmask,
  names,
  output,
  straceLines,
  withTempDir,
  worker,
} from "./_helpers.ts";

Deno.test("atomicWriteFile() replaces content and keeps the mode", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/f.txt`;
    await Deno.writeTextFile(path, "old");
    await Deno.chmod(path, 0o600);
    await atomicWriteFile(path, "new");
    assert.equal(await Deno.readTextFile(path), "new");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    await atomicWriteFile(path, new Uint8Array([0x41]), { durable: false });
    assert.equal(await Deno.readTextFile(path), "A");
    assert.deepEqual(names(dir), ["f.txt"]);
  });
});

Deno.test("atomicWriteFile() refuses a symlink and leaves its target alone", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/target`, "keep");
    await Deno.symlink(`${dir}/target`, `${dir}/link`);
    await assert.rejects(
      atomicWriteFile(`${dir}/link`, "x"),
      (e: Error) => e instanceof StoreError && e.message.includes("symbolic"),
    );
    assert.equal(await Deno.readTextFile(`${dir}/target`), "keep");
    assert.ok((await Deno.lstat(`${dir}/link`)).isSymlink);
  });
});

/**
 * Runs one atomicWriteFile under strace and returns, in order, the events on
 * our files: "open-temp", "fsync-temp", "rename", "open-dir", "fsync-dir".
 * Deno fsyncs on a duplicate of the fd, so duplicates are followed.
 */
async function trace(path: string, mode: string): Promise<string[]> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const out = await output("strace", {
    args: [
      "-f",
      "-e",
      "trace=openat,fsync,fdatasync,rename,renameat,renameat2,dup,dup2,dup3,fcntl,close",
      "-o",
      `${dir}/trace.txt`,
      Deno.execPath(),
      "run",
      "-A",
      worker("atomic_write_once.ts"),
      path,
      mode,
    ],
  });
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const lines = straceLines(await Deno.readTextFile(`${dir}/trace.txt`));
  await Deno.remove(`${dir}/trace.txt`);
  const kindOf = new Map<string, "temp" | "dir">();
  const events: string[] = [];
  for (const line of lines) {
    const result = line.match(/= (\d+)$/)?.[1];
    const open = line.match(/openat\(AT_FDCWD, "([^"]+)"/);
    if (open && result) {
      if (open[1].includes(".f.json.tmp-")) {
        kindOf.set(result, "temp");
        events.push("open-temp");
      } else if (open[1] === dir) {
        kindOf.set(result, "dir");
        events.push("open-dir");
      } else kindOf.delete(result);
      continue;
    }
    const dup = line.match(/(?:dup\d?|fcntl)\((\d+)(?:, F_DUPFD[^)]*)?[^)]*\)/);
    if (dup && result && /dup|F_DUPFD/.test(line) && kindOf.has(dup[1])) {
      kindOf.set(result, kindOf.get(dup[1])!);
      continue;
    }
    const sync = line.match(/f(?:data)?sync\((\d+)/);
    if (sync && kindOf.has(sync[1])) {
      events.push(`fsync-${kindOf.get(sync[1])}`);
      continue;
    }
    const closed = line.match(/close\((\d+)\)/);
    if (closed) kindOf.delete(closed[1]);
    if (/rename/.test(line) && line.includes(`"${path}"`)) {
      events.push("rename");
    }
  }
  return events;
}

Deno.test("atomicWriteFile() durable: temp fsync, then rename, then directory fsync (strace)", async () => {
  await withTempDir(async (dir) => {
    const events = await trace(`${dir}/f.json`, "durable");
    assert.deepEqual(events, [
      "open-temp",
      "fsync-temp",
      "rename",
      "open-dir",
      "fsync-dir",
    ]);
  });
});

Deno.test("atomicWriteFile() with durable: false renames without any fsync (strace)", async () => {
  await withTempDir(async (dir) => {
    const events = await trace(`${dir}/f.json`, "fast");
    assert.deepEqual(events, ["open-temp", "rename"]);
  });
});

Deno.test("atomicWriteFile() gives a new file 0666 less the umask, and an explicit mode exactly, new or replaced", async () => {
  await withTempDir(async (dir) => {
    const modes = await modesUnderUmask(0o022, dir, async () => {
      await atomicWriteFile(`${dir}/plain`, "x");
      await atomicWriteFile(`${dir}/given`, "x", { mode: 0o664 });
      await atomicWriteFile(`${dir}/replaced`, "x");
      await atomicWriteFile(`${dir}/replaced`, "y", { mode: 0o660 });
    });
    assert.deepEqual(modes, { given: "664", plain: "644", replaced: "660" });
  });
});
