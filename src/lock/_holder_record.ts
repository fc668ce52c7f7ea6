// The bytes of a holder record in a lock file, and reading them back.

import { _fnv1a, _hexAt } from "../base/checksum.ts";
import {
  _errorCode,
  type _LockHandle,
  _lstat,
  _onWindows,
  _openReadOnly,
} from "../runtime/mod.ts";
import type { LockHolder } from "../base/lock_holder.ts";

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

const _TOKEN_PREFIX = '{"token":';

/**
 * The JSON of a record, token first so that an acquire can read the previous
 * token without parsing the whole record. Hand-built: this runs on every
 * acquire. `metadataJson` comes from {@linkcode _metadataJson}.
 */
export function _recordText(
  token: number,
  pid: number,
  hostname: string,
  shared: boolean,
  metadataJson: string | undefined,
): string {
  return `${_TOKEN_PREFIX}${token},"pid":${pid},"hostname":${
    _jsonString(hostname)
  },"acquiredAt":"${_isoNow()}","shared":${shared}${
    metadataJson === undefined ? "" : `,"metadata":${metadataJson}`
  }}`;
}

let _lastHost = "";
let _lastHostJson = '""';
function _jsonString(value: string): string {
  if (value !== _lastHost) {
    _lastHost = value;
    _lastHostJson = JSON.stringify(value);
  }
  return _lastHostJson;
}

let _lastMs = -1;
let _lastIso = "";
function _isoNow(): string {
  const now = Date.now();
  if (now !== _lastMs) {
    _lastMs = now;
    _lastIso = _isoTime(now);
  }
  return _lastIso;
}

/**
 * `new Date(ms).toISOString()` for a time from 1970 to 9999, worked out
 * here: a process's first `toISOString` costs it about 1 ms (V8 sets up its
 * date cache), and every first lock would pay it. The date comes from the
 * day count through 400-year eras of the Gregorian calendar (146,097 days
 * each), counted from March 1 so that February's leap day ends a year.
 */
export function _isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000);
  const inDay = ms - days * 86_400_000;
  // Days since 0000-03-01.
  const fromMarch = days + 719_468;
  const era = Math.floor(fromMarch / 146_097);
  const dayOfEra = fromMarch - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1_460) + Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra -
    (365 * yearOfEra + Math.floor(yearOfEra / 4) -
      Math.floor(yearOfEra / 100));
  // Months from March: 0 is March, 11 is February.
  const month = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * month + 2) / 5) + 1;
  const calendarMonth = month < 10 ? month + 3 : month - 9;
  const year = era * 400 + yearOfEra + (calendarMonth <= 2 ? 1 : 0);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(year, 4)}-${pad(calendarMonth)}-${pad(day)}T${
    pad(Math.floor(inDay / 3_600_000))
  }:${pad(Math.floor(inDay / 60_000) % 60)}:${
    pad(Math.floor(inDay / 1000) % 60)
  }.${pad(inDay % 1000, 3)}Z`;
}

/**
 * Serializes caller metadata once per request, refusing what does not fit in
 * a record.
 */
export function _metadataJson(
  metadata: Record<string, unknown> | undefined,
): string | undefined {
  if (metadata === undefined) return undefined;
  // A plain object, so that the record keeps an object a reader can check:
  // a Date or a class instance would turn into something else (a string).
  const proto = typeof metadata === "object" && metadata !== null
    ? Object.getPrototypeOf(metadata)
    : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(
      `Cannot use lock metadata: expected a plain object such as { user: "ann" }, got ${
        metadata === null
          ? "null"
          : typeof metadata !== "object"
          ? typeof metadata
          : `a ${proto?.constructor?.name ?? "non-plain object"}`
      }`,
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(metadata);
  } catch (error) {
    throw new TypeError(
      `Cannot use lock metadata: it is not JSON-serializable (${
        (error as Error)?.message ?? String(error)
      })`,
      { cause: error },
    );
  }
  if (json === undefined || !json.startsWith("{")) {
    throw new TypeError(
      "Cannot use lock metadata: its toJSON() does not give an object",
    );
  }
  if (json.length * 3 > _MAX_RECORD_BYTES - 512) {
    const bytes = _encoder.encode(json).length;
    if (bytes > _MAX_RECORD_BYTES - 512) {
      throw new RangeError(
        `Cannot use lock metadata: ${bytes} bytes of JSON exceeds ${
          _MAX_RECORD_BYTES - 512
        }; pass smaller metadata`,
      );
    }
  }
  return json;
}

// One scratch buffer for every encode, kept filled with spaces past the last
// record: allocating and filling a fresh one costs more than the rest of an
// uncontended acquire.
let _scratch = new Uint8Array(_PAD_TO * 2).fill(0x20);
let _dirty = 0;
const _HEX = _encoder.encode("0123456789abcdef");

/**
 * Encodes a record's JSON, padded with spaces to at least `minSize` bytes so
 * that it fully covers an older, longer record. The result is a view of a
 * shared buffer: write it before the next call.
 */
export function _encodeRecord(text: string, minSize: number): Uint8Array {
  const tailLength = 1 + _MAGIC.length + 8 + 1;
  const need = text.length * 3 + tailLength;
  const padded = Math.max(minSize <= _MAX_RECORD_BYTES ? minSize : 0, need);
  if (_scratch.length < padded + _PAD_TO) {
    _scratch = new Uint8Array(padded + _PAD_TO).fill(0x20);
    _dirty = 0;
  }
  const { written } = _encoder.encodeInto(text, _scratch);
  const hash = _fnv1a(_scratch, written);
  let at = written;
  _scratch[at++] = 0x0a;
  at += _encoder.encodeInto(_MAGIC, _scratch.subarray(at)).written;
  for (let shift = 28; shift >= 0; shift -= 4) {
    _scratch[at++] = _HEX[(hash >>> shift) & 0xf];
  }
  _scratch[at++] = 0x0a;
  if (at > _MAX_RECORD_BYTES) {
    throw new RangeError(
      `Cannot write lock holder record: ${at} bytes exceeds ${_MAX_RECORD_BYTES}; pass smaller metadata`,
    );
  }
  if (_dirty > at) _scratch.fill(0x20, at, _dirty);
  _dirty = at;
  const size = Math.max(
    minSize <= _MAX_RECORD_BYTES ? minSize : 0,
    Math.ceil(at / _PAD_TO) * _PAD_TO,
  );
  return _scratch.subarray(0, size);
}

/** The checksum line's state for the record line ending at `newline`. */
function _checksumOk(bytes: Uint8Array, newline: number): boolean {
  const start = newline + 1 + _MAGIC.length;
  if (bytes.length < start + 8) return false;
  for (let i = 0; i < _MAGIC.length; i++) {
    if (bytes[newline + 1 + i] !== _MAGIC.charCodeAt(i)) return false;
  }
  const stored = _hexAt(bytes, start);
  return stored !== -1 && stored === _fnv1a(bytes, newline);
}

/**
 * Where the record line ends: its newline's index, `"torn"` for a record
 * caught half written, `null` when the bytes hold no lockbox record.
 */
function _recordEnd(bytes: Uint8Array): number | "torn" | null {
  if (bytes.length === 0 || bytes[0] !== 0x7b /* { */) return null;
  const newline = bytes.indexOf(0x0a);
  return newline === -1 || !_checksumOk(bytes, newline) ? "torn" : newline;
}

/**
 * Reads only the token of a record: `"torn"` for a record caught half
 * written, `null` when there is no lockbox record.
 */
export function _decodeToken(bytes: Uint8Array): number | "torn" | null {
  const newline = _recordEnd(bytes);
  if (typeof newline !== "number") return newline;
  let at = _TOKEN_PREFIX.length;
  let token = 0;
  let digits = 0;
  while (at < newline && bytes[at] >= 0x30 && bytes[at] <= 0x39) {
    token = token * 10 + bytes[at++] - 0x30;
    digits++;
  }
  return digits > 0 && bytes[at] === 0x2c /* , */ ? token : null;
}

/**
 * Decodes a whole record. Returns `"torn"` when the bytes look like a record
 * caught half written, `null` when there is no lockbox record at all (an empty
 * file, or one another tool wrote).
 */
function _decodeHolder(bytes: Uint8Array): LockHolder | "torn" | null {
  const newline = _recordEnd(bytes);
  if (typeof newline !== "number") return newline;
  let value: unknown;
  try {
    value = JSON.parse(_decoder.decode(bytes.subarray(0, newline)));
  } catch {
    return null;
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

let _readBuffer = new Uint8Array(4096);

/**
 * Reads the record at the start of an open lock file and decodes it,
 * reading again while a write is half done (shared holders may be writing
 * theirs right now). `null` when there is no whole lockbox record.
 */
export function _readRecord<T>(
  handle: _LockHandle,
  fileSize: number,
  decode: (bytes: Uint8Array) => T | "torn" | null,
  attempts = 1000,
): T | "torn" | null {
  const size = Math.min(fileSize, _MAX_RECORD_BYTES);
  if (size === 0) return null;
  if (_readBuffer.length < size) _readBuffer = new Uint8Array(size);
  const buffer = _readBuffer.subarray(0, size);
  for (let attempt = 0; attempt < attempts; attempt++) {
    const decoded = decode(buffer.subarray(0, handle.readFromStart(buffer)));
    if (decoded !== "torn") return decoded;
  }
  return "torn";
}

/**
 * Whether the bytes are a lockbox record whose checksum fails: a record
 * damaged on disk (or by hand), which a holder of the exclusive lock may
 * rewrite, as opposed to content another tool wrote.
 */
export function _isDamagedRecord(bytes: Uint8Array): boolean {
  if (bytes.length < _TOKEN_PREFIX.length) return false;
  for (let i = 0; i < _TOKEN_PREFIX.length; i++) {
    if (bytes[i] !== _TOKEN_PREFIX.charCodeAt(i)) return false;
  }
  const newline = bytes.indexOf(0x0a);
  if (newline === -1) return false;
  for (let i = 0; i < _MAGIC.length; i++) {
    if (bytes[newline + 1 + i] !== _MAGIC.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The file that keeps lockbox's record of a lock file written in seed 001's
 * format (the holder's pid alone), and on Windows of every lock file (where
 * no other handle may read a locked file, and a shared holder may not write
 * it): the lock file's name plus `.lockbox`, which seed 001's tools, looking
 * for `*.lock`, never look at.
 */
export function _recordFileOf(lockPath: string): string {
  return `${lockPath}.lockbox`;
}

/** The most bytes a lock file holding only a pid has (10 digits, spaces). */
const _MAX_PID_FILE_BYTES = 64;

/**
 * The pid in a lock file written as seed 001 writes them (the holder's pid
 * alone, whitespace around it allowed), or `null` for any other content.
 */
export function _pidInFile(bytes: Uint8Array): number | null {
  if (bytes.length === 0 || bytes.length > _MAX_PID_FILE_BYTES) return null;
  const text = _decoder.decode(bytes).trim();
  if (!/^[0-9]{1,10}$/.test(text)) return null;
  const pid = Number(text);
  return pid >= 1 && pid <= 2 ** 31 - 1 ? pid : null;
}

/** The encoded bytes of a pid as seed 001 writes it. */
export function _pidBytes(pid: number): Uint8Array {
  return _encoder.encode(String(pid));
}

/** What a lock file says: a lockbox record, a seed 001 pid, or neither. */
export interface _LockFileContent {
  /** The lockbox record: in the file, or in its record file for a pid file. */
  record: LockHolder | null;
  /** The pid of a lock file in seed 001's format (the pid alone). */
  pid: number | null;
}

const _NOTHING: _LockFileContent = { record: null, pid: null };

/**
 * Reads what a lock file says, without locking it. A lockbox record is in
 * the file itself, or, for a file holding only a pid (seed 001's format), in
 * its record file ({@linkcode _recordFileOf}), trusted only while it names
 * that same pid (else it is an earlier holder's).
 */
export function _readLockFile(lockPath: string): _LockFileContent {
  if (_onWindows) return _readRecordBeside(lockPath);
  let handle;
  try {
    handle = _openReadOnly(lockPath);
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return _NOTHING;
    throw error;
  }
  let pid: number | null;
  try {
    const size = handle.stat().size;
    const record = _readRecord(handle, size, _decodeHolder);
    if (record !== null) {
      return record === "torn" ? _NOTHING : { record, pid: null };
    }
    if (size > _MAX_PID_FILE_BYTES) return _NOTHING;
    const bytes = new Uint8Array(size);
    pid = _pidInFile(bytes.subarray(0, handle.readFromStart(bytes)));
  } finally {
    handle.close();
  }
  if (pid === null) return _NOTHING;
  return { record: _recordOfPidFile(lockPath, pid), pid };
}

/**
 * Windows: the record in the lock file's record file, whoever it names (a
 * caller trusts it only while the lock is held), since a locked file cannot
 * be read from another handle there.
 */
function _readRecordBeside(lockPath: string): _LockFileContent {
  if (_lstat(lockPath) === null) return _NOTHING;
  return { record: _recordFile(_recordFileOf(lockPath)), pid: null };
}

/** The whole record in a record file, or `null`. */
function _recordFile(path: string): LockHolder | null {
  let handle;
  try {
    if (!_lstat(path)?.isFile) return null;
    handle = _openReadOnly(path);
  } catch (error) {
    const code = _errorCode(error);
    if (code === "ENOENT" || code === "EACCES" || code === "EPERM") {
      return null;
    }
    throw error;
  }
  try {
    const record = _readRecord(handle, handle.stat().size, _decodeHolder);
    return record === "torn" ? null : record;
  } finally {
    handle.close();
  }
}

/** The record in a pid file's record file, if it names `pid`. */
function _recordOfPidFile(lockPath: string, pid: number): LockHolder | null {
  const record = _recordFile(_recordFileOf(lockPath));
  return record?.pid === pid ? record : null;
}

/**
 * Reads the holder record of a lock file, without locking it. `null` when
 * the file is missing or holds no lockbox record (see
 * {@linkcode _readLockFile}).
 */
export function _readHolderRecord(lockPath: string): LockHolder | null {
  return _readLockFile(lockPath).record;
}
