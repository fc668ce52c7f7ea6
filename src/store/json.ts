// Parsing and serializing JSON documents, with the errors every store gives.

import { CorruptStoreError, StoreError } from "../base/errors.ts";
import { _setOwn } from "../base/ids.ts";

/**
 * The largest document lockbox reads or writes, in bytes. JavaScript strings
 * stop at about 512 MiB, so a larger document could not be read back at all;
 * this leaves room for a parse and an edit in memory.
 */
export const _MAX_DOCUMENT_BYTES = 256 * 1024 * 1024;

/**
 * The deepest nesting of arrays and objects lockbox reads or writes.
 * Python's json module (the seed systems) stops near 1,000 (its recursion
 * limit), and writing JSON nests JavaScript calls as deep as the document.
 */
export const _MAX_DEPTH = 1000;

const _MIB = 1024 * 1024;

/** The error for a document over a limit: a data error, never corruption. */
function _overLimit(path: string, action: string, what: string): StoreError {
  return new StoreError(
    path,
    `Cannot ${action} '${path}': ${what}; nothing was changed (the file is not corrupt, only past what lockbox handles)`,
  );
}

/** The deepest nesting of `[` and `{` outside strings in JSON text. */
function _depth(code: (i: number) => number, length: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < length; i++) {
    const c = code(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > deepest) deepest = depth;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return deepest;
}

/**
 * Throws a `StoreError` if a file of `size` bytes is too large to read as a
 * document.
 */
export function _checkDocumentSize(path: string, size: number): void {
  if (size > _MAX_DOCUMENT_BYTES) {
    throw _overLimit(
      path,
      "read",
      `it is ${(size / _MIB).toFixed(1)} MiB, over lockbox's limit of ${
        _MAX_DOCUMENT_BYTES / _MIB
      } MiB for one JSON document`,
    );
  }
}

/** A parsed document, or why the bytes are not one. */
export type _Parsed<T> =
  | { ok: true; value: T }
  | { ok: false; bytes: Uint8Array; error: CorruptStoreError };

const _utf8 = new TextDecoder("utf-8", { fatal: true });

/** Parses and validates a file's bytes; a failure is a `CorruptStoreError`. */
export function _parseJson<T>(
  bytes: Uint8Array,
  path: string,
  validate: ((value: unknown) => T) | undefined,
  parse: (text: string) => unknown = JSON.parse,
): _Parsed<T> {
  const corrupt = (reason: string, cause?: unknown) => ({
    ok: false as const,
    bytes,
    error: new CorruptStoreError(path, reason, undefined, { cause }),
  });
  if (bytes.length === 0) return corrupt("it is empty");
  _checkDocumentSize(path, bytes.length);
  const depth = _depth((i) => bytes[i], bytes.length);
  if (depth > _MAX_DEPTH) {
    throw _overLimit(
      path,
      "read",
      `it nests arrays and objects ${depth} deep, over lockbox's limit of ${_MAX_DEPTH}`,
    );
  }
  let text: string;
  try {
    text = _utf8.decode(bytes);
  } catch (error) {
    return corrupt("it is not UTF-8 text", error);
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    return corrupt(`it is not valid JSON (${(error as Error).message})`, error);
  }
  if (validate) {
    try {
      value = validate(value);
    } catch (error) {
      return corrupt(
        `validate rejected it (${(error as Error).message})`,
        error,
      );
    }
  }
  return { ok: true, value: value as T };
}

/** Whether JSON text is over the document size limit. */
function _overSizeLimit(text: string): boolean {
  // Characters, a lower bound on bytes; exact bytes only near the limit.
  return text.length * 3 > _MAX_DOCUMENT_BYTES &&
    new TextEncoder().encode(text).length > _MAX_DOCUMENT_BYTES;
}

/**
 * Throws a `RangeError` if `text`, the JSON of a value stored `keys` levels
 * down in a document (0 for the document itself), would take the document
 * past lockbox's depth limit, or is by itself past its size limit. Journal
 * mode checks each value it stores, as the other modes check each document
 * they write with `_toJson`.
 */
export function _checkStoredValue(
  text: string,
  keys: number,
  where: string,
): void {
  if (_overSizeLimit(text)) {
    throw new RangeError(
      `Cannot store the value at '${where}': its JSON is over lockbox's limit of ${
        _MAX_DOCUMENT_BYTES / _MIB
      } MiB for one document; it was not stored`,
    );
  }
  // Each level takes an opening and a closing bracket: short text is shallow.
  if (keys + text.length / 2 <= _MAX_DEPTH) return;
  const depth = keys + _depth((i) => text.charCodeAt(i), text.length);
  if (depth > _MAX_DEPTH) {
    throw new RangeError(
      `Cannot store the value at '${where}': the document would nest arrays and objects ${depth} deep, over lockbox's limit of ${_MAX_DEPTH}; it was not stored`,
    );
  }
}

/**
 * Throws a `RangeError` if growing an array from `length` to `newLength`
 * elements would leave more empty slots than fit in a document: JSON writes
 * each as `null,`, 5 bytes.
 */
export function _checkArrayGrowth(
  length: number,
  newLength: number,
  where: string,
): void {
  const empty = newLength - length;
  if (empty * 5 > _MAX_DOCUMENT_BYTES) {
    throw new RangeError(
      `Cannot store the value at '${where}': it would leave ${empty} empty array slots, which JSON writes as null, over lockbox's limit of ${
        _MAX_DOCUMENT_BYTES / _MIB
      } MiB for one document; it was not stored`,
    );
  }
}

/**
 * `JSON.stringify`, with a `TypeError` naming `path` for a value that is not
 * JSON, and a `RangeError` for one past lockbox's size or depth limit.
 */
export function _toJson(
  value: unknown,
  indent: number,
  path: string,
  stringify: (value: unknown, indent: number) => string | undefined = (
    v,
    n,
  ) => JSON.stringify(v, null, n),
): string {
  let text: string | undefined;
  try {
    text = stringify(value, indent);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new RangeError(
        `Cannot write '${path}': the value is too large or nested too deep for JSON (${error.message}); lockbox's limits are ${
          _MAX_DOCUMENT_BYTES / _MIB
        } MiB and ${_MAX_DEPTH} levels; nothing was written`,
        { cause: error },
      );
    }
    throw new TypeError(
      `Cannot write '${path}': the value is not JSON (${
        (error as Error).message
      }); nothing was written`,
      { cause: error },
    );
  }
  if (text === undefined) {
    throw new TypeError(
      `Cannot write '${path}': ${typeof value} is not JSON; nothing was written`,
    );
  }
  if (_overSizeLimit(text)) {
    throw new RangeError(
      `Cannot write '${path}': the JSON is over lockbox's limit of ${
        _MAX_DOCUMENT_BYTES / _MIB
      } MiB for one document; nothing was written`,
    );
  }
  const depth = _depth((i) => text!.charCodeAt(i), text.length);
  if (depth > _MAX_DEPTH) {
    throw new RangeError(
      `Cannot write '${path}': the value nests arrays and objects ${depth} deep, over lockbox's limit of ${_MAX_DEPTH}; nothing was written`,
    );
  }
  return text;
}

/**
 * A deep copy of a document: arrays and plain objects copied by hand (many
 * times faster than structuredClone on a large document, so a watch's copy
 * of each version costs little), anything else by structuredClone.
 */
export function _copyJson<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const copy = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      copy[i] = typeof item === "object" && item !== null
        ? _copyJson(item)
        : item;
    }
    return copy as T;
  }
  const prototype = Object.getPrototypeOf(value);
  // What validate made of it (a Date, a Map): as structuredClone copies it.
  if (prototype !== Object.prototype && prototype !== null) {
    return structuredClone(value);
  }
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    const inner = typeof item === "object" && item !== null
      ? _copyJson(item)
      : item;
    // An own "__proto__" key is data, as JSON.parse makes it.
    if (key === "__proto__") _setOwn(copy, key, inner);
    else copy[key] = inner;
  }
  return copy as T;
}
