// Archiver run state: every example of seed 003, with its documented values.

import assert from "node:assert/strict";
import {
  appendToFailureLog,
  CorruptStoreError,
  getIncrementalStartRun,
  parseRunRecordsFile,
  readState,
  StoreError,
  updateAttemptedRunState,
  updateContiguousRunState,
  writeFailureLog,
  writeState,
} from "../mod.ts";
import { withTempDir } from "./_helpers.ts";

Deno.test("readState() is {} for a missing file and keeps unknown keys", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    assert.deepEqual(await readState(path), {});
    const state = {
      last_contiguous_run: 19500,
      last_attempted_run: 19550,
      timestamp: "2025-10-24T10:30:00",
    };
    await writeState(path, state);
    assert.deepEqual(await readState(path), state);
    await updateAttemptedRunState(path, [19560]);
    assert.equal((await readState(path)).timestamp, "2025-10-24T10:30:00");
  });
});

Deno.test("updateContiguousRunState() from 100: [101, 102, 103] gives 103", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, { last_contiguous_run: 100 });
    const s = await updateContiguousRunState(path, [101, 102, 103]);
    assert.equal(s.last_contiguous_run, 103);
  });
});

Deno.test("updateContiguousRunState() from 103: [104, 106, 107] stops at the gap, 104", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, { last_contiguous_run: 103 });
    assert.equal(
      (await updateContiguousRunState(path, [104, 106, 107]))
        .last_contiguous_run,
      104,
    );
  });
});

Deno.test("updateContiguousRunState() from 104: [107, 108, 109] changes nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, { last_contiguous_run: 104 });
    assert.equal(
      (await updateContiguousRunState(path, [107, 108, 109]))
        .last_contiguous_run,
      104,
    );
    assert.equal((await readState(path)).last_contiguous_run, 104);
  });
});

Deno.test("updateAttemptedRunState() from 100: [101, 105, 103] gives 105", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, { last_attempted_run: 100 });
    assert.equal(
      (await updateAttemptedRunState(path, [101, 105, 103])).last_attempted_run,
      105,
    );
  });
});

Deno.test("updateAttemptedRunState() never decreases and ignores an empty list", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, { last_attempted_run: 105 });
    assert.equal(
      (await updateAttemptedRunState(path, [98, 99, 100])).last_attempted_run,
      105,
    );
    assert.equal(
      (await updateAttemptedRunState(path, [])).last_attempted_run,
      105,
    );
  });
});

Deno.test("getIncrementalStartRun() is the max of both values, 0 without a file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await writeState(path, {
      last_contiguous_run: 100,
      last_attempted_run: 150,
    });
    assert.equal(await getIncrementalStartRun(path), 150);
    await writeState(path, {
      last_contiguous_run: 200,
      last_attempted_run: 150,
    });
    assert.equal(await getIncrementalStartRun(path), 200);
    assert.equal(await getIncrementalStartRun(`${dir}/nonexistent.json`), 0);
  });
});

Deno.test("parseRunRecordsFile() skips blank and invalid lines", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/runs.txt`;
    await Deno.writeTextFile(path, "100\n200\ninvalid\n300\n\n");
    assert.deepEqual(await parseRunRecordsFile(path), [100, 200, 300]);
    await assert.rejects(parseRunRecordsFile(`${dir}/none.txt`), StoreError);
  });
});

Deno.test("appendToFailureLog() creates the log and appends one run a line", async () => {
  await withTempDir(async (dir) => {
    const log = `${dir}/import_failure_log`;
    await appendToFailureLog(log, [105]);
    await appendToFailureLog(log, [106, 107]);
    assert.equal(await Deno.readTextFile(log), "105\n106\n107\n");
  });
});

Deno.test("writeFailureLog() replaces the log", async () => {
  await withTempDir(async (dir) => {
    const log = `${dir}/import_failure_log`;
    await appendToFailureLog(log, [1, 2]);
    await writeFailureLog(log, [105, 110, 115]);
    assert.equal(await Deno.readTextFile(log), "105\n110\n115\n");
  });
});

Deno.test("seed 003's complete usage example gives its documented results", async () => {
  await withTempDir(async (dir) => {
    const stateFile = `${dir}/import_state.json`;
    const failureLog = `${dir}/import_failure_log`;
    assert.deepEqual(await readState(stateFile), {});
    await updateContiguousRunState(stateFile, [101, 102, 104, 105]);
    await updateAttemptedRunState(stateFile, [101, 102, 103, 104, 105]);
    await appendToFailureLog(failureLog, [103]);
    assert.deepEqual(await readState(stateFile), {
      last_contiguous_run: 102,
      last_attempted_run: 105,
    });
    assert.equal(await getIncrementalStartRun(stateFile), 105);
    const retry = await parseRunRecordsFile(failureLog);
    assert.deepEqual(retry, [103]);
    await writeFailureLog(failureLog, retry.filter((r) => r !== 103));
    assert.deepEqual(await parseRunRecordsFile(failureLog), []);
  });
});

Deno.test("run state refuses run numbers that are not non-negative integers, and corrupt files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.json`;
    await assert.rejects(updateContiguousRunState(path, [1.5]), TypeError);
    await assert.rejects(updateAttemptedRunState(path, [-1]), TypeError);
    // @ts-expect-error: not a number
    await assert.rejects(appendToFailureLog(`${dir}/log`, ["7"]), TypeError);
    await assert.rejects(
      writeState(path, { last_attempted_run: -3 }),
      TypeError,
    );
    await Deno.writeTextFile(path, '{"last_contiguous_run": 1');
    await assert.rejects(readState(path), CorruptStoreError);
    await assert.rejects(updateAttemptedRunState(path, [5]), CorruptStoreError);
    assert.equal(await Deno.readTextFile(path), '{"last_contiguous_run": 1');
  });
});
