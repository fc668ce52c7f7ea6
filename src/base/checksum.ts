// FNV-1a checksums, and the 8 hex digits that carry them in a line.

/** FNV-1a, 32 bits, of `bytes[start..end)`: a cheap checksum. */
export function _fnv1a(bytes: Uint8Array, end: number, start = 0): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** `n` (a 32-bit checksum) as 8 lowercase hex digits. */
export function _hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** The 8 lowercase hex digits at `bytes[at..at+8)` as a number, or -1. */
export function _hexAt(bytes: Uint8Array, at: number): number {
  let value = 0;
  for (let i = at; i < at + 8; i++) {
    const c = bytes[i];
    const digit = c >= 0x30 && c <= 0x39
      ? c - 0x30
      : c >= 0x61 && c <= 0x66
      ? c - 0x57
      : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}
