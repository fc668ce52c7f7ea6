// The other side of the PostgreSQL hand-off bench: prints "ready", then on
// each "go" line waits for the lock, writes one byte the moment it has it,
// and lets go.
import { PostgresBackend } from "../src/postgres/mod.ts";

const backend = await PostgresBackend.connect();
const byte = new Uint8Array([0x61]);
const decoder = new TextDecoder();
Deno.stdout.writeSync(new TextEncoder().encode("ready"));
for await (const chunk of Deno.stdin.readable) {
  for (const _ of decoder.decode(chunk).matchAll(/go/g)) {
    const lock = await backend.acquire("handoff");
    Deno.stdout.writeSync(byte);
    await lock.release();
  }
}
await backend.close();
