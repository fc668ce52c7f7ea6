// Appends COUNT records to a JSONL log, one appendJsonl call each.
// Usage: jsonl_append.ts PATH COUNT PREFIX
import { appendJsonl } from "../../../mod.ts";

const [path, count, prefix] = Deno.args;
for (let i = 0; i < Number(count); i++) {
  await appendJsonl(path, [{ writer: prefix, i, pad: "x".repeat(i % 300) }], {
    durable: false,
  });
}
console.log("done");
