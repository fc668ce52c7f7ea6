// The per-system table (src/runtime/_platform.ts) and the LOCKBOX_NO_PROC
// test mode, which makes Linux take the paths of systems without /proc.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  _C_LIBRARIES,
  _cLibrary,
  _NO_PROC_VARIABLE,
  _os,
} from "../src/runtime/_platform.ts";
import { FileLock, lockHolder } from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("_cLibrary() gives macOS's library, errno function and EWOULDBLOCK 35", () => {
  const c = _cLibrary("darwin");
  assert.equal(c.path, "libSystem.B.dylib");
  assert.equal(c.errnoFunction, "__error");
  assert.equal(c.EWOULDBLOCK, 35);
  assert.deepEqual(
    [c.EINTR, c.EBADF, c.LOCK_SH, c.LOCK_EX, c.LOCK_NB, c.LOCK_UN],
    [4, 9, 1, 2, 4, 8],
  );
  assert.deepEqual([c.F_GETFD, c.F_SETFD, c.FD_CLOEXEC], [1, 2, 1]);
});

Deno.test("_cLibrary() gives glibc's library, errno function and EWOULDBLOCK 11 on Linux", () => {
  const c = _cLibrary("linux");
  assert.equal(c.path, "libc.so.6");
  assert.equal(c.errnoFunction, "__errno_location");
  assert.equal(c.EWOULDBLOCK, 11);
  assert.equal(_cLibrary("freebsd").EWOULDBLOCK, 35);
});

Deno.test("_cLibrary() throws a clear ENOSYS error on Windows and unknown systems", () => {
  assert.throws(() => _cLibrary("windows"), {
    code: "ENOSYS",
    message: /^not on Windows: it has no flock\(2\)/,
  });
  assert.throws(() => _cLibrary("plan9"), { code: "ENOSYS" });
  assert.ok(!("windows" in _C_LIBRARIES));
});

Deno.test(
  "_cLibrary() matches this system's C library: EWOULDBLOCK from a real flock",
  {
    ignore: _os !== "linux" && _os !== "darwin",
  },
  async () => {
    await withTempDir((dir) => {
      const c = _cLibrary();
      const lib = Deno.dlopen(c.path, {
        flock: { parameters: ["i32", "i32"], result: "i32" },
        open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
        close: { parameters: ["i32"], result: "i32" },
        errno: { name: c.errnoFunction, parameters: [], result: "pointer" },
      });
      try {
        const path = new TextEncoder().encode(`${dir}/f\0`);
        const O_RDWR_CREAT = 2 | (_os === "darwin" ? 0x200 : 0o100);
        const a = lib.symbols.open(path, O_RDWR_CREAT, 0o644);
        const b = lib.symbols.open(path, O_RDWR_CREAT, 0o644);
        assert.ok(a >= 0 && b >= 0);
        assert.equal(lib.symbols.flock(a, c.LOCK_EX | c.LOCK_NB), 0);
        assert.equal(lib.symbols.flock(b, c.LOCK_EX | c.LOCK_NB), -1);
        const errno = new Deno.UnsafePointerView(lib.symbols.errno()!)
          .getInt32();
        assert.equal(errno, c.EWOULDBLOCK);
        lib.symbols.close(a);
        lib.symbols.close(b);
      } finally {
        lib.close();
      }
    });
  },
);

const RUNTIME = fileURLToPath(
  new URL("../src/runtime/mod.ts", import.meta.url),
);

/** What the runtime layer reads from /proc in a fresh process. */
async function procUses(env: Record<string, string>): Promise<unknown> {
  const script = `
    import * as r from ${JSON.stringify(RUNTIME)};
    console.log(JSON.stringify({
      locks: r._readProcLocks() !== null,
      cmdline: r._readCommandLine(Deno.pid) !== null,
      namespace: r._inInitialPidNamespace(),
      openers: r._openers(new Set(["0:0"])).complete,
      sockets: r._socketsNow() !== null,
    }));`;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

Deno.test(
  "LOCKBOX_NO_PROC=1 turns off every /proc read of the runtime layer on Linux",
  {
    ignore: _os !== "linux",
  },
  async () => {
    const off = { locks: false, cmdline: false, namespace: false };
    assert.deepEqual(await procUses({ [_NO_PROC_VARIABLE]: "1" }), {
      ...off,
      openers: false,
      sockets: false,
    });
    // Without it, the same process reads them (so the check above can fail).
    const on = await procUses({ [_NO_PROC_VARIABLE]: "" }) as typeof off;
    assert.equal(on.locks, true);
    assert.equal(on.cmdline, true);
  },
);

Deno.test(
  "lockHolder() reads a record with LOCKBOX_NO_PROC=1, the lock probed instead of listed",
  {
    ignore: _os !== "linux",
  },
  async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/job`;
      await using held = await FileLock.acquire(path, {
        metadata: { job: "x" },
      });
      const script = `
      import { lockHolder, listLocks } from ${
        JSON.stringify(fileURLToPath(new URL("../mod.ts", import.meta.url)))
      };
      const holder = await lockHolder(${JSON.stringify(path)});
      const [info] = await listLocks(${JSON.stringify(dir)});
      console.log(JSON.stringify({ pid: holder?.pid, holders: info.holders, held: info.held }));`;
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", script],
        env: { [_NO_PROC_VARIABLE]: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      // Without /proc/locks no pid is known from the kernel: [] where Linux
      // lists this process.
      assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)), {
        pid: Deno.pid,
        holders: [],
        held: true,
      });
      assert.equal((await lockHolder(path))?.pid, Deno.pid);
      assert.ok(held.token > 0);
    });
  },
);

Deno.test(
  "runWithLock() passes the lock file to the command through /dev/fd with LOCKBOX_NO_PROC=1",
  {
    ignore: _os !== "linux",
  },
  async () => {
    await withTempDir(async (dir) => {
      const lockPath = `${dir}/job`;
      // The command lists what its descriptors lead to (its own /proc).
      const script = `
      import { runWithLock } from ${
        JSON.stringify(fileURLToPath(new URL("../mod.ts", import.meta.url)))
      };
      const result = await runWithLock(${JSON.stringify(lockPath)}, [
        "sh", "-c", "for f in /proc/$$/fd/*; do readlink $f; done; true",
      ]);
      Deno.exit(result.code);`;
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", script],
        env: { [_NO_PROC_VARIABLE]: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      const links = new TextDecoder().decode(stdout).split("\n");
      assert.ok(links.includes(lockPath), links.join("\n"));
    });
  },
);

Deno.test(
  "runWithLock() throws a LockError, not 'no such command', when the lock's descriptor cannot be found",
  {
    ignore: _os !== "linux",
  },
  async () => {
    await withTempDir(async (dir) => {
      const lockPath = `${dir}/job`;
      // Without /proc, /dev/fd cannot tell the locked descriptor from a
      // second open of the same file.
      const script = `
      import { runWithLock } from ${
        JSON.stringify(fileURLToPath(new URL("../mod.ts", import.meta.url)))
      };
      Deno.writeTextFileSync(${JSON.stringify(lockPath)}, "");
      using _other = Deno.openSync(${JSON.stringify(lockPath)});
      try {
        await runWithLock(${JSON.stringify(lockPath)}, ["true"]);
        console.log("ran");
      } catch (error) {
        console.log(error.name + ": " + error.message);
      }`;
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", script],
        env: { [_NO_PROC_VARIABLE]: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      assert.match(
        new TextDecoder().decode(stdout),
        /^LockError: Cannot pass the lock on to 'true': .*2 open descriptors match.*--close/,
      );
    });
  },
);

Deno.test({
  name:
    "Finding a held lock file's descriptor in /proc/self/fd (or /dev/fd) stats no descriptor that is gone (the listing's own is filled first)",
  ignore: Deno.build.os !== "linux" ||
    !(await new Deno.Command("strace", { args: ["-V"], stdout: "null" })
      .output().then((out) => out.success, () => false)),
  async fn() {
    await withTempDir(async (dir) => {
      const script = `${dir}/pass.ts`;
      await Deno.writeTextFile(
        script,
        `import { runWithLock } from ${
          JSON.stringify(new URL("../mod.ts", import.meta.url).href)
        };\nDeno.exit((await runWithLock(${
          JSON.stringify(`${dir}/job.lock`)
        }, ["true"])).code);\n`,
      );
      const trace = `${dir}/trace`;
      const out = await new Deno.Command("strace", {
        args: [
          "-f",
          "-qq",
          "-e",
          "trace=statx,newfstatat,stat",
          "-o",
          trace,
          Deno.execPath(),
          "run",
          "-A",
          script,
        ],
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const stats = (await Deno.readTextFile(trace)).split("\n")
        // /dev/fd where LOCKBOX_NO_PROC=1 turns /proc off.
        .filter((line) => /"\/(proc\/self|dev)\/fd\/\d+"/.test(line));
      assert.ok(stats.length > 2, "the search ran");
      assert.deepEqual(stats.filter((line) => /= -1 E/.test(line)), []);
    });
  },
});
