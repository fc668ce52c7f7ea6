# Holds fcntl.flock on a lock file until stdin closes, as seed 000's
# JsonFileLock does; or, with "try", reports whether it could take it now.
# Usage: py_flock.py LOCKFILE hold|try [shared]
import fcntl
import sys

path, action = sys.argv[1], sys.argv[2]
mode = fcntl.LOCK_SH if "shared" in sys.argv[3:] else fcntl.LOCK_EX
with open(path, "a+", encoding="utf-8") as handle:
    if action == "try":
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            print("busy", flush=True)
            sys.exit(0)
        print("acquired", flush=True)
        sys.exit(0)
    fcntl.flock(handle.fileno(), mode)
    print("locked", flush=True)
    sys.stdin.read()
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    print("released", flush=True)
