// LockQueue: the in-process line FileLock and PostgresBackend share.

import assert from "node:assert/strict";
import { LockQueue, LockQueues, type Waiter } from "../src/lock/queue.ts";

interface _Entry extends Waiter {
  name: string;
}

/** A table of plain queues, and a request that records what became of it. */
function setUp() {
  const queues = new LockQueues<_Entry, LockQueue<_Entry>>(
    (key, onIdle) => new LockQueue<_Entry>(key, onIdle),
  );
  const events: string[] = [];
  const request = (
    queue: LockQueue<_Entry>,
    name: string,
    shared: boolean,
    terms: { timeout?: number; signal?: AbortSignal; error?: unknown } = {},
  ) => {
    const entry = { name, shared };
    if (queue.free(shared)) {
      queue.enter(shared);
      events.push(`${name} in`);
      return entry;
    }
    queue.wait(entry, {
      timeout: terms.timeout ?? Infinity,
      signal: terms.signal,
      timedOut: () => terms.error ?? new Error(`${name} timed out`),
      giveUp: (error) => events.push(`${name} ${(error as Error).message}`),
      onTurn: () => events.push(`${name} in`),
    });
    return entry;
  };
  return { queues, events, request };
}

Deno.test("LockQueue.leave() lets shared requests in together and an exclusive one alone, in order", () => {
  const { queues, events, request } = setUp();
  const queue = queues.get("a");
  request(queue, "x1", false);
  request(queue, "s1", true);
  request(queue, "s2", true);
  request(queue, "x2", false);
  request(queue, "s3", true);
  assert.deepEqual(events, ["x1 in"]);
  queue.leave();
  assert.deepEqual(events, ["x1 in", "s1 in", "s2 in"]);
  assert.equal(queue.active, 2);
  queue.leave();
  assert.deepEqual(events.length, 3);
  queue.leave();
  assert.deepEqual(events, ["x1 in", "s1 in", "s2 in", "x2 in"]);
  assert.ok(queue.exclusive);
  queue.leave();
  assert.deepEqual(events.at(-1), "s3 in");
  assert.ok(!queue.exclusive);
});

Deno.test("LockQueue.free() is false for a shared request while one waits in line", () => {
  const { queues, request } = setUp();
  const queue = queues.get("a");
  request(queue, "s1", true);
  assert.ok(queue.free(true));
  request(queue, "x1", false);
  assert.ok(!queue.free(true));
  assert.equal(queue.length, 1);
});

Deno.test("LockQueues.get() forgets a key's queue once it is idle, and makes a new one", () => {
  const { queues, request } = setUp();
  const queue = queues.get("a");
  assert.equal(queues.get("a"), queue);
  request(queue, "x1", false);
  queue.leave();
  assert.deepEqual([...queues.values()], []);
  assert.notEqual(queues.get("a"), queue);
});

Deno.test("LockQueue.wait() gives a request up with timedOut()'s error when its timeout runs out", async () => {
  const { queues, events, request } = setUp();
  const queue = queues.get("a");
  request(queue, "x1", false);
  request(queue, "x2", false, { timeout: 1, error: new Error("late") });
  while (queue.length > 0) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(events, ["x1 in", "x2 late"]);
  queue.leave();
  assert.deepEqual([...queues.values()], []);
});

Deno.test("LockQueue.wait() keeps a request in line until timedOut()'s promise settles", async () => {
  const { queues, events } = setUp();
  const queue = queues.get("a");
  queue.enter(false);
  let looked!: () => void;
  const lookup = new Promise<void>((resolve) => looked = resolve);
  const entry = { name: "x2", shared: false };
  queue.wait(entry, {
    timeout: 1,
    timedOut: () => lookup.then(() => new Error("late")),
    giveUp: (error) => events.push(`x2 ${(error as Error).message}`),
    onTurn: () => events.push("x2 in"),
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(queue.length, 1);
  queue.leave();
  assert.deepEqual(events, ["x2 in"]);
  looked();
  await lookup;
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(events, ["x2 in"]);
});

Deno.test("LockQueue.wait() gives a request up with the signal's reason when it aborts, and lets the next in", () => {
  const { queues, events, request } = setUp();
  const queue = queues.get("a");
  request(queue, "s1", true);
  const controller = new AbortController();
  request(queue, "x1", false, { signal: controller.signal });
  request(queue, "s2", true);
  controller.abort(new Error("stop"));
  assert.deepEqual(events, ["s1 in", "x1 stop", "s2 in"]);
  assert.equal(queue.active, 2);
});

Deno.test("LockQueue.fail() returns false for a request no longer in line", () => {
  const { queues, events, request } = setUp();
  const queue = queues.get("a");
  request(queue, "x1", false);
  const x2 = request(queue, "x2", false);
  queue.leave();
  assert.equal(queue.fail(x2, new Error("late")), false);
  assert.deepEqual(events, ["x1 in", "x2 in"]);
});

Deno.test("LockQueue.pump() lets no one in while serving is set", () => {
  const { queues, events, request } = setUp();
  const queue = queues.get("a");
  request(queue, "x1", false);
  request(queue, "x2", false);
  queue.serving = true;
  queue.leave();
  assert.deepEqual(events, ["x1 in"]);
  assert.ok(!queue.idle());
  queue.serving = false;
  queue.pump();
  assert.deepEqual(events, ["x1 in", "x2 in"]);
});
