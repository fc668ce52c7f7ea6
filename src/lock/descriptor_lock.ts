// flock(1)'s descriptor mode: locking an open file description that the
// calling shell passed in (`( flock -n 9 || exit 1; ... ) 9>job.lock`), so
// that the lock stays with the shell after this process exits.

import { _after } from "../base/promise.ts";
import { _flockDescriptor, _onWindows, _spawn } from "../runtime/mod.ts";
import { LockError } from "../base/errors.ts";

/** How {@linkcode _lockDescriptor} waits. */
export interface _DescriptorLockOptions {
  /** Milliseconds; `0` tries once, `Infinity` waits in this thread. */
  timeout: number;
  /**
   * This program in descriptor mode, blocking, for a finite wait:
   * `[...self, "run", "-x", fd]`.
   */
  helper: (how: "sh" | "ex", fd: number) => string[];
}

/**
 * Locks (`"sh"`, `"ex"`) or unlocks (`"un"`) the inherited descriptor `fd`.
 * Returns `false` if the lock is held elsewhere past `timeout`.
 *
 * A finite wait cannot be given up on from this thread (a flock(2) blocked
 * in it cannot be woken), so a helper process waits on the same open file
 * description; when the time runs out it is killed, and only after it is
 * gone does one last try say whether the description holds the lock. The
 * answer is then always the truth, even if the helper was granted the lock
 * the instant before it died.
 *
 * @throws {Error} With `code` `"EBADF"` if `fd` is not open.
 * @throws {LockError} On Windows, which has no flock on a descriptor.
 */
export async function _lockDescriptor(
  fd: number,
  how: "sh" | "ex" | "un",
  options: _DescriptorLockOptions,
): Promise<boolean> {
  if (_onWindows) {
    throw new LockError(
      `Cannot lock descriptor ${fd}: descriptor mode is not on Windows, which has no flock(2) on a descriptor a shell passes in; run the command under the lock instead: lockbox run FILE COMMAND`,
    );
  }
  if (how === "un") return _flockDescriptor(fd, "un", true);
  if (_flockDescriptor(fd, how, false)) return true;
  if (options.timeout === 0) return false;
  if (options.timeout === Infinity) return _flockDescriptor(fd, how, true);
  const [command, ...args] = options.helper(how, fd);
  const helper = await _spawn(command, args, { passDescriptor: fd });
  let expired = false;
  const cancel = _after(options.timeout, () => {
    expired = true;
    helper.kill("SIGKILL");
  });
  const { code } = await helper.status;
  cancel();
  if (expired) return _flockDescriptor(fd, how, false);
  if (code !== 0) {
    throw new Error(`the helper waiting for descriptor ${fd} exited ${code}`);
  }
  return true;
}
