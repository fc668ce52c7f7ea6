// Editing a JSON store by hand, as `visudo` edits sudoers: under the lock,
// on a copy, checked before it replaces the file.

import { basename } from "node:path";
import { _toPath } from "../runtime/mod.ts";
import { JsonStore } from "./json_store.ts";
import { _hasJournal } from "./store_mode.ts";
import {
  _editDocument,
  type EditOutcome,
  type EditStoreOptions,
} from "./edit_document.ts";

export type { EditOutcome, EditStoreOptions };

/**
 * Opens a JSON store in an editor, holding its exclusive lock until the
 * editor exits, then writes the edited document back with a durable atomic
 * replace, only if it is valid JSON and changed. A missing file starts as
 * `{}`.
 *
 * Requires `--allow-read`, `--allow-write` and `--allow-run`.
 *
 * @param path The store file.
 * @param options The editor, what to do with invalid JSON, the lock timeout.
 * @returns `"changed"`, `"unchanged"` (nothing written) or `"aborted"`
 *   (invalid JSON given up on; nothing written).
 * @throws {StoreError} If the editor fails (nothing written).
 * @throws {CommandNotStartedError} If the editor cannot be started.
 * @throws {CorruptStoreError} If the store does not parse to begin with.
 *
 * @example
 * ```ts ignore
 * import { editStore } from "@lockbox/lockbox";
 * await editStore("state.json", { editor: ["vi"] });
 * ```
 */
export async function editStore(
  path: string | URL,
  options: EditStoreOptions,
): Promise<EditOutcome> {
  const target = _toPath(path);
  const store = new JsonStore<unknown>(target, {
    initial: () => ({}),
    lockTimeout: options.lockTimeout,
    journal: _hasJournal(target),
  });
  return await _editDocument(store, basename(target), options);
}
