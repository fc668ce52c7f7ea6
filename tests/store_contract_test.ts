// JsonStore's shared contract (tests/_store_contract.ts) on files: whole-file
// mode, and journal mode where the document is the snapshot plus its journal.

import { JsonStore } from "../mod.ts";
import {
  type ContractOptions,
  storeContract,
  type Subject,
} from "./_store_contract.ts";

function fileStorage(journal: boolean) {
  return {
    label: journal ? "journal" : "whole file",
    backups: !journal,
    test: (
      name: string,
      fn: (
        make: <T>(options: ContractOptions<T>) => Promise<Subject<T>>,
      ) => Promise<void>,
    ) =>
      Deno.test(name, async () => {
        const dir = await Deno.makeTempDir({ prefix: "lockbox_contract_" });
        let next = 0;
        try {
          await fn(<T>(options: ContractOptions<T>) => {
            const path = options.same?.where ?? `${dir}/store${next++}.json`;
            const { same: _same, ...rest } = options;
            const store = new JsonStore<T>(path, { ...rest, journal });
            const stat = (p: string) => {
              try {
                const s = Deno.statSync(p);
                return `${s.ino}:${s.size}:${s.mtime?.getTime()}`;
              } catch {
                return "none";
              }
            };
            const subject: Subject<T> = {
              store,
              where: path,
              generation: () =>
                Promise.resolve(`${stat(path)}/${stat(`${path}.journal`)}`),
              putRaw: async (value) => {
                // As another tool would: the whole document, no journal.
                await Deno.remove(`${path}.journal`).catch(() => {});
                await Deno.writeTextFile(path, JSON.stringify(value));
              },
              raw: async () => {
                // The document as lockbox's own reader of the files sees it.
                try {
                  Deno.statSync(path);
                } catch {
                  return undefined;
                }
                return await new JsonStore<unknown>(path, {
                  initial: undefined,
                  journal,
                }).read();
              },
            };
            return Promise.resolve(subject);
          });
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }),
  };
}

storeContract(fileStorage(false));
storeContract(fileStorage(true));
