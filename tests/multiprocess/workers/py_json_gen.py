# Random data of every kind Python's json module writes differently from
# JavaScript (big integers, float forms, NaN, Infinity, key order, escapes),
# dumped with the given ensure_ascii and indent. Usage: py_json_gen.py SEED
# ENSURE_ASCII(0|1) INDENT(N|none), or py_json_gen.py batch COUNT
import json, random, math, sys
def val(d=0):
    r = random.random()
    if d > 3 or r < 0.3:
        return random.choice([0, 1, -1, 10**30, 1761301800123456789, 1.0, -0.0, 1.5e-07, 1e16, 1e15, 0.1+0.2, 1700000000.0, 123.456, float('nan'), float('inf'), -float('inf'), 2**53+1, 1e-5, 0.0001, 5e-324, 1.7976931348623157e308, True, False, None, "café", "a\"b\\c\n\t\x01\x7f", "😀 astral", "plain", "ünï", ""])
    if r < 0.6:
        return [val(d+1) for _ in range(random.randint(0, 4))]
    keys = ["b", "10", "2", "a", "constructor", "__proto__", "0", "z", "é", "4294967295", "4294967294"]
    return {random.choice(keys): val(d+1) for _ in range(random.randint(0, 5))}
def dump(seed, ea, ind):
    random.seed(seed)
    data = {"b": val(), "10": val(), "2": val(), "x": [val() for _ in range(3)]}
    return json.dumps(data, indent=ind, ensure_ascii=ea)
if sys.argv[1] == "batch":
    # batch COUNT: a JSON list of [seed, ensure_ascii, indent, text].
    out = []
    for seed in range(int(sys.argv[2])):
        for ea, ind in ((True, 2), (False, 4)):
            out.append([seed, ea, ind, dump(seed, ea, ind)])
    sys.stdout.write(json.dumps(out))
else:
    sys.stdout.write(dump(int(sys.argv[1]), sys.argv[2] == "1",
                          None if sys.argv[3] == "none" else int(sys.argv[3])))
