import assert from "node:assert/strict";
import {
  _deletePointer,
  _getPointer,
  _initialFor,
  _parsePointer,
  _setPointer,
} from "../src/store/json_pointer.ts";

Deno.test("_parsePointer() unescapes ~1 and ~0 and refuses malformed pointers", () => {
  assert.deepEqual(_parsePointer(""), []);
  assert.deepEqual(_parsePointer("/a~1b/m~0n/"), ["a/b", "m~n", ""]);
  assert.deepEqual(_parsePointer("/~01"), ["~1"]);
  assert.throws(() => _parsePointer("a"), TypeError);
  assert.throws(() => _parsePointer("/a~2"), TypeError);
});

Deno.test("_getPointer() finds values in objects and arrays, and says when nothing is there", () => {
  const doc = { a: [{ b: 1 }, null], "x/y": true };
  assert.deepEqual(_getPointer(doc, ""), { found: true, value: doc });
  assert.deepEqual(_getPointer(doc, "/a/0/b"), { found: true, value: 1 });
  assert.deepEqual(_getPointer(doc, "/a/1"), { found: true, value: null });
  assert.deepEqual(_getPointer(doc, "/x~1y"), { found: true, value: true });
  for (
    const missing of ["/a/2", "/a/01", "/a/-", "/b", "/a/0/b/c", "/toString"]
  ) {
    assert.deepEqual(_getPointer(doc, missing), { found: false }, missing);
  }
});

Deno.test("_setPointer() sets, appends with -, creates missing objects, and refuses scalars", () => {
  const doc: Record<string, unknown> = { list: [1] };
  _setPointer(doc, "/list/-", 2);
  _setPointer(doc, "/list/0", 0);
  _setPointer(doc, "/deep/er/key", "v");
  assert.deepEqual(doc, { list: [0, 2], deep: { er: { key: "v" } } });
  assert.equal(_setPointer(doc, "", 5), 5);
  assert.throws(() => _setPointer(doc, "/list/5", 1), /not an index/);
  assert.throws(
    () => _setPointer({ n: 1 }, "/n/x", 1),
    /'\/n' is not an object/,
  );
});

Deno.test("_setPointer() makes an array, not an object, for a missing parent of -", () => {
  const doc: Record<string, unknown> = {};
  _setPointer(doc, "/jobs/-", "a");
  _setPointer(doc, "/jobs/-", "b");
  _setPointer(doc, "/runs/-/-", 1);
  assert.deepEqual(doc, { jobs: ["a", "b"], runs: [[1]] });
  assert.deepEqual(_initialFor("/-"), []);
  assert.deepEqual(_initialFor("/a/-"), {});
  // An existing object keeps "-" as a key, as RFC 6901 says.
  assert.deepEqual(_setPointer({ o: {} }, "/o/-", 1), { o: { "-": 1 } });
});

Deno.test("_deletePointer() removes keys and array elements, and says when nothing is there", () => {
  const doc = { a: [1, 2, 3], o: { k: 1, "x/y": 2 }, s: "t" };
  assert.equal(_deletePointer(doc, "/a/1"), true);
  assert.equal(_deletePointer(doc, "/o/x~1y"), true);
  assert.deepEqual(doc, { a: [1, 3], o: { k: 1 }, s: "t" });
  for (const missing of ["/a/2", "/a/-", "/a/01", "/o/x", "/s/0", "/n/k"]) {
    assert.equal(_deletePointer(doc, missing), false, missing);
  }
  assert.deepEqual(doc, { a: [1, 3], o: { k: 1 }, s: "t" });
  assert.throws(() => _deletePointer(doc, ""), TypeError);
});
