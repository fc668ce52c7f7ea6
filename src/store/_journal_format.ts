// The journal's format, encoded and parsed: pure code, no files.
//
// Files:
//   <path>               the snapshot: the plain JSON document
//   <path>.journal       line 1, a header: {"lockbox-journal":1,"id","base"},
//                        where base is the SHA-256 of the snapshot's bytes it
//                        applies to; then one line per update:
//                        "<fnv1a-32 hex> {"n":<seq>,"o":[<op>...]}\n"
//                        with ops ["s",[keys],<value>] and ["d",[keys]]; a
//                        compaction's seal adds "seal":"<next journal's id>"
//   <path>.journal.next  a compaction's new journal, before it is renamed
//
// Compaction (`_journal_compaction.ts`, under the exclusive lock) writes
// journal.next for the new snapshot, replaces the snapshot, then renames
// journal.next over the journal. A reader takes the snapshot and the
// journal only when the journal's base is the snapshot's hash, so it never
// combines a snapshot with lines that do not belong to it; a crash between
// the two renames leaves journal.next, which the next writer finishes
// renaming.

import { _fnv1a, _hex8, _hexAt } from "../base/checksum.ts";
import { _applyOp, type _Op, _opChanges } from "./journal_draft.ts";

const _encoder = new TextEncoder();
const _decoder = new TextDecoder("utf-8", { fatal: true });

/** The most bytes a header may take. */
export const _HEADER_MAX = 4096;

/** A journal's first line: its id, its snapshot's hash, its length in bytes. */
export interface _Header {
  id: string;
  base: string;
  length: number;
}

/** The hex SHA-256 of `bytes`: what a header's `base` names. */
export async function _sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The header line of a new journal `id` over the snapshot hashed `base`. */
export function _headerLine(id: string, base: string): Uint8Array {
  return _encoder.encode(
    `${JSON.stringify({ "lockbox-journal": 1, id, base })}\n`,
  );
}

/** The header at the start of `bytes`, or `null` if there is none. */
export function _parseHeader(bytes: Uint8Array): _Header | null {
  const end = bytes.indexOf(0x0a);
  if (end === -1) return null;
  try {
    const header = JSON.parse(_decoder.decode(bytes.subarray(0, end)));
    if (
      header?.["lockbox-journal"] !== 1 || typeof header.id !== "string" ||
      typeof header.base !== "string"
    ) return null;
    return { id: header.id, base: header.base, length: end + 1 };
  } catch {
    return null;
  }
}

/** The line of update `seq`, whose ops are given as JSON texts. */
export function _updateLine(seq: number, ops: string[]): Uint8Array {
  return _encodeLine(seq, `"o":[${ops.join(",")}]`);
}

/** The line that says a compaction into journal `nextId` began. */
export function _sealLine(seq: number, nextId: string): Uint8Array {
  return _encodeLine(seq, `"o":[],"seal":${JSON.stringify(nextId)}`);
}

/** One journal line: checksum, space, `{"n":seq,...body}`, newline. */
function _encodeLine(seq: number, body: string): Uint8Array {
  const json = _encoder.encode(`{"n":${seq},${body}}`);
  const line = new Uint8Array(json.length + 10);
  line.set(_encoder.encode(_hex8(_fnv1a(json, json.length)) + " "));
  line.set(json, 9);
  line[line.length - 1] = 0x0a;
  return line;
}

/** Why a journal's lines cannot all be applied. */
export type _Damage = { line: number; reason: string };

/** The result of {@linkcode _applyLines}. */
export interface _Applied {
  state: unknown;
  seq: number;
  /** Bytes of whole lines applied. */
  used: number;
  /** The last line has no newline: a write that never finished. */
  torn: boolean;
  damage: _Damage | null;
  /** A line said a compaction began: the journal may be retired. */
  sealed: boolean;
  /** Some op changed the document (only looked for when asked). */
  changed: boolean;
}

function _damaged(result: _Applied, at: number, reason: string): _Applied {
  result.used = at;
  result.damage = { line: result.seq + 1, reason };
  return result;
}

/**
 * Applies the complete lines of `bytes` (journal content that follows the
 * line numbered `seq`) to `state`; with `detect`, also says whether an op
 * changed the document (`changed`). A last line without its newline is
 * torn: not applied, and reported by `torn`.
 *
 * This runs under the lock for every other writer's update, so the lines are
 * decoded to text in one call (lines split alike in bytes and text: a newline
 * byte is never part of a UTF-8 sequence), and each line costs one checksum
 * loop and one `JSON.parse`.
 */
export function _applyLines(
  bytes: Uint8Array,
  state: unknown,
  seq: number,
  detect = false,
): _Applied {
  const result: _Applied = {
    state,
    seq,
    used: 0,
    torn: false,
    damage: null,
    sealed: false,
    changed: false,
  };
  const complete = bytes.lastIndexOf(0x0a) + 1;
  let text: string | null = null;
  try {
    text = _decoder.decode(bytes.subarray(0, complete));
  } catch {
    // Some line is not UTF-8: find which, line by line.
  }
  let at = 0;
  let textAt = 0;
  while (at < complete) {
    const end = bytes.indexOf(0x0a, at);
    const textEnd = text === null ? -1 : text.indexOf("\n", textAt);
    if (end - at < 10 || bytes[at + 8] !== 0x20) {
      return _damaged(result, at, "it is not a journal line");
    }
    const expected = _hexAt(bytes, at);
    if (expected === -1 || _fnv1a(bytes, end, at + 9) !== expected) {
      return _damaged(result, at, "its checksum does not match");
    }
    let record: { n?: unknown; o?: unknown; seal?: unknown };
    try {
      record = JSON.parse(
        text === null
          ? _decoder.decode(bytes.subarray(at + 9, end))
          : text.slice(textAt + 9, textEnd),
      );
    } catch {
      return _damaged(result, at, "it is not JSON");
    }
    if (record.n !== result.seq + 1 || !Array.isArray(record.o)) {
      return _damaged(
        result,
        at,
        `expected update ${result.seq + 1}, found ${record.n}`,
      );
    }
    try {
      for (const op of record.o as _Op[]) {
        if (detect && !result.changed) {
          result.changed = _opChanges(result.state, op);
        }
        result.state = _applyOp(result.state, op);
      }
    } catch (error) {
      return _damaged(
        result,
        at,
        `it does not apply (${(error as Error).message})`,
      );
    }
    if (record.seal !== undefined) result.sealed = true;
    result.seq++;
    at = end + 1;
    textAt = textEnd + 1;
  }
  result.used = at;
  result.torn = complete < bytes.length;
  return result;
}
