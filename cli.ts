#!/usr/bin/env -S deno run --unstable-lazy-dynamic-imports --allow-all
/**
 * The `lockbox` command: a `flock(1)`-compatible `run`, lock status and
 * cleanup, and safe tools for lockbox's stores. It parses arguments, calls
 * the library and formats what it returns.
 *
 * ```sh
 * lockbox run -n /var/lock/backup.lock ./backup.sh
 * lockbox status -r /srv/data
 * lockbox store set state.json /paused true
 * ```
 *
 * Exit codes: 0 success; 1 conflict (a lock held elsewhere) or not found; 2
 * usage error; 3 I/O or data error (a file that cannot be read or written, a
 * corrupt store). `run` exits with its command's status (128 + N when signal
 * N killed it, 69 when it could not be started, as `flock(1)`).
 *
 * Permissions: all of them (the `#!` line's `--allow-all`). `run` passes the
 * locked file on to its command, finding its descriptor in /proc/self/fd,
 * which Deno 2.9 lets only `--allow-all` read, and FFI (`--allow-ffi`)
 * amounts to all access anyway.
 *
 * @module
 */

import { _args, _exit, _isMain } from "./src/runtime/mod.ts";
import { _main } from "./src/cli/main.ts";

if (_isMain(import.meta)) {
  _exit(await _main(_args()));
}
