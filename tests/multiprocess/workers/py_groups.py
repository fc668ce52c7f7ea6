# Adds transactions to a capture group the way seed 000's Python does: flock
# on <db>.lock, load the JSON DB, append, json.dump(indent=2) to a temp file,
# replace. Usage: py_groups.py DB GROUP PREFIX COUNT
import fcntl
import json
import os
import sys
from pathlib import Path

db_path = Path(sys.argv[1])
group, prefix, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
lock_path = db_path.with_suffix(f"{db_path.suffix}.lock")
for i in range(count):
    with lock_path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with db_path.open("r", encoding="utf-8") as f:
            db = json.load(f)
        txns = db[group].setdefault("transactions", [])
        txn = f"{prefix}-{i}"
        if txn not in txns:
            txns.append(txn)
        temp = db_path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as f:
            json.dump(db, f, indent=2)
        temp.replace(db_path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
print("done", flush=True)
