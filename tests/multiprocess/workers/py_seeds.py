# What each seed system's Python code does to its files, written down from
# the seeds' documented code (json.load, change, json.dump with the seed's
# own settings), for the interop test: Python and lockbox take turns on
# one file, and every file lockbox writes must be byte for byte what the
# seed's Python would have written for the same data.
#
# Usage:
#   py_seeds.py write SEED FILE ROUND   one round of the seed's own writes
#   py_seeds.py redump SEED FILE        what the seed would write for the
#                                       data in FILE (to stdout)
#   py_seeds.py check SEED FILE ROUND   exit 1 unless the values Python put
#                                       in every round so far are still there
import json
import sys
from datetime import datetime, timezone

ODD = {
    "big": 1761301800123456789,
    "huge": 10**30,
    "rate": 1.0,
    "neg_zero": -0.0,
    "small": 1.5e-07,
    "stamp": 1700000000.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "text": "caf\u00e9 \U0001F600",
    "order": {"b": 1, "10": 2, "2": 3},
}


def dump_kwargs(seed):
    # Seeds 000, 002 and 003: json.dump(data, f, indent=2).
    # Seed 004's documents: json.dumps(data, indent=2, ensure_ascii=False).
    return {"indent": 2, "ensure_ascii": seed != "004"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(seed, path, data):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, **dump_kwargs(seed)))


def odd(round_):
    return {**ODD, "round": round_}


def write(seed, path, round_):
    try:
        data = load(path)
    except FileNotFoundError:
        data = {}
    key = f"python-{round_}"
    if seed == "000":  # a capture group, as CaptureGroupDB.create does
        data[f"{round_:016x}"] = {"created": 1700000000 + round_,
                                  "transactions": [f"py-{round_}"],
                                  "extra": odd(round_)}
    elif seed == "002":  # a checkout, as check_out does
        data[f"{key}.mcam"] = {
            "user": "py",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "message": None if round_ == 1 else f"round {round_}",
            "extra": odd(round_),
        }
    elif seed == "003":  # run state with the archiver's own extra keys
        data["last_contiguous_run"] = data.get("last_contiguous_run", 100)
        data["last_attempted_run"] = data.get("last_attempted_run", 100)
        data[f"started_ns_{round_}"] = 1761301800123456789 + round_
        data[f"extra_{round_}"] = odd(round_)
    elif seed == "004":  # a document's body
        data.setdefault("sections", []).append({"title": f"r{round_}",
                                                "odd": odd(round_)})
    save(seed, path, data)


def check(seed, path, round_):
    data = load(path)
    found = []
    def walk(value):
        if isinstance(value, dict):
            if "round" in value and "big" in value:
                found.append(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
    walk(data)
    rounds = sorted(v["round"] for v in found)
    if rounds != list(range(1, round_ + 1)):
        sys.exit(f"rounds {rounds}, expected 1..{round_}")
    for v in found:
        for name, expected in ODD.items():
            got = v[name]
            if name == "nan":
                ok = got != got
            else:
                ok = got == expected and type(got) is type(expected)
            if name == "neg_zero":
                ok = ok and str(got) == "-0.0"
            if name == "order":
                ok = ok and list(got) == list(expected)
            if not ok:
                sys.exit(f"{name}: {got!r} is not {expected!r}")


command, seed, path = sys.argv[1:4]
if command == "write":
    write(seed, path, int(sys.argv[4]))
elif command == "redump":
    sys.stdout.write(json.dumps(load(path), **dump_kwargs(seed)))
elif command == "check":
    check(seed, path, int(sys.argv[4]))
