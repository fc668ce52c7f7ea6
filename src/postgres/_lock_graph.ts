// Who holds and who waits for lockbox's locks on one schema, as the server
// sees them (pg_locks, joined with the holders and waits tables): a lock's
// holders, listLocks(), and the deadlock check of a wait over the
// waits-for graph between lockbox processes (ARCHITECTURE.md, "Deadlocks").

import { DeadlockError, type DeadlockStep } from "../base/errors.ts";
import { _stronglyConnected } from "../lock/wait_graph.ts";
import { _hostname, _pid } from "../runtime/mod.ts";
import { type _CallLimit, _checkName } from "./_session.ts";
import type { PgLockHolder } from "./pg_lock.ts";
import type { _Pool } from "./_pool.ts";
import type { _Schema } from "./schema.ts";

/** PostgreSQL locks this process holds, on every backend. */
export const _inProcess = { held: 0 };

/** A session waiting for a lock, in {@linkcode PgLockInfo}. */
export interface PgLockWaiter {
  /** The waiting session's server process. */
  backendPid: number;
  /**
   * The lockbox process waiting, and its host, once its wait has lasted
   * `deadlockTimeout` (it records itself then); `null` before, or for a
   * session that is not lockbox's.
   */
  pid: number | null;
  hostname: string | null;
  /** The mode it waits for. */
  mode: "exclusive" | "shared";
}

/** One lock name in {@linkcode PostgresBackend.listLocks}. */
export interface PgLockInfo {
  /** The lock's name. */
  name: string;
  /** `"exclusive"`, `"shared"`, or `null` when free. */
  mode: "exclusive" | "shared" | null;
  /** The last fencing token handed out (0: never held exclusively). */
  token: number;
  /** The holders, as `lockHolder` describes one. */
  holders: PgLockHolder[];
  /** The sessions waiting for it (`pg_locks`, `granted = false`). */
  waiters: PgLockWaiter[];
}

/** Rows of the holders query. */
interface _HolderRow {
  lock_id: number;
  backend_pid: number;
  mode: string;
  client_addr: string | null;
  application_name: string;
  pid: number | null;
  hostname: string | null;
  acquired_at: Date | null;
  token: string | null;
  shared: boolean | null;
  metadata: Record<string, unknown> | null;
}

/** Rows of the waiters query. */
interface _WaiterRow {
  lock_id: number;
  backend_pid: number;
  mode: string;
  pid: number | null;
  hostname: string | null;
}

/** One waits-for edge: `waiter` waits for lock `name`, which `holder` holds. */
interface _Edge {
  waiter: string;
  holder: string;
  name: string;
}

/** The holders of the locks whose row ids are in $2, the server's view. */
const _holdersSql = (schema: _Schema) => `
SELECT l.objid::int AS lock_id, l.pid AS backend_pid, l.mode,
       host(a.client_addr) AS client_addr, a.application_name, h.pid,
       h.hostname, h.acquired_at, h.token, h.shared, h.metadata
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN ${schema.sql}.holders h
  ON h.backend_pid = l.pid AND h.lock_id::oid = l.objid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid AND l.objid = ANY($2::oid[])
ORDER BY h.acquired_at NULLS LAST`;

/** The sessions waiting for lockbox's locks, with who records each wait. */
const _waitersSql = (schema: _Schema) => `
SELECT l.objid::int AS lock_id, l.pid AS backend_pid, l.mode, w.pid, w.hostname
FROM pg_locks l
LEFT JOIN ${schema.sql}.waits w ON w.backend_pid = l.pid AND w.lock_id::oid = l.objid
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid
ORDER BY l.objid, l.pid`;

/**
 * The waits-for edges between lockbox processes (host and pid): a session
 * whose wait is recorded in the schema's waits table, waiting for a lock held by a
 * session with a holder record. See ARCHITECTURE.md, "Deadlocks".
 */
const _waitEdgesSql = (schema: _Schema) => `
SELECT k.name, w.pid AS waiter_pid, w.hostname AS waiter_host,
       h.pid AS holder_pid, h.hostname AS holder_host
FROM pg_locks l
JOIN ${schema.sql}.waits w ON w.backend_pid = l.pid AND w.lock_id::oid = l.objid
JOIN pg_locks g ON g.locktype = 'advisory' AND g.granted AND g.objsubid = 2
  AND g.database = l.database AND g.classid = l.classid AND g.objid = l.objid
JOIN ${schema.sql}.holders h ON h.backend_pid = g.pid AND h.lock_id::oid = g.objid
JOIN ${schema.sql}.locks k ON k.id = l.objid::int
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid`;

function _holder(row: _HolderRow): PgLockHolder {
  return {
    pid: row.pid ?? 0,
    hostname: row.hostname ?? "unknown",
    acquiredAt: row.acquired_at?.toISOString() ?? "",
    token: Number(row.token ?? 0),
    shared: row.shared ?? row.mode === "ShareLock",
    ...(row.metadata ? { metadata: row.metadata } : {}),
    backendPid: row.backend_pid,
    clientAddress: row.client_addr,
    applicationName: row.application_name,
  };
}

/** `pid@host` as the pair the victim is chosen by. */
function _order(key: string): readonly [number, string] {
  const at = key.indexOf("@");
  return [Number(key.slice(0, at)), key.slice(at + 1)] as const;
}

/**
 * The deadlock through `self`'s wait for `name` in `edges`, if `self` is
 * its victim (the highest pid, then host name): a key that names the
 * cycle's edges (the same key twice is the same deadlock), and the way
 * round from this process's wait back to it.
 */
function _cycleThrough(
  edges: _Edge[],
  self: string,
  name: string,
): { key: string; cycle: DeadlockStep[] } | null {
  const set = _stronglyConnected(edges).find((keys) => keys.includes(self));
  if (set === undefined) return null;
  const victim = set.reduce((a, b) => {
    const [pa, ha] = _order(a);
    const [pb, hb] = _order(b);
    return pb > pa || (pb === pa && hb > ha) ? b : a;
  });
  if (victim !== self) return null;
  const inSet = edges.filter((edge) =>
    set.includes(edge.waiter) && set.includes(edge.holder)
  );
  const key = inSet.map((e) => `${e.waiter}>${e.name}>${e.holder}`).sort()
    .join(" ");
  const first = inSet.find((e) => e.waiter === self && e.name === name);
  if (first === undefined) return null;
  const from = new Map([[first.holder, first]]);
  for (const queue = [first.holder]; queue.length > 0;) {
    const at = queue.shift()!;
    for (const e of inSet) {
      if (e.waiter === at && !from.has(e.holder)) {
        from.set(e.holder, e);
        queue.push(e.holder);
      }
    }
  }
  const route: _Edge[] = [];
  for (let at = self; route.length <= set.length;) {
    const e = from.get(at);
    if (e === undefined) return null;
    route.unshift(e);
    at = e.waiter;
    if (at === self) break;
  }
  const cycle: DeadlockStep[] = route.map((e) => {
    const [pid, hostname] = _order(e.waiter);
    return { pid, hostname, lock: `${e.name} (PostgreSQL)` };
  });
  return { key, cycle };
}

/** The server's view of one backend's locks. */
export class _LockGraph {
  #pool: _Pool;
  #ids: Map<string, number>;

  /** `ids`: the lock row ids by name, shared with the locking code. */
  constructor(pool: _Pool, ids: Map<string, number>) {
    this.#pool = pool;
    this.#ids = ids;
  }

  /** The holders of the lock `name`, earliest first. */
  async holders(name: string, limit?: _CallLimit): Promise<PgLockHolder[]> {
    _checkName(name, "lock", "nightly-import");
    try {
      // Looked up, not made: a name without a row has no holder, and a
      // role that may only read can ask.
      let id = this.#ids.get(name);
      if (id === undefined) {
        const [row] = await this.#pool.withSession(
          (session) =>
            session.query<{ id: number }>(
              `SELECT id FROM ${this.#pool.schema.sql}.locks WHERE name = $1`,
              [name],
              limit,
            ),
          limit,
        );
        if (row === undefined) return [];
        this.#ids.set(name, id = row.id);
      }
      return (await this.#holderRows([id], limit)).map(_holder);
    } catch (error) {
      throw this.#pool.refusal(`read the holders of lock '${name}'`, error);
    }
  }

  /** Every lock name of the schema, with its state, by name. */
  async listLocks(): Promise<PgLockInfo[]> {
    const schema = this.#pool.schema;
    const rows = await this.#pool.withSession((session) =>
      session.query<{ name: string; id: number; fence: string }>(
        `SELECT name, id, fence FROM ${schema.sql}.locks ORDER BY name`,
      )
    );
    // Every name's holders in one query, not one per name.
    const byLock = new Map<number, PgLockHolder[]>();
    for (const row of await this.#holderRows(rows.map((row) => row.id))) {
      if (!byLock.has(row.lock_id)) byLock.set(row.lock_id, []);
      byLock.get(row.lock_id)!.push(_holder(row));
    }
    const waiting = new Map<number, PgLockWaiter[]>();
    const waiterRows = await this.#pool.withSession((session) =>
      session.query<_WaiterRow>(_waitersSql(schema), [schema.lockKey])
    );
    for (const row of waiterRows) {
      if (!waiting.has(row.lock_id)) waiting.set(row.lock_id, []);
      waiting.get(row.lock_id)!.push({
        backendPid: row.backend_pid,
        pid: row.pid,
        hostname: row.hostname,
        mode: row.mode === "ShareLock" ? "shared" : "exclusive",
      });
    }
    return rows.map((row) => {
      this.#ids.set(row.name, row.id);
      const holders = byLock.get(row.id) ?? [];
      return {
        name: row.name,
        mode: holders.length === 0
          ? null
          : holders[0].shared
          ? "shared"
          : "exclusive",
        token: Number(row.fence),
        holders,
        waiters: waiting.get(row.id) ?? [],
      };
    });
  }

  /**
   * The deadlock check of a wait on the server (session `backendPid`, lock
   * `id`): after `every` ms it records the wait in the schema's waits table (so other
   * processes see who waits), then reads the waits-for graph between
   * lockbox processes, and again every `every` ms. A cycle through this
   * process whose victim (the highest pid, then host name) is this
   * process, seen twice 100 ms apart, aborts `deadlock` with a
   * DeadlockError. Returns the function that stops it and removes the
   * record.
   */
  lookForDeadlock(
    backendPid: number,
    name: string,
    id: number,
    every: number,
    deadlock: AbortController,
  ): () => Promise<void> {
    let stopped = false;
    let recorded: Promise<unknown> | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: () => void = () => {};
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      });
    const loop = async () => {
      // Looks at every, 2 every, 4 every, ... up to 8 every: each look is a
      // query on a session of its own, and many processes may wait at once.
      let wait = every;
      const next = () => {
        const ms = wait;
        wait = Math.min(wait * 2, every * 8);
        return sleep(ms);
      };
      await next();
      // A process that holds no lock here cannot be in a cycle (no one
      // waits for it): it neither records its wait nor looks.
      while (!stopped && _inProcess.held === 0) await next();
      if (stopped) return;
      await (recorded = this.#recordWait(backendPid, id));
      while (!stopped) {
        const first = _inProcess.held === 0 ? null : await this.#look(name);
        if (first !== null) {
          await sleep(100);
          if (stopped) return;
          if ((await this.#look(name))?.key === first.key) {
            deadlock.abort(
              new DeadlockError(`${name} (PostgreSQL)`, first.cycle),
            );
            return;
          }
        }
        await next();
      }
    };
    const running = loop().catch(() => {
      // Cannot look (the server is gone): the wait itself will say so.
    });
    // Stopping never delays the caller (the lock may just have been
    // granted): the record goes in the background, and close() waits for it.
    return () => {
      stopped = true;
      clearTimeout(timer);
      wake();
      if (recorded !== null) {
        this.#pool.track(running.then(() => this.#removeWait(backendPid)));
      }
      return Promise.resolve();
    };
  }

  /** The deadlock through this process's wait for `name` it is the victim of. */
  async #look(
    name: string,
  ): Promise<{ key: string; cycle: DeadlockStep[] } | null> {
    const schema = this.#pool.schema;
    const rows = await this.#pool.withSession((session) =>
      session.query<{
        name: string;
        waiter_pid: number;
        waiter_host: string;
        holder_pid: number;
        holder_host: string;
      }>(_waitEdgesSql(schema), [schema.lockKey])
    );
    const edges = rows.map((row) => ({
      waiter: `${row.waiter_pid}@${row.waiter_host}`,
      holder: `${row.holder_pid}@${row.holder_host}`,
      name: row.name,
    })).filter((edge) => edge.waiter !== edge.holder);
    return _cycleThrough(edges, `${_pid()}@${_hostname()}`, name);
  }

  /** Records this process's wait, so that others see who waits. */
  #recordWait(backendPid: number, id: number): Promise<unknown> {
    return this.#pool.withSession((session) =>
      session.query(
        `INSERT INTO ${this.#pool.schema.sql}.waits (backend_pid, lock_id, pid, hostname)
         VALUES ($1, $2, $3, $4) ON CONFLICT (backend_pid) DO UPDATE SET
         lock_id = EXCLUDED.lock_id, pid = EXCLUDED.pid,
         hostname = EXCLUDED.hostname, since = now()`,
        [backendPid, id, _pid(), _hostname()],
      )
    );
  }

  #removeWait(backendPid: number): Promise<unknown> {
    return this.#pool.withSession((session) =>
      session.query(
        `DELETE FROM ${this.#pool.schema.sql}.waits WHERE backend_pid = $1`,
        [backendPid],
      )
    );
  }

  #holderRows(ids: number[], limit?: _CallLimit): Promise<_HolderRow[]> {
    return this.#pool.withSession(
      (session) =>
        session.query<_HolderRow>(_holdersSql(this.#pool.schema), [
          this.#pool.schema.lockKey,
          ids,
        ], limit),
      limit,
    );
  }
}
