# Seed 001's lock files as its own tools treat them, written for these tests
# from what seed 001 documents (not from its code):
#
# - a lock file is `<file>.lock` beside the file, holding the PID of the lock
#   holder process; FileLock takes fcntl.flock on it, writes its PID, and
#   removes the file on release;
# - the monitor calls a lock stale when it is older than the threshold AND the
#   process that created it (the PID in the file) is no longer running;
# - cleanup_stale_locks removes every stale `*.lock` file and reports
#   {"count", "stale_locks", "errors"}.
#
# Usage:
#   py_seed001.py hold FILE        lock FILE, print "locked PID", release (and
#                                  remove the lock file) when stdin closes
#   py_seed001.py status DIR HOURS print get_lock_info of every *.lock as JSON
#   py_seed001.py clean DIR HOURS  cleanup_stale_locks, print its report as JSON
import fcntl
import json
import os
import sys
import time
from pathlib import Path


def get_lock_holder_pid(lock_file):
    try:
        return int(Path(lock_file).read_text().strip())
    except (OSError, ValueError):
        return None


def is_process_running(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def get_lock_age(lock_file):
    return time.time() - Path(lock_file).stat().st_mtime


def is_lock_stale(lock_file, threshold_hours):
    if get_lock_age(lock_file) <= threshold_hours * 3600:
        return False
    return not is_process_running(get_lock_holder_pid(lock_file))


def get_lock_info(lock_file, threshold_hours):
    pid = get_lock_holder_pid(lock_file)
    return {
        "path": str(lock_file),
        "pid": pid,
        "running": is_process_running(pid),
        "age": get_lock_age(lock_file),
        "stale": is_lock_stale(lock_file, threshold_hours),
    }


def cleanup_stale_locks(base_dir, max_age_hours):
    report = {"count": 0, "stale_locks": [], "errors": []}
    for lock_file in sorted(Path(base_dir).rglob("*.lock")):
        try:
            if not lock_file.is_file():
                continue
            info = get_lock_info(lock_file, max_age_hours)
            if info["stale"]:
                lock_file.unlink()
                report["count"] += 1
                report["stale_locks"].append(info)
        except OSError as error:
            report["errors"].append(f"{lock_file}: {error}")
    return report


def hold(path):
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    print(f"locked {os.getpid()}", flush=True)
    sys.stdin.read()
    os.unlink(lock_path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    print("released", flush=True)


action = sys.argv[1]
if action == "hold":
    hold(sys.argv[2])
elif action == "status":
    hours = float(sys.argv[3])
    infos = [
        get_lock_info(f, hours) for f in sorted(Path(sys.argv[2]).rglob("*.lock"))
    ]
    print(json.dumps(infos))
elif action == "clean":
    print(json.dumps(cleanup_stale_locks(sys.argv[2], float(sys.argv[3]))))
else:
    sys.exit(f"unknown action {action}")
