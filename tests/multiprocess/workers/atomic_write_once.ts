// One atomicWriteFile, for strace. Usage: atomic_write_once.ts PATH durable|fast
import { atomicWriteFile } from "../../../mod.ts";

const [path, mode] = Deno.args;
await atomicWriteFile(path, '{"traced":true}', { durable: mode === "durable" });
