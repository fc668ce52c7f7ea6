// The thread of this process blocked in flock(2), for the workers that
// park a wait and must know it has parked.
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";

/** Its thread id, from /proc/self/task/TID/syscall (flock: x64 73, arm64 32); `null` if none. */
export function threadInFlock() {
  const number = { x64: 73, arm64: 32 }[process.arch];
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const call = readFileSync(`/proc/self/task/${tid}/syscall`, "latin1");
      if (call.startsWith(`${number} `)) return tid;
    } catch {
      // Ended meanwhile.
    }
  }
  return null;
}
