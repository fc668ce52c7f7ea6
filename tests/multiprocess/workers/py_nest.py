# Python twin of nest.ts with fcntl.flock, as seed 000's JsonFileLock locks:
# takes FIRST, prints "holding", waits for a "go" line, takes SECOND, then
# prints "done" and lets go of both.
# Usage: py_nest.py FIRST SECOND
import fcntl
import sys

first, second = sys.argv[1], sys.argv[2]
with open(first, "a+", encoding="utf-8") as outer:
    fcntl.flock(outer.fileno(), fcntl.LOCK_EX)
    print("holding", flush=True)
    sys.stdin.readline()
    with open(second, "a+", encoding="utf-8") as inner:
        fcntl.flock(inner.fileno(), fcntl.LOCK_EX)
        print("done", flush=True)
