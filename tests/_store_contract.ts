// JsonStore's contract, written once and run against every storage: a
// whole file, a journal, and a PostgreSQL row (tests/postgres/store_test.ts).
// A behaviour that differs between them fails here.

import assert from "node:assert/strict";
import {
  CorruptStoreError,
  type JsonStore,
  LockError,
  LockTimeoutError,
  StaleFenceError,
} from "../mod.ts";

/** Options every storage takes. */
export interface ContractOptions<T> {
  initial: T | (() => T);
  validate?: (value: unknown) => T;
  lockTimeout?: number;
  onCorrupt?: "throw" | "quarantine";
  onWarning?: (message: string) => void;
  backups?: number;
  /** Another store on the same document as this subject's. */
  same?: Subject<unknown>;
}

/** One store made for one test, with ways to look under it. */
export interface Subject<T> {
  store: JsonStore<T>;
  /** Where the document is, for `same`. */
  where: string;
  /** Changes whenever anything is written to the storage. */
  generation(): Promise<string>;
  /** Stores `value` as is, past validate (as another tool could). */
  putRaw(value: unknown): Promise<void>;
  /** The stored value, read past lockbox. */
  raw(): Promise<unknown>;
}

/** A storage under test. */
export interface Storage {
  label: string;
  /** Whether it keeps `backups` (journal mode does not). */
  backups: boolean;
  /** Registers a test that gets a fresh-store maker. */
  test(
    name: string,
    fn: (
      make: <T>(options: ContractOptions<T>) => Promise<Subject<T>>,
    ) => Promise<void>,
  ): void;
}

interface Doc {
  n: number;
  items: string[];
}

const initial = (): Doc => ({ n: 0, items: [] });

function validateDoc(value: unknown): Doc {
  const doc = value as Doc;
  if (
    typeof doc !== "object" || doc === null || typeof doc.n !== "number" ||
    !Array.isArray(doc.items)
  ) {
    throw new TypeError("expected {n, items}");
  }
  return doc;
}

/** Registers the contract's tests for one storage. */
export function storeContract(storage: Storage): void {
  const t = (name: string, fn: Parameters<Storage["test"]>[1]) =>
    storage.test(`store contract (${storage.label}): ${name}`, fn);

  t("read gives a fresh initial value until the first write", async (make) => {
    const { store, raw } = await make<Doc>({ initial: { n: 0, items: [] } });
    const first = await store.read();
    first.items.push("leak");
    assert.deepEqual(await store.read(), { n: 0, items: [] });
    assert.equal(await raw(), undefined);
  });

  t(
    "update, transform and write commit; update returns fn's result",
    async (make) => {
      const { store, raw } = await make<Doc>({
        initial,
        validate: validateDoc,
      });
      assert.equal(await store.update((d) => ++d.n), 1);
      const next = await store.transform((d) => ({ n: d.n + 1, items: ["t"] }));
      assert.deepEqual(next, { n: 2, items: ["t"] });
      assert.deepEqual(await store.read(), { n: 2, items: ["t"] });
      await store.write({ n: 7, items: [] });
      assert.deepEqual(await store.read(), { n: 7, items: [] });
      assert.deepEqual(await raw(), { n: 7, items: [] });
    },
  );

  t(
    "a throwing fn writes nothing and its error reaches the caller unchanged",
    async (make) => {
      const { store, generation } = await make<Doc>({ initial });
      await store.update((d) => void d.n++);
      const before = await generation();
      const mine = new Error("Connection terminated: from the caller");
      await assert.rejects(
        store.update((d) => {
          d.n = 99;
          throw mine;
        }),
        (error) => error === mine,
      );
      await assert.rejects(
        store.transform(() => Promise.reject(mine)),
        (error) => error === mine,
      );
      assert.equal(await generation(), before);
      assert.equal((await store.read()).n, 1);
    },
  );

  t(
    "a value nesting past 1,000 levels is a RangeError and nothing is written; 1,000 levels are kept",
    async (make) => {
      type Deep = Doc & { deep?: unknown };
      const { store, generation } = await make<Deep>({ initial });
      const nested = (levels: number): unknown => {
        let value: unknown = 1;
        for (let i = 0; i < levels; i++) value = [value];
        return value;
      };
      // The document is level 1: a value under one key starts at level 2,
      // an element of items at level 3.
      await store.update((d) => void (d.deep = nested(999)));
      await store.update((d) => void d.items.push(nested(998) as string));
      const before = await generation();
      await assert.rejects(
        store.update((d) => void (d.deep = nested(1000))),
        RangeError,
      );
      await assert.rejects(
        store.update((d) => void d.items.push(nested(999) as string)),
        RangeError,
      );
      await assert.rejects(
        store.transform((d) => ({ ...d, deep: nested(1000) })),
        RangeError,
      );
      await assert.rejects(store.write(nested(1001) as Deep), RangeError);
      assert.equal(await generation(), before);
      assert.deepEqual(await store.read(), {
        n: 0,
        items: [nested(998)],
        deep: nested(999),
      });
    },
  );

  t(
    "an array grown past what a document can hold (a far index, a huge length) is a RangeError and nothing is written",
    async (make) => {
      const { store, generation } = await make<Doc>({ initial });
      await store.update((d) => void (d.items[2] = "c"));
      const before = await generation();
      // JSON writes each empty slot as null: 2^32 - 2 of them are ~20 GB.
      await assert.rejects(
        store.update((d) => void (d.items[2 ** 32 - 2] = "x")),
        RangeError,
      );
      await assert.rejects(
        store.update((d) => void (d.items.length = 2 ** 32 - 1)),
        RangeError,
      );
      assert.equal(await generation(), before);
      assert.deepEqual(await store.read(), { n: 0, items: [null, null, "c"] });
      await store.update((d) => void d.items.push("d"));
      assert.deepEqual((await store.read()).items, [null, null, "c", "d"]);
    },
  );

  t(
    "empty array slots are null, as JSON writes them, in fn, in read and in another reader",
    async (make) => {
      const { store, raw } = await make<Doc>({ initial });
      const items = (d: Doc) => d.items as (string | null)[];
      await store.update((d) => {
        items(d)[2] = "c";
        items(d)[0] = "a";
      });
      await store.update((d) => {
        items(d).length = 5;
        delete items(d)[0];
      });
      const expected = { n: 0, items: [null, null, "c", null, null] };
      assert.deepEqual(await store.read(), expected);
      assert.deepEqual(await raw(), expected);
      assert.deepEqual(
        await store.update((d) => items(d).map((item) => item === null)),
        [true, true, false, true, true],
      );
    },
  );

  t(
    "an object fn stores and then changes through its own reference is stored as it ends up; a change after the update is not",
    async (make) => {
      type Entry = { id: number; tags: string[] };
      type Indexed = Omit<Doc, "items"> & {
        items: Entry[];
        byId?: Record<string, Entry>;
      };
      const { store, raw } = await make<Indexed>({
        initial: () => ({ n: 0, items: [] }),
      });
      const entry = await store.update((d) => {
        const entry: Entry = { id: 1, tags: [] };
        d.items.push(entry);
        d.byId = { one: entry };
        entry.tags.push("late");
        entry.id = 2;
        return entry;
      });
      entry.tags.push("after the update");
      const expected = {
        n: 0,
        items: [{ id: 2, tags: ["late"] }],
        byId: { one: { id: 2, tags: ["late"] } },
      };
      assert.deepEqual(await store.read(), expected);
      assert.deepEqual(await raw(), expected);
      assert.deepEqual(
        await store.update((d) => JSON.parse(JSON.stringify(d))),
        expected,
      );
    },
  );

  t(
    "what update returns is the caller's to change: the document does not change with it",
    async (make) => {
      const { store } = await make<Doc>({ initial });
      const items = await store.update((d) => {
        d.items.push("a");
        return d.items;
      });
      items.push("the caller's");
      const both = await store.update((d) => ({ doc: d, n: d.n }));
      both.doc.n = 99;
      const expected = { n: 0, items: ["a"] };
      assert.deepEqual(await store.read(), expected);
      assert.deepEqual(
        await store.update((d) => JSON.parse(JSON.stringify(d))),
        expected,
      );
    },
  );

  t(
    "a part of the document stored in a second place and changed through either ends up the same in both",
    async (make) => {
      type Copied = Doc & { copy?: string[] };
      const { store, raw } = await make<Copied>({ initial });
      await store.update((d) => void d.items.push("a"));
      await store.update((d) => {
        d.copy = d.items;
        d.copy.push("b");
        d.items.push("c");
      });
      const expected = { n: 0, items: ["a", "b", "c"], copy: ["a", "b", "c"] };
      assert.deepEqual(await store.read(), expected);
      assert.deepEqual(await raw(), expected);
      assert.deepEqual(
        await store.update((d) => JSON.parse(JSON.stringify(d))),
        expected,
      );
    },
  );

  t("an unchanged value is not rewritten", async (make) => {
    const { store, generation } = await make<Doc>({ initial });
    await store.update((d) => void d.items.push("a"));
    const before = await generation();
    await store.update(() => {});
    await store.transform((d) => structuredClone(d));
    await store.write({ n: 0, items: ["a"] });
    assert.equal(await generation(), before);
  });

  t(
    "a value JSON cannot hold is a TypeError, and nothing is written",
    async (make) => {
      const { store, generation } = await make<Record<string, unknown>>({
        initial: {},
      });
      await store.write({ a: 1 });
      const before = await generation();
      await assert.rejects(
        store.update((d) => void (d.big = 10n)),
        TypeError,
      );
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await assert.rejects(store.write(cyclic), TypeError);
      await assert.rejects(
        store.transform(() => (() => 1) as unknown as Record<string, unknown>),
        TypeError,
      );
      assert.equal(await generation(), before);
      assert.deepEqual(await store.read(), { a: 1 });
    },
  );

  t(
    "a stored value validate rejects is a CorruptStoreError and stays as it was",
    async (make) => {
      const { store, putRaw, raw } = await make<Doc>({
        initial,
        validate: validateDoc,
      });
      await putRaw({ n: "not a number" });
      await assert.rejects(store.read(), CorruptStoreError);
      await assert.rejects(store.update((d) => void d.n++), CorruptStoreError);
      await assert.rejects(store.write({ n: 1, items: [] }), CorruptStoreError);
      assert.deepEqual(await raw(), { n: "not a number" });
    },
  );

  t(
    "quarantine moves a rejected value aside, warns, and continues from the newest good backup",
    async (make) => {
      const warnings: string[] = [];
      const { store, putRaw } = await make<Doc>({
        initial,
        validate: validateDoc,
        onCorrupt: "quarantine",
        onWarning: (message) => warnings.push(message),
        backups: storage.backups ? 2 : 0,
      });
      await store.write({ n: 1, items: ["good"] });
      await store.write({ n: 2, items: ["newer"] });
      // Another tool overwrites version 2: the newest backup is version 1.
      await putRaw({ n: "bad" });
      const continued = storage.backups
        ? { n: 1, items: ["good"] }
        : { n: 0, items: [] };
      assert.deepEqual(await store.read(), continued);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /corrupt/);
      await store.update((d) => void d.n++);
      assert.equal((await store.read()).n, continued.n + 1);
    },
  );

  t(
    "what validate returns is what is stored, read and given to the next fn",
    async (make) => {
      type Tagged = Doc & { tag?: string; junk?: number };
      const validate = (value: unknown): Tagged => {
        const { junk: _junk, ...rest } = validateDoc(value) as Tagged;
        return { ...rest, n: Math.min(rest.n, 10), tag: rest.tag ?? "default" };
      };
      const { store, raw } = await make<Tagged>({ initial, validate });
      await store.update((d) => {
        d.n = 50;
        d.junk = 1;
      });
      const expected = { n: 10, items: [], tag: "default" };
      assert.deepEqual(await store.read(), expected);
      assert.deepEqual(await raw(), expected);
      assert.deepEqual(await store.update((d) => ({ ...d })), expected);
    },
  );

  t(
    "validate's error on a new value reaches the caller; nothing is written",
    async (make) => {
      const { store, generation } = await make<Doc>({
        initial,
        validate: validateDoc,
      });
      await store.update((d) => void d.n++);
      const before = await generation();
      await assert.rejects(
        store.transform(() => ({ n: "x" }) as unknown as Doc),
        /expected \{n, items\}/,
      );
      assert.equal(await generation(), before);
    },
  );

  t(
    "fencing: an older fence is refused with StaleFenceError, an equal one passes",
    async (make) => {
      const { store } = await make<Doc>({ initial });
      await store.update((d) => void d.n++, { fence: 10 });
      await assert.rejects(
        store.update((d) => void (d.n = 100), { fence: 9 }),
        (error) =>
          error instanceof StaleFenceError && error.fence === 9 &&
          error.highest === 10,
      );
      // A fenced update that changes nothing still records its fence.
      await store.update(() => {}, { fence: 11 });
      await assert.rejects(
        store.write({ n: 5, items: [] }, { fence: 10 }),
        StaleFenceError,
      );
      await store.update((d) => void d.n++, { fence: 11 });
      assert.equal((await store.read()).n, 2);
      await assert.rejects(store.write(initial(), { fence: -1 }), RangeError);
    },
  );

  t(
    "resetFence(): forgets the fences applied, so a lower token is accepted again and fences anew",
    async (make) => {
      const { store } = await make<Doc>({ initial });
      await store.update((d) => void d.n++, { fence: 50 });
      await assert.rejects(
        store.update((d) => void d.n++, { fence: 3 }),
        StaleFenceError,
      );
      await store.resetFence();
      await store.resetFence(); // nothing to forget: no error
      await store.update((d) => void d.n++, { fence: 3 });
      await assert.rejects(
        store.update((d) => void d.n++, { fence: 2 }),
        (error) => error instanceof StaleFenceError && error.highest === 3,
      );
      assert.equal((await store.read()).n, 2);
    },
  );

  t(
    "concurrent updates in one process never lose each other's changes",
    async (make) => {
      const { store } = await make<Doc>({ initial });
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.update(async (d) => {
            const n = d.n;
            await new Promise((resolve) => setTimeout(resolve, 1));
            d.n = n + 1;
            d.items.push(`u${i}`);
          })),
      );
      const doc = await store.read();
      assert.equal(doc.n, 20);
      assert.equal(new Set(doc.items).size, 20);
    },
  );

  t(
    "lockTimeout 0 gives up at once while another update holds the document; a signal aborts a wait",
    async (make) => {
      const first = await make<Doc>({ initial });
      const other = first.store;
      let release!: () => void;
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => entered = resolve);
      const holding = other.update(async (d) => {
        entered();
        await new Promise<void>((resolve) => release = resolve);
        d.n++;
      });
      await inside;
      const impatient = await make<Doc>({
        initial,
        lockTimeout: 0,
        same: first as Subject<unknown>,
      });
      await assert.rejects(
        impatient.store.update((d) => void d.n++),
        LockTimeoutError,
      );
      const controller = new AbortController();
      const reason = new Error("stop waiting");
      const waiting = other.update((d) => void d.n++, {
        signal: controller.signal,
      });
      setTimeout(() => controller.abort(reason), 50);
      await assert.rejects(waiting, (error) => error === reason);
      release();
      await holding;
      assert.equal((await other.read()).n, 1);
    },
  );

  t(
    "a document reads back as written: key order, U+0000, big and small numbers",
    async (make) => {
      const { store } = await make<Record<string, unknown>>({ initial: {} });
      const doc = {
        zeta: 1,
        alpha: { y: 1, x: 2 },
        "10": "integer keys come first in JavaScript",
        nul: "a\u0000b",
        numbers: [1e21, 5e-324, -0.5, 9007199254740991],
        unicode: "naïve ✓ \u{1F600}",
      };
      await store.write(doc);
      const back = await store.read();
      assert.deepEqual(back, doc);
      assert.deepEqual(Object.keys(back), Object.keys(doc));
      assert.deepEqual(
        Object.keys(back.alpha as object),
        ["y", "x"],
      );
    },
  );

  t("keys such as constructor and __proto__ are plain data", async (make) => {
    const { store } = await make<Record<string, unknown>>({ initial: {} });
    await store.update((d) => {
      d["constructor"] = 1;
      d["toString"] = "x";
      Object.defineProperty(d, "__proto__", {
        value: { polluted: true },
        enumerable: true,
        writable: true,
        configurable: true,
      });
    });
    const doc = await store.read();
    assert.equal(doc["constructor"], 1);
    assert.equal(doc["toString"], "x");
    assert.ok(Object.hasOwn(doc, "__proto__"));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  t(
    "an update from inside an update of the same store fails at once with LockError, and the outer one goes on",
    async (make) => {
      const { store } = await make<Doc>({ initial });
      const inner = await store.update(async (d) => {
        d.n = 1;
        const error = await store.update((e) => void e.n++).catch((e) => e);
        return error;
      });
      assert.ok(inner instanceof LockError, String(inner));
      assert.match(inner.message, /not re-entrant/);
      assert.equal((await store.read()).n, 1);
    },
  );
}
