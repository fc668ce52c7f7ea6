// Tries a FileLock once; prints "acquired" or "busy". Usage: try.mjs PATH [LOCKPATH]
import { lockbox } from "./_lockbox.mjs";

const { FileLock } = lockbox;

const [path, lockPath] = process.argv.slice(2);
const lock = await FileLock.tryAcquire(path, { lockPath });
console.log(lock ? "acquired" : "busy");
await lock?.release();
