// JSON Pointers (RFC 6901) for the CLI's `store get`, `set` and `delete`.

import { _setOwn } from "../base/ids.ts";

/** The reference tokens of a pointer; throws a `TypeError` for a malformed one. */
export function _parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) {
    throw new TypeError(
      `Cannot use JSON pointer '${pointer}': it must be empty or start with "/" (such as /users/0/name)`,
    );
  }
  return pointer.slice(1).split("/").map((token) => {
    if (/~(?![01])/.test(token)) {
      throw new TypeError(
        `Cannot use JSON pointer '${pointer}': "~" must be followed by 0 or 1`,
      );
    }
    return token.replaceAll("~1", "/").replaceAll("~0", "~");
  });
}

function _index(container: unknown[], token: string, forAppend: boolean) {
  if (forAppend && token === "-") return container.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) return undefined;
  const index = Number(token);
  return index <= container.length - (forAppend ? 0 : 1) ? index : undefined;
}

function _isContainer(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The value at `pointer`, or `{ found: false }`. */
export function _getPointer(
  document: unknown,
  pointer: string,
): { found: true; value: unknown } | { found: false } {
  let value = document;
  for (const token of _parsePointer(pointer)) {
    if (Array.isArray(value)) {
      const index = _index(value, token, false);
      if (index === undefined) return { found: false };
      value = value[index];
    } else if (_isContainer(value) && Object.hasOwn(value, token)) {
      value = value[token];
    } else {
      return { found: false };
    }
  }
  return { found: true, value };
}

/** What a missing container before `next` becomes: an array for `-`. */
function _fresh(next: string): unknown {
  return next === "-" ? [] : {};
}

/**
 * Sets the value at `pointer`, creating missing objects on the way; `-`
 * appends to an array, and a missing container before `-` is created as an
 * array (`/jobs/-` on `{}` makes `{"jobs":[value]}`). Returns the new
 * document (a new value only when the pointer is empty). Throws a `TypeError` naming the pointer when the path
 * runs through a value that is not an object or array.
 */
export function _setPointer(
  document: unknown,
  pointer: string,
  value: unknown,
): unknown {
  const tokens = _parsePointer(pointer);
  if (tokens.length === 0) return value;
  let parent = document;
  for (const [i, token] of tokens.entries()) {
    const last = i === tokens.length - 1;
    const where = i === 0 ? "" : pointer.split("/").slice(0, i + 1).join("/");
    if (Array.isArray(parent)) {
      const index = _index(parent, token, true);
      if (index === undefined) {
        throw new TypeError(
          `Cannot set '${pointer}': '${token}' is not an index of the array at '${where}' (0 to ${parent.length}, or -)`,
        );
      }
      if (last) {
        parent[index] = value;
        break;
      }
      parent[index] ??= _fresh(tokens[i + 1]);
      parent = parent[index];
    } else if (_isContainer(parent)) {
      if (last) {
        _setOwn(parent, token, value);
        break;
      }
      if (!Object.hasOwn(parent, token)) {
        _setOwn(parent, token, _fresh(tokens[i + 1]));
      }
      parent = parent[token];
    } else {
      throw new TypeError(
        `Cannot set '${pointer}': the value at '${where}' is not an object or array`,
      );
    }
  }
  return document;
}

/**
 * The document a missing store starts as before `pointer` is set: an array
 * when the pointer's first token is `-`, else an object.
 */
export function _initialFor(pointer: string): unknown {
  return _fresh(_parsePointer(pointer)[0] ?? "");
}

/**
 * Removes the value at `pointer` (an array element is spliced out). Returns
 * whether there was one; the document is changed in place. Throws a
 * `TypeError` for the empty pointer (the whole document cannot be removed).
 */
export function _deletePointer(document: unknown, pointer: string): boolean {
  const tokens = _parsePointer(pointer);
  if (tokens.length === 0) {
    throw new TypeError(
      `Cannot delete '': the whole document cannot be deleted; set it to {} or null instead`,
    );
  }
  const parent = _getPointer(
    document,
    pointer.slice(0, pointer.lastIndexOf("/")),
  );
  if (!parent.found) return false;
  const last = tokens[tokens.length - 1];
  const container = parent.value;
  if (Array.isArray(container)) {
    const index = _index(container, last, false);
    if (index === undefined) return false;
    container.splice(index, 1);
    return true;
  }
  if (!_isContainer(container) || !Object.hasOwn(container, last)) {
    return false;
  }
  delete container[last];
  return true;
}
