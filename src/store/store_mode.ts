// Which mode a store file is in, for tools that open stores they did not
// make (the CLI, editStore): a journal beside the file means journal mode.

import { _lstat, _toPath } from "../runtime/mod.ts";

/** Whether `path` has a journal beside it (it was written in journal mode). */
export function _hasJournal(path: string | URL): boolean {
  return _lstat(`${_toPath(path)}.journal`) !== null;
}
