// Updates of one durable journal store started together in one process (as
// a server's concurrent requests make them): five bursts of 200, then 200
// one after another, each timed. Usage: deno run -A bench/burst.ts
import { JsonStore } from "../mod.ts";

const dir = await Deno.makeTempDir({ prefix: "lockbox_burst_" });
const store = new JsonStore<{ n: number; items: string[] }>(
  `${dir}/state.json`,
  { initial: { n: 0, items: [] }, journal: true },
);
const bump = (tag: string) =>
  store.update((d) => {
    d.n++;
    d.items.push(tag);
  });
await bump("first");
const bursts: string[] = [];
for (let round = 0; round < 5; round++) {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 200 }, (_, i) => bump(`${round}-${i}`)),
  );
  bursts.push((performance.now() - started).toFixed(1));
}
const started = performance.now();
for (let i = 0; i < 200; i++) await bump(`s-${i}`);
const sequential = (performance.now() - started).toFixed(1);
console.log(
  `200 updates started together: ${
    bursts.join(", ")
  } ms (five bursts); 200 one after another: ${sequential} ms`,
);
await Deno.remove(dir, { recursive: true });
