// The JsonStore behind each seed-compatible DB (capture groups, operations,
// checkouts): `{}` while the file is missing, validated on every read and
// write, with the options the caller gave.

import type { DbOptions } from "./capture_groups.ts";
import { JsonStore } from "./json_store.ts";

export function _seedDb<T extends object>(
  path: string | URL,
  validate: (value: unknown) => T,
  options: DbOptions,
): JsonStore<T> {
  return new JsonStore<T>(path, {
    initial: () => ({}) as T,
    validate,
    lockTimeout: options.lockTimeout,
    blockingLock: options.blockingLock,
    durable: options.durable,
    backups: options.backups,
    journal: options.journal,
  });
}
