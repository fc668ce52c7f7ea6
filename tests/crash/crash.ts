// `deno task crash`: the full crash exploration. For every workload, every
// point of its recorded mutations, up to 40 distinct states a power loss
// could leave there, each judged by a fresh process. Prints per workload
// the crash points, the states tried and the violations; exits 1 if any.
import { explore, WORKLOAD_NAMES } from "./_explore.ts";

const rows: string[] = [];
let violations = 0;
for (const name of WORKLOAD_NAMES) {
  const result = await explore(name, { maxStates: 40 });
  violations += result.violations.length;
  rows.push(
    `| ${name.padEnd(15)} | ${String(result.points).padStart(12)} | ${
      String(result.states).padStart(12)
    } | ${String(result.violations.length).padStart(10)} |`,
  );
  for (const v of result.violations.slice(0, 5)) {
    console.error(
      `${name}: after ${v.point} operations (${v.acked} acknowledged): ${v.problem}`,
    );
  }
}
console.log("| workload        | crash points | states tried | violations |");
console.log("| --------------- | ------------ | ------------ | ---------- |");
for (const row of rows) console.log(row);
if (violations > 0) Deno.exit(1);
