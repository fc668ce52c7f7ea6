// Deno's runtime layer with every file system mutation recorded, for the
// crash checker. A workload runs with an import map that puts this module
// in place of src/runtime/mod.ts; it does what the real layer does, and
// appends one JSON line per mutation to LOCKBOX_CRASH_LOG: creates and
// opens for append, writes (with their bytes), fsyncs, truncates, renames,
// links, unlinks, mkdirs and directory fsyncs, plus the workload's own
// marks ("update 3 acknowledged").
//
// LOCKBOX_CRASH_BREAK makes the record lie the way a buggy lockbox would
// behave, so the checker can show it catches such bugs: `nodirsync` drops
// directory fsyncs, `nofsync` drops file fsyncs.

import * as real from "../../src/runtime/deno.ts";
import type { _WriteHandle } from "../../src/runtime/types.ts";

export * from "../../src/runtime/types.ts";
export * from "../../src/runtime/_platform.ts";
export * from "../../src/runtime/deno.ts";

/** Whether lockbox runs on Deno: it does, here. */
export const _onDeno = true;

const logPath = Deno.env.get("LOCKBOX_CRASH_LOG");
const breakMode = Deno.env.get("LOCKBOX_CRASH_BREAK") ?? "";
const log = logPath
  ? Deno.openSync(logPath, { write: true, append: true, create: true })
  : null;
const encoder = new TextEncoder();
let nextHandle = 1;

function record(entry: Record<string, unknown>): void {
  log?.writeSync(encoder.encode(JSON.stringify(entry) + "\n"));
}

function base64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** Records a point the workload reached, such as an acknowledged update. */
export function mark(label: string, value: number): void {
  record({ op: "mark", label, value });
}

function recorded(handle: _WriteHandle, path: string): _WriteHandle {
  const id = nextHandle++;
  record({ op: "handle", id, path });
  return {
    async write(data) {
      await handle.write(data);
      record({ op: "write", id, data: base64(data) });
    },
    async sync(dataOnly) {
      await handle.sync(dataOnly);
      if (breakMode !== "nofsync") record({ op: "fsync", id });
    },
    writeNow(data) {
      handle.writeNow(data);
      record({ op: "write", id, data: base64(data) });
    },
    syncDataNow() {
      handle.syncDataNow();
      if (breakMode !== "nofsync") record({ op: "fsync", id });
    },
    size: () => handle.size(),
    stat: () => handle.stat(),
    byteAt: (offset) => handle.byteAt(offset),
    readAt: (offset, length) => handle.readAt(offset, length),
    truncate(size) {
      handle.truncate(size);
      record({ op: "truncate", id, size });
    },
    matchOwnership: (like) => handle.matchOwnership(like),
    close: () => handle.close(),
  };
}

export function _createForWrite(path: string, mode: number): _WriteHandle {
  const handle = real._createForWrite(path, mode);
  record({ op: "create", path });
  return recorded(handle, path);
}

export function _openForAppend(path: string): _WriteHandle {
  const existed = real._lstat(path) !== null;
  const handle = real._openForAppend(path);
  if (!existed) record({ op: "create", path });
  return recorded(handle, path);
}

export function _openExistingForAppend(path: string): _WriteHandle | null {
  const handle = real._openExistingForAppend(path);
  return handle === null ? null : recorded(handle, path);
}

export function _rename(from: string, to: string): void {
  real._rename(from, to);
  record({ op: "rename", from, to });
}

export function _link(from: string, to: string): void {
  real._link(from, to);
  record({ op: "link", from, to });
}

export function _unlink(path: string): void {
  real._unlink(path);
  record({ op: "unlink", path });
}

export function _removeIfExists(path: string): boolean {
  const removed = real._removeIfExists(path);
  if (removed) record({ op: "unlink", path });
  return removed;
}

export function _mkdirp(dir: string): void {
  const missing: string[] = [];
  for (
    let at = dir;
    real._lstat(at) === null;
    at = at.replace(/\/[^/]*$/, "")
  ) {
    missing.unshift(at);
  }
  real._mkdirp(dir);
  for (const path of missing) record({ op: "mkdir", path });
}

export async function _syncDirectory(dir: string): Promise<void> {
  await real._syncDirectory(dir);
  if (breakMode !== "nodirsync") record({ op: "fsyncDir", path: dir });
}
