// Tries a FileLock once; prints "acquired" or "busy". Usage: try.mjs PATH [LOCKPATH]
import { FileLock } from "../../../dist/npm/mod.js";

const [path, lockPath] = process.argv.slice(2);
const lock = await FileLock.tryAcquire(path, { lockPath });
console.log(lock ? "acquired" : "busy");
await lock?.release();
