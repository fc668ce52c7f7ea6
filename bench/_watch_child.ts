// The watcher of bench/watch_bench.ts: watches TARGET and writes each
// yielded document's n as a line. Usage: _watch_child.ts MODE TARGET
//   MODE: whole | journal[-SIZE] | postgres[-SIZE] (TARGET is then a
//   document name on LOCKBOX_DATABASE_URL)
import { JsonStore } from "../mod.ts";

const [mode, target] = Deno.args;
let store: JsonStore<{ n: number }>;
if (mode.startsWith("postgres")) {
  const { PostgresBackend } = await import("../src/postgres/mod.ts");
  const db = await PostgresBackend.connect(
    Deno.env.get("LOCKBOX_DATABASE_URL"),
  );
  store = db.jsonStore(target, { initial: { n: 0 } });
} else {
  store = new JsonStore(target, {
    initial: { n: 0 },
    journal: mode.startsWith("journal"),
  });
}
const out = Deno.stdout.writable.getWriter();
for await (const { value } of store.watch()) {
  await out.write(new TextEncoder().encode(`${value.n}\n`));
}
