// The PostgreSQL schema that holds one application's lockbox objects, and
// what keeps two schemas of one database apart: their tables, their
// advisory-lock keys (which are per database, not per schema) and their
// NOTIFY channel (also per database). The default schema, `lockbox`, keeps
// the keys and channel lockbox has always used, so processes of older
// versions and newer ones on the default still exclude each other.

/** The schema lockbox uses unless told otherwise. */
export const _DEFAULT_SCHEMA = "lockbox";

/** The first key of every lock of the default schema ("lock" in ASCII). */
const _DEFAULT_LOCK_KEY = 0x6c6f636b;
/** The first key of every guard of the default schema ("run!"). */
const _DEFAULT_GUARD_KEY = 0x72756e21;
/** The NOTIFY channel of the default schema's documents. */
const _DEFAULT_CHANNEL = "lockbox_documents";

/**
 * Words PostgreSQL reserves (pg_get_keywords() catcode R and T): a schema
 * of that name would have to be quoted in every statement a person types.
 */
const _RESERVED = new Set(
  `all analyse analyze and any array as asc asymmetric authorization binary
  both case cast check collate collation column concurrently constraint create
  cross current_catalog current_date current_role current_schema current_time
  current_timestamp current_user default deferrable desc distinct do else end
  except false fetch for foreign freeze from full grant group having ilike in
  initially inner intersect into is isnull join lateral leading left like limit
  localtime localtimestamp natural not notnull null offset on only or order
  outer overlaps placing primary references returning right select
  session_user similar some symmetric table tablesample then to trailing true
  union unique user using variadic verbose when where window with`.split(/\s+/),
);

/** A checked schema and the names and keys derived from it. */
export interface _Schema {
  /** The schema's name, as given. */
  readonly name: string;
  /** The name as a SQL identifier, quoted. */
  readonly sql: string;
  /** The first key of its locks' advisory keys (the second is a row id). */
  readonly lockKey: number;
  /**
   * The first key of its locks' guards (the second is the lock's row id):
   * a guard is held, on a session of its own, by a process that runs a
   * command under the lock (`runWithLock`), and checked by every acquirer
   * after the lock itself, so that a command whose lock was lost is stopped
   * before anyone else gets that lock.
   */
  readonly guardKey: number;
  /** The NOTIFY channel of its documents' new versions. */
  readonly channel: string;
}

/**
 * The schema `name` (default `lockbox`) with its keys and channel.
 *
 * @throws {TypeError} If `name` is not a name PostgreSQL takes unquoted
 *   for a schema of lockbox's: lowercase ASCII letters, digits, `_` and
 *   `$`, starting with a letter or `_`, at most 63 bytes, not a reserved
 *   word, not `pg_...` nor `information_schema`.
 */
export function _schema(name: unknown = _DEFAULT_SCHEMA): _Schema {
  const checked = _checkSchema(name);
  if (checked === _DEFAULT_SCHEMA) {
    return {
      name: checked,
      sql: _identifier(checked),
      lockKey: _DEFAULT_LOCK_KEY,
      guardKey: _DEFAULT_GUARD_KEY,
      channel: _DEFAULT_CHANNEL,
    };
  }
  // Advisory keys are per database: another schema's must differ from the
  // default's and from each other's. A 31-bit hash of the name; two schemas
  // whose hashes meet (about 1 in 2^31 for a pair) wait for each other
  // needlessly, never let two holders in.
  const taken = new Set([_DEFAULT_LOCK_KEY, _DEFAULT_GUARD_KEY]);
  const lockKey = _freeKey(_hash(`lockbox lock ${checked}`), taken);
  taken.add(lockKey);
  const guardKey = _freeKey(_hash(`lockbox guard ${checked}`), taken);
  return {
    name: checked,
    sql: _identifier(checked),
    lockKey,
    guardKey,
    channel: `${_DEFAULT_CHANNEL}_${lockKey.toString(16).padStart(8, "0")}`,
  };
}

/** `name` if it is a schema name lockbox takes, else a TypeError why not. */
export function _checkSchema(name: unknown): string {
  const refuse = (why: string): never => {
    throw new TypeError(
      `Cannot use schema ${
        typeof name === "string"
          ? `'${name.length > 70 ? `${name.slice(0, 70)}...` : name}'`
          : String(name)
      }: ${why}`,
    );
  };
  if (typeof name !== "string") {
    return refuse("expected a string, such as 'lockbox' or 'billing_locks'");
  }
  if (name === "") return refuse("the name is empty; omit it for 'lockbox'");
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > 63) {
    return refuse(
      `it is ${bytes} bytes long, and PostgreSQL cuts names at 63 bytes`,
    );
  }
  if (!/^[a-z_][a-z0-9_$]*$/.test(name)) {
    const folded = /^[A-Za-z_][A-Za-z0-9_$]*$/.test(name)
      ? ` (PostgreSQL would read it unquoted as '${name.toLowerCase()}')`
      : "";
    return refuse(
      `expected lowercase ASCII letters, digits, _ and $, starting with a letter or _, as PostgreSQL takes a name unquoted${folded}`,
    );
  }
  if (_RESERVED.has(name)) {
    return refuse(
      "it is a reserved word in PostgreSQL; choose another, such as 'lockbox_" +
        name + "'",
    );
  }
  if (name.startsWith("pg_") || name === "information_schema") {
    return refuse("PostgreSQL keeps that name for its own schemas");
  }
  return name;
}

/** `name` as a quoted SQL identifier. */
function _identifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** FNV-1a over the UTF-8 of `text`, in 31 bits (a positive int4). */
function _hash(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash & 0x7fffffff;
}

/** `key`, or the next one not in `taken`. */
function _freeKey(key: number, taken: Set<number>): number {
  while (taken.has(key)) key = (key + 1) & 0x7fffffff;
  return key;
}
