// Identifiers and argument checks shared by the domain modules.

/** A new id of 16 lowercase hex characters, as the seed systems make them. */
export function _newHexId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Throws a `TypeError` unless `value` is a non-empty string. */
export function _checkId(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new TypeError(
      `Cannot use ${what} ${
        JSON.stringify(value)
      }: expected a non-empty string`,
    );
  }
  return value;
}

/** Unix time in whole seconds, as the seeds store `created`. */
export function _unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * `record[key]` when it is the record's own property, never an inherited one:
 * ids such as `constructor` or `toString` name nothing in a DB.
 */
export function _own<V>(record: Record<string, V>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Sets `record[key]` as an own property, even for the id `__proto__`. */
export function _setOwn<V>(
  record: Record<string, V>,
  key: string,
  value: V,
): void {
  Object.defineProperty(record, key, {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

/**
 * Now, as seed 002 writes it: Python's
 * `datetime.now(timezone.utc).isoformat()`, `2026-12-01T05:50:00.123000+00:00`
 * (microseconds, left out when zero, as Python does; a `Z` would not parse in
 * Python 3.10 and older).
 */
export function _pythonUtcNow(now: Date = new Date()): string {
  const iso = now.toISOString(); // 2026-12-01T05:50:00.123Z
  const ms = now.getUTCMilliseconds();
  const fraction = ms === 0 ? "" : `.${String(ms).padStart(3, "0")}000`;
  return `${iso.slice(0, 19)}${fraction}+00:00`;
}
