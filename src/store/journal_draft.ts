// Journal mode's draft: what `fn` changes in a JsonStore update, recorded as
// journal ops, and the rules by which an op changes a document, shared by
// the recording and by every replay of the journal, so that both always end
// up with the same document (see ARCHITECTURE.md, "JsonStore's document
// storage").

import { _setOwn } from "../base/ids.ts";
import { _checkArrayGrowth, _checkStoredValue } from "./json.ts";

/** One change: a value set at a path of keys, or the key there deleted. */
export type _Op = ["s", string[], unknown] | ["d", string[]];

/** Whether `key` names an array element: a canonical integer below 2^32 - 1. */
function _isArrayIndex(key: string): boolean {
  const n = Number(key);
  return Number.isInteger(n) && n >= 0 && n < 2 ** 32 - 1 && String(n) === key;
}

/**
 * Sets `parent[key]` as the document reads back from JSON: an own property
 * even for "__proto__", and null in the slots between an array's end and an
 * element set past it or a longer length (JSON writes an empty slot as null,
 * so the journal's document and a snapshot's never differ in holes). A
 * growth past what a document holds is a `RangeError`, with nothing changed.
 */
function _set(parent: object, key: string, value: unknown, where: string) {
  if (Array.isArray(parent)) {
    const end = key === "length"
      ? value as number
      : _isArrayIndex(key)
      ? Number(key)
      : -1;
    const from = parent.length;
    if (end > from) {
      _checkArrayGrowth(from, end, where);
      parent.length = end;
      parent.fill(null, from);
    }
    if (key === "length") {
      parent.length = value as number;
      return;
    }
  }
  if (key === "__proto__") {
    _setOwn(parent as Record<string, unknown>, key, value);
  } else (parent as Record<string, unknown>)[key] = value;
}

/** Whether `value` is an array or a plain object: what JSON.parse makes. */
function _isContainer(value: unknown): value is object {
  if (typeof value !== "object" || value === null) return false;
  if (Array.isArray(value)) return true;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** An object `fn` stored, and its JSON as the journal has it there. */
interface _Stored {
  keys: string[];
  text: string;
}

/** What is at `keys` under `value`, by own properties only. */
function _at(
  value: unknown,
  keys: string[],
): { found: boolean; value: unknown } {
  for (const key of keys) {
    if (
      typeof value !== "object" || value === null || !Object.hasOwn(value, key)
    ) {
      return { found: false, value: undefined };
    }
    value = (value as Record<string, unknown>)[key];
  }
  return { found: true, value };
}

/** The first `length` keys of a path, as one string. */
function _pathKey(keys: string[], length: number): string {
  return JSON.stringify(keys.slice(0, length));
}

/** Whether both are arrays, or both objects that are not arrays. */
function _sameKind(a: unknown, b: unknown): boolean {
  return typeof a === "object" && a !== null && typeof b === "object" &&
    b !== null && Array.isArray(a) === Array.isArray(b);
}

/**
 * Deletes `parent[key]` as the document reads back from JSON: an array
 * element becomes null. Returns false where `delete` would fail.
 */
function _delete(parent: object, key: string): boolean {
  if (Array.isArray(parent) && _isArrayIndex(key)) {
    if (Number(key) < parent.length) parent[Number(key)] = null;
    return true;
  }
  return Reflect.deleteProperty(parent, key);
}

/**
 * Records every change made through a proxy of the document, as journal
 * ops, in order, each with its value's JSON at that moment. An object stored
 * stays itself until the update ends, as whole-file mode keeps it until it
 * writes; `finish` then records again whatever changed in it through
 * another reference and replaces it with its JSON copy, so that the document
 * holds exactly what the journal says.
 */
export class _Recorder {
  ops: string[] = [];
  #raw = new WeakMap<object, object>();
  /** The objects stored in this update, by path (see finish). */
  #objects = new Map<string, _Stored>();
  /** Where each draft was read from, and the document the root draft is of. */
  #paths = new WeakMap<object, string[]>();
  #root: unknown = undefined;
  #ended = false;

  /**
   * Ends the update, even a failed one: a draft kept past it (in a
   * variable, or inside a value `finish` does not walk) can be read but no
   * longer changed, since it would change this process's cached document
   * behind the journal's back.
   */
  end(): void {
    this.#ended = true;
  }

  #checkOpen(): void {
    if (this.#ended) {
      throw new TypeError(
        "Cannot change a JsonStore draft after its update has ended: make the change in another update (what update returns is a copy, free to change)",
      );
    }
  }

  /**
   * What `fn` returned, with every draft in it (the value itself, or inside
   * arrays and plain objects) replaced by a copy: the caller gets a value,
   * as in whole-file mode, not a live view of the cached document.
   */
  #detach<R>(value: R, seen = new Set<object>()): R {
    if (typeof value !== "object" || value === null) return value;
    const raw = this.#raw.get(value);
    if (raw !== undefined) {
      try {
        return structuredClone(raw) as R;
      } catch {
        return raw as R; // the caller's own object, already out of the document
      }
    }
    if (!_isContainer(value) || seen.has(value)) return value;
    seen.add(value);
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const inner = record[key];
      const copy = this.#detach(inner, seen);
      if (copy !== inner) Reflect.set(record, key, copy); // not if frozen
    }
    return value;
  }

  wrap<V>(value: V, path: string[]): V {
    if (typeof value !== "object" || value === null) return value;
    const proxy = new Proxy(value as object, {
      get: (target, key, receiver) => {
        const v = Reflect.get(target, key, receiver);
        if (
          typeof key === "string" && _isContainer(v) &&
          Object.hasOwn(target, key)
        ) {
          return this.wrap(v, [...path, key]);
        }
        // Anything else fn stored (a Date, a class instance) stays itself,
        // as its methods need: finish records what it turns into.
        return v;
      },
      set: (target, key, v) => {
        this.#checkOpen();
        if (typeof key === "symbol") return Reflect.set(target, key, v);
        this.#set(target, path, key, v);
        return true;
      },
      defineProperty: (target, key, descriptor) => {
        this.#checkOpen();
        if (typeof key === "symbol") {
          return Reflect.defineProperty(target, key, descriptor);
        }
        if (descriptor.get || descriptor.set || !("value" in descriptor)) {
          throw new TypeError(
            `Cannot define '${key}' on a JSON document: only plain values are JSON`,
          );
        }
        this.#set(target, path, key, descriptor.value);
        return true;
      },
      deleteProperty: (target, key) => {
        this.#checkOpen();
        if (typeof key === "symbol") return Reflect.deleteProperty(target, key);
        const keys = [...path, key];
        if (Object.hasOwn(target, key) && !this.#inside(keys)) {
          this.#record(keys);
        }
        return _delete(target, key);
      },
    });
    this.#raw.set(proxy, value as object);
    this.#paths.set(proxy, path);
    if (path.length === 0) this.#root = value;
    return proxy as V;
  }

  /** Records the whole document replaced by `value`; returns what to keep. */
  replaceRoot(value: unknown): unknown {
    const text = this.#json(value, "the document");
    if (text === undefined) {
      throw new TypeError(
        `Cannot write ${typeof value} as a JSON document; nothing was written`,
      );
    }
    _checkStoredValue(text, 0, "the document");
    this.ops = [`["s",[],${text}]`];
    this.#objects.clear();
    this.#root = undefined;
    return JSON.parse(text);
  }

  /**
   * Changes `state` into `wanted` (what validate returned) through a proxy,
   * so that what a validator adds, drops or rewrites is recorded as if `fn`
   * had done it. Returns the document to keep.
   */
  conform(state: unknown, wanted: unknown): unknown {
    if (!_sameKind(state, wanted)) return this.replaceRoot(wanted);
    this.#conform(this.wrap(state as object, []), wanted as object);
    return state;
  }

  #conform(draft: object, wanted: object): void {
    const have = draft as Record<string, unknown>;
    const want = wanted as Record<string, unknown>;
    let keys: string[];
    if (Array.isArray(wanted)) {
      const array = draft as unknown[];
      if (array.length !== wanted.length) array.length = wanted.length;
      keys = Array.from(wanted.keys(), String);
    } else {
      for (const key of Object.keys(draft)) {
        if (!Object.hasOwn(wanted, key)) delete have[key];
      }
      keys = Object.keys(wanted);
    }
    for (const key of keys) {
      const owned = Object.hasOwn(draft, key);
      const current = owned ? have[key] : undefined;
      const next = want[key];
      if (_sameKind(current, next)) {
        // A part validate passed on as it was (its own draft) is unchanged.
        if (this.#rawOf(current) !== this.#rawOf(next)) {
          this.#conform(current as object, next as object);
        }
      } else if (!owned || JSON.stringify(current) !== JSON.stringify(next)) {
        have[key] = next;
      }
    }
  }

  #rawOf(value: unknown): unknown {
    return typeof value === "object" && value !== null
      ? this.#raw.get(value) ?? value
      : value;
  }

  #set(target: object, path: string[], key: string, value: unknown) {
    const keys = [...path, key];
    const where = keys.join("/");
    const length = Array.isArray(target) && key === "length";
    if (length && typeof value !== "number") {
      throw new TypeError("Cannot set an array's length to a non-number");
    }
    const text = this.#json(value, where);
    if (text === undefined) {
      this.#setNothing(target, keys);
      return;
    }
    _checkStoredValue(text, keys.length, where);
    const raw = this.#rawOf(value);
    const object = !length && typeof raw === "object" && raw !== null;
    // An object is stored as itself, as whole-file mode keeps it until it
    // writes: finish finds what changes in it later through another
    // reference (the caller's own, or another place it is stored).
    _set(target, key, length ? value : object ? raw : JSON.parse(text), where);
    if (this.#inside(keys)) return;
    this.#record(keys, text);
    if (!object) return;
    this.#objects.set(_pathKey(keys, keys.length), { keys, text });
    // A part of the document stored in a second place: the first place
    // changes with it.
    const from = this.#paths.get(value as object);
    if (
      from === undefined || this.#objects.has(_pathKey(from, from.length)) ||
      this.#inside(from)
    ) return;
    // What is stored inside it may have changed behind the journal: record
    // that first, so that the journal has the first place as it is now.
    this.#catchUpUnder(from);
    const there = _at(this.#root, from);
    const json = there.found
      ? this.#json(there.value, from.join("/"))
      : undefined;
    if (json !== undefined) {
      this.#objects.set(_pathKey(from, from.length), {
        keys: from,
        text: json,
      });
    }
  }

  /**
   * Records again, as they are now, the stored objects under `path` that
   * changed through another reference since they were recorded.
   */
  #catchUpUnder(path: string[]): void {
    this.#recordChanged(
      [...this.#objects.values()].filter(({ keys }) =>
        keys.length > path.length && path.every((key, i) => keys[i] === key)
      ),
      false,
    );
  }

  /**
   * Whether `keys` lies inside an object stored in this update. Changes there
   * are not recorded one by one: that object may also have changed through
   * another reference, so a replay would not find the same places; finish
   * records it whole instead.
   */
  #inside(keys: string[]): boolean {
    if (this.#objects.size === 0) return false;
    for (let i = 1; i < keys.length; i++) {
      if (this.#objects.has(_pathKey(keys, i))) return true;
    }
    return false;
  }

  /** Appends an op: a set of `text`, or a delete. */
  #record(keys: string[], text?: string): void {
    const path = JSON.stringify(keys);
    this.ops.push(
      text === undefined ? `["d",${path}]` : `["s",${path},${text}]`,
    );
  }

  /** Stores a value JSON has no text for: a property goes, an element is null. */
  #setNothing(target: object, keys: string[]) {
    const key = keys[keys.length - 1];
    const record = !this.#inside(keys);
    if (Array.isArray(target)) {
      _set(target, key, null, keys.join("/"));
      if (record) this.#record(keys, "null");
    } else if (Object.hasOwn(target, key)) {
      if (record) this.#record(keys);
      Reflect.deleteProperty(target, key);
    }
  }

  /**
   * Ends the update and gives back what `fn` returned: every object `fn`
   * stored is replaced by its JSON copy, so the cached document holds only
   * what the journal says and nothing the caller keeps a reference to; one
   * the caller changed after storing it (a new entry pushed, then filled in)
   * is recorded again as it is now, as whole-file mode would write it. Drafts
   * in `result` are copied (#detach).
   */
  finish<R>(result: R): R {
    const stored = [...this.#objects.values()];
    this.#objects.clear();
    this.#recordChanged(stored, true);
    return this.#detach(result);
  }

  /**
   * Records each stored place whose JSON now differs from what the journal
   * has there, whole, outermost first (what contains a place covers it).
   * With `copy` (the update's end), also replaces each object with its JSON
   * copy, and makes a replay agree where nothing JSON can hold is left.
   */
  #recordChanged(stored: _Stored[], copy: boolean): void {
    const done = new Set<string>();
    for (const entry of stored.sort((a, b) => a.keys.length - b.keys.length)) {
      const keys = entry.keys;
      if (keys.some((_, i) => i > 0 && done.has(_pathKey(keys, i)))) continue;
      const parent = _at(this.#root, keys.slice(0, -1));
      // Gone with what contained it (a delete or a value set there, both
      // recorded): a replay has nothing there either.
      if (!parent.found || !_isContainer(parent.value)) continue;
      const container = parent.value;
      done.add(_pathKey(keys, keys.length));
      const key = keys[keys.length - 1];
      const where = keys.join("/");
      const here = _at(container, [key]);
      const now = here.found ? this.#json(here.value, where) : undefined;
      if (now === undefined) {
        if (!copy) continue;
        if (here.found) this.#setNothing(container, keys);
        else if (!Array.isArray(container)) this.#record(keys);
        continue;
      }
      if (now !== entry.text) {
        _checkStoredValue(now, keys.length, where);
        this.#record(keys, now);
        entry.text = now;
      }
      if (copy && typeof here.value === "object" && here.value !== null) {
        _set(container, key, JSON.parse(now), where);
      }
    }
  }

  #json(value: unknown, where: string): string | undefined {
    try {
      return JSON.stringify(this.#rawOf(value));
    } catch (error) {
      throw new TypeError(
        `Cannot store the value at '${where}': it is not JSON (${
          (error as Error).message
        })`,
        { cause: error },
      );
    }
  }
}

/**
 * Whether `op` would change `state`: by the value at its path only, so
 * what it costs is the change's size, not the document's.
 */
export function _opChanges(state: unknown, op: _Op): boolean {
  const there = _at(state, op[1]);
  if (op[0] === "d") return there.found;
  return !there.found || JSON.stringify(there.value) !== JSON.stringify(op[2]);
}

/** Applies one op to `state`; returns the new state (a new one for a root op). */
export function _applyOp(state: unknown, op: _Op): unknown {
  const keys = op[1];
  if (keys.length === 0) {
    if (op[0] !== "s") throw new TypeError("deletes the document");
    return op[2];
  }
  // Own properties only: a key such as "__proto__" names data, never the
  // prototype.
  const found = _at(state, keys.slice(0, -1));
  const parent = found.value;
  if (!found.found || typeof parent !== "object" || parent === null) {
    throw new TypeError(`no object at '${keys.join("/")}'`);
  }
  const last = keys[keys.length - 1];
  if (op[0] === "d") {
    if (!_delete(parent, last)) throw new TypeError(`cannot delete '${last}'`);
  } else {
    _set(parent, last, op[2], keys.join("/"));
  }
  return state;
}
