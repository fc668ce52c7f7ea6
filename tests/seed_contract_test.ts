// The seed systems' shared tests (tests/_seed_contract.ts) on files.

import { FileLock } from "../mod.ts";
import { seedContract } from "./_seed_contract.ts";

seedContract({
  label: "files",
  test: (name, fn) =>
    Deno.test(name, async () => {
      const dir = await Deno.makeTempDir({ prefix: "lockbox_seeds_" });
      let next = 0;
      try {
        await fn({
          backend: undefined,
          dir,
          name: (label) => `${dir}/${label}-${next++}.json`,
          hold: async (file) => {
            const lock = await FileLock.acquire(file);
            return () => lock.release();
          },
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }),
});
