// The C library table Node's runtime layer calls flock(2) through, and
// Deno's posix_spawnp through FFI.

import assert from "node:assert/strict";
import { _libcFor } from "../src/runtime/_libc.ts";
import { _spawnByFfi } from "../src/runtime/_deno_spawn.ts";
import { _openExisting } from "../src/runtime/deno.ts";

Deno.test("_libcFor() gives glibc's library and numbers when the platform is linux", () => {
  assert.deepEqual(_libcFor("linux"), {
    library: "libc.so.6",
    EWOULDBLOCK: 11,
    EINTR: 4,
    SIGURG: 23,
    threadTimers: true,
  });
});

Deno.test("_libcFor() gives libSystem and BSD numbers when the platform is darwin", () => {
  const facts = _libcFor("darwin");
  assert.equal(facts.library, "libSystem.B.dylib");
  assert.equal(facts.EWOULDBLOCK, 35);
  assert.equal(facts.EINTR, 4);
  assert.equal(facts.SIGURG, 16);
  assert.equal(facts.threadTimers, false);
});

Deno.test("_libcFor() matches this system's C library when run on it", async () => {
  // The numbers as the system's own tools know them: Python's errno and
  // signal modules read the C headers.
  if (Deno.build.os !== "linux" && Deno.build.os !== "darwin") return;
  const out = await new Deno.Command("python3", {
    args: [
      "-c",
      "import errno, signal; print(errno.EWOULDBLOCK, errno.EINTR, int(signal.SIGURG))",
    ],
  }).output();
  assert.equal(out.code, 0);
  const [EWOULDBLOCK, EINTR, SIGURG] = new TextDecoder().decode(out.stdout)
    .trim().split(" ").map(Number);
  const facts = _libcFor(Deno.build.os);
  assert.deepEqual(
    {
      EWOULDBLOCK: facts.EWOULDBLOCK,
      EINTR: facts.EINTR,
      SIGURG: facts.SIGURG,
    },
    { EWOULDBLOCK, EINTR, SIGURG },
  );
});

Deno.test("_libcFor() throws an error naming win32 when the platform is Windows", () => {
  assert.throws(
    () => _libcFor("win32"),
    /Cannot use flock\(2\) on Node on win32: Windows has none/,
  );
});

Deno.test("_libcFor() throws an error naming the platform when it is unknown", () => {
  assert.throws(
    () => _libcFor("aix"),
    /Cannot lock files on Node on aix: lockbox knows no C library there/,
  );
});

Deno.test({
  name:
    "Deno's posix_spawnp through FFI: starts a command in a session of its own with a descriptor passed, reads its status, and names a start that failed",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir();
    const handle = _openExisting(
      (await Deno.writeTextFile(`${dir}/held`, ""), `${dir}/held`),
    );
    try {
      // A handle finds its descriptor by the flock on it.
      assert.ok(handle.tryLock(true));
      const fd = handle.descriptor();
      const ino = Deno.statSync(`${dir}/held`).ino;
      // The child has the file open at the same number, and leads a
      // session of its own (its sid is its pid).
      const probe =
        `[ "$(stat -L -c %i /proc/self/fd/${fd})" = ${ino} ] || exit 9
set -- $(cut -d" " -f6 /proc/$$/stat); [ "$1" = $$ ] || exit 8; exit 7`;
      const child = _spawnByFfi("sh", ["-c", probe], { newGroup: true }, [fd]);
      assert.notEqual(child, null, "posix_spawnp, not Deno.Command");
      assert.deepEqual(await child!.status, { code: 7, signal: null });
      assert.throws(
        () => _spawnByFfi(`${dir}/missing`, [], {}),
        (error: Error & { code?: string }) => error.code === "ENOENT",
      );
    } finally {
      handle.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
