// Starting a command on Deno for Linux with the C library's posix_spawnp,
// through FFI, where `Deno.Command` costs `lockbox run` most of its start-up:
// its first use loads a good part of Deno's own JavaScript (streams, fetch
// bodies), and a `detached` command is forked (Deno's setsid runs between fork
// and exec), where posix_spawn starts it from a lighter vfork-style clone
// with POSIX_SPAWN_SETSID. Used only for what `lockbox run` asks (no stdin
// pipe, no PATH of the child's own) and with `--allow-ffi`; everything else
// takes `Deno.Command` (deno.ts). See ARCHITECTURE.md, "Starting the command".

import type { _Child, _SpawnOptions, _StopSignal } from "./types.ts";
import { _cLibrary, _os } from "./_platform.ts";

/** glibc's posix_spawn flags. */
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;

const { F_GETFD, F_SETFD, FD_CLOEXEC } = _cLibrary("linux");

/** posix_spawnp's error for a file the kernel cannot execute. */
const ENOEXEC = 8;

/** Bytes enough for glibc's posix_spawnattr_t (336) and sigset_t (128). */
const ATTR_BYTES = 1024;
const SIGSET_BYTES = 256;

/**
 * The result type of the functions below that return a C `int`, declared as
 * a struct of one int32, which x86-64 and AArch64 (the Linux machines Deno
 * runs on) return exactly as they return an int. Deno calls a function with
 * a struct result through libffi; for any other it compiles a fast-call
 * trampoline with Cranelift when the library is opened, and the first costs
 * a process about 2 ms of start-up, for functions called a handful of times.
 * {@linkcode _int} reads the value.
 */
const INT = { struct: ["i32"] } as const;

/** The int a function declared with {@linkcode INT} returned. */
function _int(result: Uint8Array): number {
  return new Int32Array(result.buffer, result.byteOffset, 1)[0];
}

const _SPAWN_SYMBOLS = {
  posix_spawnp: {
    parameters: ["buffer", "buffer", "pointer", "buffer", "buffer", "pointer"],
    result: INT,
  },
  // This process's environment as the C library keeps it: every variable,
  // whatever its bytes, with no `--allow-env` needed.
  environ: { type: "pointer" },
  posix_spawnattr_init: { parameters: ["buffer"], result: INT },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: INT },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: INT },
  posix_spawnattr_setsigdefault: {
    parameters: ["buffer", "buffer"],
    result: INT,
  },
  fcntl: { parameters: ["i32", "i32", "i32"], result: INT },
  // Blocks a thread of Deno's blocking pool until the command exits.
  waitpid: {
    parameters: ["i32", "buffer", "i32"],
    result: "i32",
    nonblocking: true,
  },
} as const;

type _SpawnLibrary = Deno.DynamicLibrary<typeof _SPAWN_SYMBOLS>;

/**
 * Open while a command it started runs (its `waitpid` is pending on it),
 * closed once none does: a library left open is a leak to `deno test`'s
 * sanitizers, and to anyone who counts them.
 */
let _library: _SpawnLibrary | undefined;
/** How many commands started through `_library` have not been reaped. */
let _running = 0;

/** Closes `_library` when no command started through it runs. */
function _release(): void {
  if (--_running === 0) {
    _library?.close();
    _library = undefined;
  }
}

/** The error names of the errno values posix_spawnp returns most. */
const _ERRNO_CODES: Readonly<Record<number, string>> = {
  2: "ENOENT",
  8: "ENOEXEC",
  13: "EACCES",
  20: "ENOTDIR",
  21: "EISDIR",
};

/**
 * Whether `_spawnByFfi` may start a command with `options`: Linux, FFI
 * allowed, no stdin pipe (`input`) and no PATH for the child (posix_spawnp
 * searches this process's PATH, `Deno.Command` the child's).
 */
export function _spawnsByFfi(options: _SpawnOptions): boolean {
  if (_os !== "linux" || options.input === true) return false;
  if (options.env !== undefined && Object.hasOwn(options.env, "PATH")) {
    return false;
  }
  return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

/** `text` as a NUL-terminated C string. */
function _cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/** A NULL-terminated array of C string pointers; `keep` holds the strings. */
function _cStrings(
  texts: string[],
  keep: Uint8Array[],
): Uint8Array<ArrayBuffer> {
  const pointers = new BigUint64Array(texts.length + 1);
  texts.forEach((text, i) => {
    const bytes = _cString(text);
    keep.push(bytes);
    pointers[i] = BigInt(
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)),
    );
  });
  return new Uint8Array(pointers.buffer);
}

/**
 * Where execvp finds `command`: itself when it has a "/", else the first
 * executable file of that name on PATH; `null` if none.
 */
function _onPath(command: string): string | null {
  if (command.includes("/")) return command;
  let path: string | undefined;
  try {
    path = Deno.env.get("PATH");
  } catch {
    return null; // no --allow-env
  }
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    const file = `${dir === "" ? "." : dir}/${command}`;
    if (_isExecutableFile(file)) return file;
  }
  return null;
}

/** Whether `path` is a file with an execute bit (`false` if it is not there). */
export function _isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** A wait(2) status as `_Child`'s: the code, or 128 + the killing signal. */
function _decodeStatus(
  status: number,
): { code: number; signal: number | null } {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff, signal: null };
  return { code: 128 + signal, signal };
}

/**
 * Starts `command` (searched on this process's PATH when it has no "/",
 * run as given, relative paths included, when it has one: `$0` stays as
 * typed) with this process's stdin, stdout, stderr and environment (or
 * `options.env` added to it), SIGPIPE back to its default (what the caller
 * ignored stays ignored) and no signal blocked, in a session of its own with `newGroup`, and
 * the descriptors in `inherit` open in it at their own numbers.
 *
 * @returns The child, or `null` where the C library lacks a spawn flag
 * (`Deno.Command` then starts it).
 * @throws {Error} With `code` (`ENOENT`, `EACCES`, ...) if it cannot start.
 */
export function _spawnByFfi(
  command: string,
  args: string[],
  options: _SpawnOptions,
  inherit: number[] = [],
): _Child | null {
  const lib = _library ??= Deno.dlopen("libc.so.6", _SPAWN_SYMBOLS);
  _running++;
  let child: _Child | null = null;
  try {
    child = _inheriting(lib, command, args, options, inherit);
  } finally {
    if (child === null) _release();
  }
  return child;
}

function _inheriting(
  lib: _SpawnLibrary,
  command: string,
  args: string[],
  options: _SpawnOptions,
  inherit: number[],
): _Child | null {
  const c = lib.symbols;
  // Deno opens every file close-on-exec: these must stay open in the child.
  const flags = inherit.map((fd) => _int(c.fcntl(fd, F_GETFD, 0)));
  try {
    inherit.forEach((fd, i) => {
      if (
        flags[i] < 0 ||
        _int(c.fcntl(fd, F_SETFD, flags[i] & ~FD_CLOEXEC)) < 0
      ) {
        throw new Error(`Cannot pass descriptor ${fd} on to a command`);
      }
    });
    return _spawnWith(lib, command, args, options);
  } finally {
    inherit.forEach((fd, i) => {
      if (flags[i] >= 0) c.fcntl(fd, F_SETFD, flags[i]);
    });
  }
}

function _spawnWith(
  lib: _SpawnLibrary,
  command: string,
  args: string[],
  options: _SpawnOptions,
): _Child | null {
  const c = lib.symbols;
  const keep: Uint8Array[] = [];
  const argv = _cStrings([command, ...args], keep);
  const envp = options.env === undefined
    ? new Deno.UnsafePointerView(c.environ!).getPointer(0)
    : Deno.UnsafePointer.of(_cStrings(
      Object.entries({ ...Deno.env.toObject(), ...options.env }).map((
        [name, value],
      ) => `${name}=${value}`),
      keep,
    ));
  // glibc's posix_spawnattr_destroy does nothing: the buffer is all there is.
  const attr = new Uint8Array(ATTR_BYTES);
  c.posix_spawnattr_init(attr);
  // sigset_t is a bit mask: no signal, or every one (each symbol costs
  // Deno.dlopen time, so not sigemptyset and sigfillset).
  const none = new Uint8Array(SIGSET_BYTES);
  // Deno ignores SIGPIPE, and an ignored signal stays ignored across exec:
  // back to its default, with glibc's own two (32, 33), which its
  // posix_spawn leaves ignored. What the caller ignored stays ignored, as
  // under flock(1) (`nohup`, `trap '' USR1`).
  const reset = new Uint8Array(SIGSET_BYTES);
  for (const signal of [13, 32, 33]) {
    reset[(signal - 1) >> 3] |= 1 << ((signal - 1) & 7);
  }
  c.posix_spawnattr_setsigdefault(attr, reset);
  c.posix_spawnattr_setsigmask(attr, none);
  const flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
    (options.newGroup === true ? POSIX_SPAWN_SETSID : 0);
  // glibc before 2.26 has no POSIX_SPAWN_SETSID: Deno.Command then.
  if (_int(c.posix_spawnattr_setflags(attr, flags)) !== 0) return null;
  const pidOut = new Int32Array(1);
  const errno = _int(c.posix_spawnp(
    new Uint8Array(pidOut.buffer),
    _cString(command),
    null,
    attr,
    argv,
    envp,
  ));
  // A script without "#!": run it with sh, as execvp (and flock(1)) do.
  const script = errno === ENOEXEC ? _onPath(command) : null;
  if (script !== null) {
    return _spawnWith(lib, "/bin/sh", [script, ...args], options);
  }
  if (errno !== 0) {
    const code = _ERRNO_CODES[errno] ?? `ERRNO${errno}`;
    throw Object.assign(
      new Error(`Failed to spawn '${command}': ${code}`),
      { code },
    );
  }
  return _child(lib, pidOut[0]);
}

/** The `_Child` of process `pid`, which this process must reap. */
function _child(lib: _SpawnLibrary, pid: number): _Child {
  let exited = false;
  const status = (async () => {
    const out = new Int32Array(1);
    let reaped: number;
    try {
      reaped = await lib.symbols.waitpid(pid, new Uint8Array(out.buffer), 0);
    } finally {
      exited = true;
      _release();
    }
    // Signal handlers here are SA_RESTART: -1 means it is not ours to reap.
    if (reaped !== pid) {
      throw new Error(`Cannot wait for process ${pid}: it is not a child`);
    }
    return _decodeStatus(out[0]);
  })();
  const noInput = () =>
    Promise.reject(new Error("The command was started without an input pipe"));
  return {
    pid,
    status,
    kill(signal: _StopSignal) {
      // Once reaped, the pid may name another process.
      if (exited) return;
      try {
        Deno.kill(pid, signal);
      } catch {
        // Already exited.
      }
    },
    send: noInput,
    endInput: noInput,
    inputDescriptor: () => null,
  };
}
