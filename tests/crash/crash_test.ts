// The crash checker, bounded for `deno task test` (`deno task crash` runs
// the full exploration): every workload, power loss at up to 25 points, up
// to 6 states each, no violation. And the checker itself can fail: told
// that lockbox skipped its directory fsyncs, or its file fsyncs, it finds
// acknowledged updates lost.
import assert from "node:assert/strict";
import { explore, WORKLOAD_NAMES } from "./_explore.ts";

for (const name of WORKLOAD_NAMES) {
  Deno.test(`crash states of ${name}: every one opens without repair and keeps every acknowledged update`, async () => {
    const result = await explore(name, { maxStates: 6, maxPoints: 25 });
    assert.ok(result.states >= 25, `only ${result.states} states`);
    assert.deepEqual(result.violations, []);
  });
}

for (const breakMode of ["nodirsync", "nofsync"]) {
  Deno.test(
    `the crash checker catches a JsonStore that skips its ${
      breakMode === "nodirsync" ? "directory" : "file"
    } fsyncs`,
    async () => {
      const result = await explore("json-store", {
        maxStates: 6,
        maxPoints: 25,
        breakMode,
      });
      assert.ok(
        result.violations.some((v) => v.acked > 0),
        "no acknowledged update was found lost",
      );
    },
  );
}
