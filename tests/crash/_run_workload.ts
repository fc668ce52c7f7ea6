// Runs one workload under the recording runtime (the crash checker starts
// this with an import map that swaps src/runtime/mod.ts for
// _recording_runtime.ts). Usage: _run_workload.ts NAME DIR
import { mark } from "./_recording_runtime.ts";
import { WORKLOADS } from "./_workloads.ts";

const [name, dir] = Deno.args;
await WORKLOADS[name].run(dir, (i) => mark("ack", i));
