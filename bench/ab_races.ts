// Interleaved A/B races of checkouts on one machine: for each round, each
// checkout's bench/_store_worker.ts runs 8 processes x 250 updates of one
// store in MODE (see that file), the order reversed every other round so that
// a drift of the machine falls on all; prints per checkout the median race
// time and the median CPU per update (user, system). A whole-file store must
// end with all 2000 updates. A fsync-bound mode (json-durable) swings by 20%
// or more between rounds on a virtual machine's disk: compare many rounds.
//
// Usage: deno run -A bench/ab_races.ts MODE ROUNDS CHECKOUT...
//   e.g. deno run -A bench/ab_races.ts json-fast 10 ../before .

const [mode, roundsText, ...checkouts] = Deno.args;
const rounds = Number(roundsText);
if (!mode || !(rounds > 0) || checkouts.length === 0) {
  console.error("Usage: bench/ab_races.ts MODE ROUNDS CHECKOUT...");
  Deno.exit(2);
}
const PROCESSES = 8;
const UPDATES = 250;
const figures = checkouts.map(() => ({
  ms: [] as number[],
  user: [] as number[],
  system: [] as number[],
}));

/** One race of `checkout`'s workers; adds its figures to `into`. */
async function race(
  checkout: string,
  into: (typeof figures)[number],
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lockbox_ab_" });
  const path = `${dir}/store.json`;
  const started = performance.now();
  const outputs = await Promise.all(
    Array.from(
      { length: PROCESSES },
      (_, i) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--no-check",
            `${checkout}/bench/_store_worker.ts`,
            mode,
            path,
            String(UPDATES),
            `p${i}`,
          ],
          stdout: "piped",
        }).output(),
    ),
  );
  into.ms.push(performance.now() - started);
  let user = 0;
  let system = 0;
  for (const output of outputs) {
    if (!output.success) throw new Error(`a worker of ${checkout} failed`);
    const cpu = new TextDecoder().decode(output.stdout).match(
      /^cpu (\d+) (\d+)$/m,
    );
    if (!cpu) throw new Error(`a worker of ${checkout} printed no CPU time`);
    user += Number(cpu[1]);
    system += Number(cpu[2]);
  }
  into.user.push(user / (PROCESSES * UPDATES));
  into.system.push(system / (PROCESSES * UPDATES));
  if (mode.startsWith("json-")) {
    const count = JSON.parse(await Deno.readTextFile(path)).count;
    if (count !== PROCESSES * UPDATES) {
      throw new Error(`${checkout} kept ${count} of ${PROCESSES * UPDATES}`);
    }
  }
  await Deno.remove(dir, { recursive: true });
}

for (let round = 0; round < rounds; round++) {
  const order = [...checkouts.entries()];
  if (round % 2 === 1) order.reverse();
  for (const [i, checkout] of order) await race(checkout, figures[i]);
}
const median = (values: number[]) =>
  values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`${mode}, ${rounds} rounds, ${PROCESSES} x ${UPDATES} updates`);
for (const [i, checkout] of checkouts.entries()) {
  const { ms, user, system } = figures[i];
  console.log(
    `${checkout.padEnd(24)} race median ${
      median(ms).toFixed(0)
    } ms, CPU per update ${median(user).toFixed(0)} µs user + ${
      median(system).toFixed(0)
    } µs system; races ${ms.map((m) => m.toFixed(0)).join(" ")}`,
  );
}
