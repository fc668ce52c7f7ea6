// The bytes of a holder record in a lock file, and reading them back.

import { _errorCode, _openReadOnly } from "./_runtime.ts";
import type { LockHolder } from "./lock_holder.ts";

// Layout: line 1 is the record as JSON, line 2 is `#lockbox <fnv1a-32 hex>`
// over line 1's bytes, then spaces. A reader that catches a write half done
// sees a checksum mismatch and reads again, so it never returns a torn record.
// The file is padded instead of truncated: a shorter record written over a
// longer one needs no second system call.
const _MAGIC = "#lockbox ";
const _PAD_TO = 512;
/** The largest record lockbox writes or reads. */
export const _MAX_RECORD_BYTES = 64 * 1024;

const _encoder = new TextEncoder();
const _decoder = new TextDecoder();

function _fnv1a(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/**
 * Encodes a record, padded with spaces to at least `minSize` bytes so that it
 * fully covers an older, longer record.
 */
export function _encodeHolder(holder: LockHolder, minSize: number): Uint8Array {
  const json = _encoder.encode(JSON.stringify(holder));
  const tail = _encoder.encode(`\n${_MAGIC}${_fnv1a(json)}\n`);
  const length = json.length + tail.length;
  if (length > _MAX_RECORD_BYTES) {
    throw new RangeError(
      `Cannot write lock holder record: ${length} bytes exceeds ${_MAX_RECORD_BYTES}; pass smaller metadata`,
    );
  }
  const size = Math.max(
    minSize <= _MAX_RECORD_BYTES ? minSize : 0,
    Math.ceil(length / _PAD_TO) * _PAD_TO,
  );
  const out = new Uint8Array(size).fill(0x20);
  out.set(json, 0);
  out.set(tail, json.length);
  return out;
}

/**
 * Decodes a record. Returns `"torn"` when the bytes look like a record whose
 * checksum does not match (a write in progress), `null` when there is no
 * lockbox record at all (an empty file, or one another tool wrote).
 */
export function _decodeHolder(bytes: Uint8Array): LockHolder | "torn" | null {
  const newline = bytes.indexOf(0x0a);
  if (newline <= 0 || bytes[0] !== 0x7b /* { */) return null;
  const json = bytes.subarray(0, newline);
  const rest = _decoder.decode(
    bytes.subarray(newline + 1, newline + 1 + _MAGIC.length + 8),
  );
  if (!rest.startsWith(_MAGIC)) return "torn";
  if (rest.slice(_MAGIC.length) !== _fnv1a(json)) return "torn";
  let value: unknown;
  try {
    value = JSON.parse(_decoder.decode(json));
  } catch {
    return "torn";
  }
  return _isHolder(value) ? value : null;
}

function _isHolder(value: unknown): value is LockHolder {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return Number.isInteger(v.pid) && typeof v.hostname === "string" &&
    typeof v.acquiredAt === "string" && Number.isInteger(v.token) &&
    typeof v.shared === "boolean" &&
    (v.metadata === undefined ||
      (typeof v.metadata === "object" && v.metadata !== null));
}

/**
 * Reads the holder record of a lock file, retrying while a write is half
 * done. `null` when the file is missing or holds no lockbox record.
 */
export function _readHolderRecord(lockPath: string): LockHolder | null {
  let handle;
  try {
    handle = _openReadOnly(lockPath);
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
  try {
    const size = Math.min(handle.stat().size, _MAX_RECORD_BYTES);
    if (size === 0) return null;
    const buffer = new Uint8Array(size);
    for (let attempt = 0; attempt < 1000; attempt++) {
      const n = handle.readFromStart(buffer);
      const decoded = _decodeHolder(buffer.subarray(0, n));
      if (decoded !== "torn") return decoded;
    }
    return null;
  } finally {
    handle.close();
  }
}
