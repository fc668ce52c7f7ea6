// Takes nested locks on a few of DIR/0..5, always in ascending order, ROUNDS
// times, with a short deadlockTimeout so that every long wait looks for a
// deadlock. Prints "count <acquisitions> <DeadlockErrors>".
// Usage: ordered.ts DIR ROUNDS SEED
import { DeadlockError, withLock } from "../../../mod.ts";

const [dir, rounds, seed] = Deno.args;
let state = Number(seed) * 7919 + 1;
const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
let count = 0;
let deadlocks = 0;

async function nest(names: number[]): Promise<void> {
  if (names.length === 0) {
    if (random() < 0.1) await new Promise((r) => setTimeout(r, 1));
    return;
  }
  await withLock(`${dir}/${names[0]}`, async () => {
    count++;
    await nest(names.slice(1));
  }, { deadlockTimeout: 20 });
}

for (let round = 0; round < Number(rounds); round++) {
  const names = [0, 1, 2, 3, 4, 5].filter(() => random() < 0.45);
  try {
    await nest(names);
  } catch (error) {
    if (!(error instanceof DeadlockError)) throw error;
    deadlocks++;
  }
}
console.log(`count ${count} ${deadlocks}`);
