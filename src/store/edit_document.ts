// The editing behind `editStore` and `lockbox store edit`, for any store
// (a file's, or a database's): under its lock, on a copy, checked before it
// replaces the document.

import { dirname, join } from "node:path";
import {
  type _Child,
  _createForWrite,
  _makeTempDir,
  _onTerminationSignals,
  _pid,
  _processExists,
  _readDir,
  _readFile,
  _removeTree,
} from "../runtime/mod.ts";
import { _fsError } from "../base/fs_errors.ts";
import type { JsonStore } from "./json_store.ts";
import { _startCommand } from "../base/command.ts";
import { StoreError } from "../base/errors.ts";

/** How {@linkcode editStore} edits. */
export interface EditStoreOptions {
  /** The editor command; the file to edit is appended to it. */
  editor: string[];
  /**
   * Called when the edited text is not valid JSON: resolve `true` to edit
   * again (the text is kept), `false` to give up with the file untouched.
   *
   * @default {() => false}
   */
  onInvalid?: (error: SyntaxError) => boolean | Promise<boolean>;
  /**
   * How long to wait for the lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
}

/** What {@linkcode editStore} did. */
export type EditOutcome = "changed" | "unchanged" | "aborted";

class _Abort extends Error {}

/**
 * Edits any store's document (a file's, or a database's) as
 * {@linkcode editStore} does: under its lock, on a copy named `copyName`.
 */
export async function _editDocument(
  store: JsonStore<unknown>,
  copyName: string,
  options: EditStoreOptions,
): Promise<EditOutcome> {
  const { editor } = options;
  if (!Array.isArray(editor) || editor.length === 0 || !editor[0]) {
    throw new TypeError(
      "Cannot edit a store: options.editor must name an editor command",
    );
  }
  let outcome: EditOutcome = "changed";
  try {
    await store.transform(async (current) => {
      // The pid in the name lets a later run remove a copy that a killed
      // run left behind.
      const dir = await _makeTempDir(`${_EDIT_PREFIX}${_pid()}_`);
      try {
        await _removeOrphanedCopies(dirname(dir));
        const copy = join(dir, copyName);
        const original = JSON.stringify(current, null, 2) + "\n";
        await _writeText(copy, original);
        while (true) {
          await _runEditor(editor, copy);
          const text = new TextDecoder().decode(
            await _readFile(copy) ?? new Uint8Array(),
          );
          if (text === original) {
            outcome = "unchanged";
            return current;
          }
          try {
            const edited = JSON.parse(text);
            // Reformatted, but the same document: nothing to write.
            if (JSON.stringify(edited) === JSON.stringify(current)) {
              outcome = "unchanged";
              return current;
            }
            return edited;
          } catch (error) {
            if (!await (options.onInvalid?.(error as SyntaxError) ?? false)) {
              throw new _Abort();
            }
          }
        }
      } finally {
        await _removeTree(dir);
      }
    });
  } catch (error) {
    if (error instanceof _Abort) return "aborted";
    throw error;
  }
  return outcome;
}

async function _writeText(path: string, text: string): Promise<void> {
  const handle = _createForWrite(path, 0o600);
  try {
    await handle.write(new TextEncoder().encode(text));
  } catch (error) {
    throw _fsError("write the copy", path, error);
  } finally {
    handle.close();
  }
}

const _EDIT_PREFIX = "lockbox_edit_";

/** Removes edit copies whose process is gone (killed mid-edit). */
async function _removeOrphanedCopies(tmp: string): Promise<void> {
  let entries;
  try {
    entries = await _readDir(tmp);
  } catch {
    return; // only tidying
  }
  for (const entry of entries) {
    if (!entry.name.startsWith(_EDIT_PREFIX)) continue;
    const match = /^(\d+)_/.exec(entry.name.slice(_EDIT_PREFIX.length));
    if (!match || !entry.isDirectory || entry.isSymlink) continue;
    const pid = Number(match[1]);
    if (pid === _pid() || _processExists(pid)) continue;
    await _removeTree(join(tmp, entry.name)).catch(() => {});
  }
}

/**
 * Runs the editor as `git commit` and `visudo` do: it has the terminal's
 * signals to itself. Ctrl-C reaches the whole foreground process group, so
 * this process ignores SIGINT (the editor decides what it means) and passes
 * SIGTERM on to the editor; either way the edit is applied or refused when
 * the editor exits, and the copy is removed.
 */
async function _runEditor(editor: string[], file: string): Promise<void> {
  let child: _Child | null = null;
  const stop = _onTerminationSignals((signal) => {
    if (signal === "SIGTERM") child?.kill("SIGTERM");
  });
  let status;
  try {
    child = await _startCommand([...editor, file]);
    status = await child.status;
  } finally {
    stop();
  }
  const { code, signal } = status;
  if (code !== 0 || signal !== null) {
    throw new StoreError(
      file,
      `Cannot use the edit: the editor '${editor.join(" ")}' ${
        signal === null
          ? `exited with ${code}`
          : `was killed by signal ${signal}`
      }; the store was left untouched`,
    );
  }
}
