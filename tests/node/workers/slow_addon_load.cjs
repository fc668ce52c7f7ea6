// Preloaded (--require) into a Node process: in worker threads, each native
// addon's load starts 500 ms late and is written to the file
// LOCKBOX_TEST_LOADS once it returns. It stands for a slow machine on which
// process.exit() comes while a waiting thread loads koffi.
const { appendFileSync } = require("node:fs");
const { isMainThread } = require("node:worker_threads");

if (!isMainThread) {
  const load = process.dlopen;
  process.dlopen = function (module, filename, ...rest) {
    const until = Date.now() + 500;
    while (Date.now() < until) { /* the slow machine */ }
    const result = load.call(this, module, filename, ...rest);
    appendFileSync(process.env.LOCKBOX_TEST_LOADS, `${filename}\n`);
    return result;
  };
}
