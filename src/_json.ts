// Parsing and serializing JSON documents, with the errors every store gives.

import { CorruptStoreError } from "./errors.ts";

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
): _Parsed<T> {
  const corrupt = (reason: string, cause?: unknown) => ({
    ok: false as const,
    bytes,
    error: new CorruptStoreError(path, reason, undefined, { cause }),
  });
  if (bytes.length === 0) return corrupt("it is empty");
  let text: string;
  try {
    text = _utf8.decode(bytes);
  } catch (error) {
    return corrupt("it is not UTF-8 text", error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
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

/** `JSON.stringify`, with a `TypeError` naming `path` for a value that is not JSON. */
export function _toJson(value: unknown, indent: number, path: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, null, indent);
  } catch (error) {
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
  return text;
}
