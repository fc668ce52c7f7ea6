// Judges crash states in a fresh process with the real runtime: every
// state is opened by new lockbox objects, as a restarted program would.
// Usage: _check_states.ts NAME LIST.json, where the list holds
// [{ dir, acked }]; prints one JSON line per state: { dir, problem }.
import { WORKLOADS } from "./_workloads.ts";

const [name, listFile] = Deno.args;
const states: { dir: string; acked: number }[] = JSON.parse(
  await Deno.readTextFile(listFile),
);
const workload = WORKLOADS[name];
for (const { dir, acked } of states) {
  const problem = await workload.check(dir, acked);
  console.log(JSON.stringify({ dir, problem }));
}
