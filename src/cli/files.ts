// `lockbox files`: seed 002's file checkout by user.

import type { Command } from "commander";
import { FileService } from "../seeds/checkout.ts";
import { _json, _print } from "./_output.ts";
import { _usingDb } from "./_database.ts";

/** Adds `lockbox files` to the program. */
export function _addFiles(program: Command): void {
  const files = program.command("files")
    .description(
      "File checkout: check a repository's files out to one user at a time and back in (seed 002)",
    )
    .requiredOption("--repo <dir>", "the repository directory")
    .requiredOption("--registry <file>", "the checkout registry")
    .option("--extension <ext>", "the files' extension", ".mcam")
    .option(
      "--db <url>",
      "keep the registry on this PostgreSQL database (a postgres:// URL, or 'env'): --registry is then its document name; the files stay in --repo",
    );
  /** Runs `fn` on the file service, its registry a file or a document. */
  const withService = <R>(fn: (service: FileService) => Promise<R>) => {
    const o = files.opts();
    return _usingDb(o, (backend) =>
      fn(
        new FileService(o.repo, o.registry, {
          extension: o.extension,
          backend,
        }),
      ));
  };
  files.command("list").description("List the files with who has them")
    .option("--json", "print as JSON")
    .action((options) =>
      withService(async (service) => {
        const list = await service.filesWithStatus();
        if (options.json) return _json(list);
        for (const f of list) {
          _print(
            [
              f.name,
              String(f.sizeBytes),
              f.modified.toISOString(),
              f.status === "checked_out"
                ? `checked out by ${f.lockedBy}`
                : "available",
            ].join("\t"),
          );
        }
      })
    );
  files.command("checkout").argument("<name>")
    .description("Check a file out")
    .requiredOption("--user <user>", "who takes it")
    .option("-m, --message <message>", "why", "")
    .action((name: string, options) =>
      withService(async (service) => {
        await service.checkout(name, options.user, options.message);
      })
    );
  files.command("checkin").argument("<name>")
    .description("Check a file back in")
    .requiredOption("--user <user>", "who returns it")
    .action((name: string, options) =>
      withService((service) => service.checkin(name, options.user))
    );
}
