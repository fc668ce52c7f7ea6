// Fencing tokens come in two families, told apart by their range, and a
// store compares a fence only with fences of its own family. See
// ARCHITECTURE.md, "Fences from two families of locks".

/**
 * The lowest token a FileLock hands out for an exclusive lock: 2^50. Its
 * tokens start from the wall clock in microseconds (2^50 µs is in 2005),
 * so they are all at least this, while counter tokens (a PostgreSQL lock's,
 * or numbers a caller makes up) start from 1 and never get this far.
 */
export const _FILE_TOKEN_MIN = 2 ** 50;

/** The two families of fencing tokens. */
export type _FenceFamily = "file" | "counter";

/** The family of a token: FileLock's (from 2^50 up) or a counter's. */
export function _fenceFamily(token: number): _FenceFamily {
  return token >= _FILE_TOKEN_MIN ? "file" : "counter";
}

/** The highest fence of each family a store has applied (-Infinity: none). */
export interface _Fences {
  file: number;
  counter: number;
}

/**
 * Parses a fence file: one number per family seen, separated by white space
 * (one number alone, as lockbox wrote before there were two families, is
 * of whichever family its range says). `null` when it holds anything else.
 */
export function _parseFences(text: string): _Fences | null {
  const fences: _Fences = { file: -Infinity, counter: -Infinity };
  const words = text.trim().split(/\s+/).filter((word) => word !== "");
  for (const word of words) {
    if (!/^\d{1,16}$/.test(word)) return null;
    const value = Number(word);
    if (!Number.isSafeInteger(value)) return null;
    const family = _fenceFamily(value);
    fences[family] = Math.max(fences[family], value);
  }
  return fences;
}

/**
 * A fence file's text: the FileLock family's fence, then the counter's,
 * each only if applied; with one family alone, the same text lockbox
 * wrote before there were two.
 */
export function _formatFences(fences: _Fences): string {
  const words = [fences.file, fences.counter].filter((value) =>
    value !== -Infinity
  );
  return `${words.join(" ")}\n`;
}
