// The runtime layer lockbox runs on, chosen when this module loads: Deno's
// (deno.ts) when `globalThis.Deno` is there, else Node's (node.ts). Both
// export the same functions; the type below makes a missing or different
// one a type error. Nothing above this folder touches `Deno.*` or Node's
// file and process APIs directly. Only the chosen file is loaded (Node's
// built-in modules cost Deno about 30 ms of start-up); Node's flock comes
// through koffi, which node.ts loads on first use, so Deno never needs it.

import * as deno from "./deno.ts";

export * from "./types.ts";
export * from "./_platform.ts";

/** Whether lockbox runs on Deno (else on Node). */
export const _onDeno: boolean =
  typeof (globalThis as { Deno?: { version?: { deno?: unknown } } }).Deno
    ?.version?.deno === "string";

const chosen: typeof deno = _onDeno ? deno : await import("./node.ts");

export const {
  _toPath,
  _dirname,
  _basename,
  _join,
  _asyncStore,
  _lstat,
  _openExisting,
  _createNew,
  _openReadOnly,
  _mkdirp,
  _unlink,
  _errorCode,
  _pid,
  _hostname,
  _processExists,
  _readProcLocks,
  _readCommandLine,
  _inInitialPidNamespace,
  _createForWrite,
  _openForAppend,
  _openExistingForAppend,
  _openExistingForReading,
  _syncDirectory,
  _rename,
  _link,
  _readFile,
  _removeIfExists,
  _readDir,
  _openers,
  _openFilesOf,
  _parentPid,
  _statFollow,
  _realPath,
  _spawn,
  _processGroups,
  _killGroup,
  _groupAlive,
  _socketDescriptor,
  _socketsNow,
  _flockDescriptor,
  _selfCommand,
  _onTerminationSignals,
  _isTerminal,
  _columns,
  _env,
  _writeStderr,
  _writeStdout,
  _readStdinLine,
  _makeTempDir,
  _removeTree,
  _exit,
  _unrefTimer,
  _args,
  _isMain,
  _watchDirectory,
} = chosen;
