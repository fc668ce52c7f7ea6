// The holder record kept in a lock file: who took the lock, when, with which
// fencing token. It is metadata: the kernel alone says whether a lock is held.

/** What a lock file says about the process that holds (or last held) it. */
export interface LockHolder {
  /** The holder's process id. */
  pid: number;
  /** The holder's host name (`"unknown"` without `--allow-sys=hostname`). */
  hostname: string;
  /** When the lock was taken, as an ISO 8601 string. */
  acquiredAt: string;
  /** The fencing token of the exclusive acquisition this record belongs to. */
  token: number;
  /** Whether the lock was taken shared. */
  shared: boolean;
  /** Caller metadata, such as `{ user, message }`. */
  metadata?: Record<string, unknown>;
}
