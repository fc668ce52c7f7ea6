// `deno task build:cli`: the lockbox CLI for Deno as JavaScript, in
// dist/deno/ — cli.ts and every module it can import, bundled by esbuild
// (`deno bundle`) into chunks, with deno.json's npm packages (commander, pg,
// yaml) left as `npm:` imports. `deno task install:cli` installs it. It is
// the same program as cli.ts and starts faster: Deno loads a TypeScript
// module through its emit cache, whose inline source map (with the whole
// source) it reads too, and the chunks are plain JavaScript, types and most
// comments gone. See ARCHITECTURE.md, "The built CLI", and
// docs/benchmarks.md, "CLI start-up".
//
// The bundle keeps cli.ts's dynamic imports as dynamic imports of chunks:
// `lockbox run` loads its own few, and `--unstable-lazy-dynamic-imports`
// (on the `#!` line) keeps Deno from reading the rest at start. The `#!`
// line also gets `--no-config`: the built CLI needs no deno.json, and must
// not take on the configuration (import map, lock file) of the directory
// it runs in.
//
// An installed `lockbox` runs dist/deno/cli.js in place, so a build never
// leaves it without a program: it is made in dist/deno-next/ and moved in
// file by file, chunks first (their names carry a hash of their content, so
// one of the same name is the same file) and cli.js last, each by a rename.
// A failed build changes nothing. The previous build's chunks stay, for a
// process that started on it and has yet to import one; older ones go.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./_run.ts";

const root = new URL("../", import.meta.url);
const out = fileURLToPath(new URL("dist/deno/", root));
const next = fileURLToPath(new URL("dist/deno-next/", root));
/** The files of the build in dist/deno: one name a line. */
const manifest = join(out, ".files");
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));

/** deno.json's npm imports: `commander` gives `npm:commander@14.0.3`. */
const npmImports = Object.fromEntries(
  Object.entries(config.imports as Record<string, string>)
    .filter(([, target]) => target.startsWith("npm:")),
);

await Deno.remove(next, { recursive: true }).catch(() => {});
await run(Deno.execPath(), [
  "bundle",
  "--quiet",
  "--platform=deno",
  "--format=esm",
  "--code-splitting",
  ...Object.keys(npmImports).map((name) => `--external=${name}`),
  `--outdir=${next}`,
  "cli.ts",
], root);

// An import of a bare package name would need deno.json's import map at run
// time: name the package as deno.json does.
const names = Object.keys(npmImports)
  .map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
  .join("|");
const bare = new RegExp(
  `(\\bfrom\\s*|\\bimport\\s*\\(\\s*|\\bimport\\s*)"(${names})"`,
  "g",
);
const built: string[] = [];
for await (const entry of Deno.readDir(next)) {
  if (!entry.isFile || !entry.name.endsWith(".js")) {
    throw new Error(`deno bundle wrote ${entry.name}, which is not a chunk`);
  }
  built.push(entry.name);
  const path = join(next, entry.name);
  const code = await Deno.readTextFile(path);
  await Deno.writeTextFile(
    path,
    code.replace(bare, (_, before, name) => `${before}"${npmImports[name]}"`),
  );
}

const cliPath = join(next, "cli.js");
const cli = await Deno.readTextFile(cliPath);
const shebang = /^#!\/usr\/bin\/env -S deno run /;
if (!shebang.test(cli)) {
  throw new Error(
    "dist/deno/cli.js does not start with cli.ts's `#!/usr/bin/env -S deno run` line: scripts/build_cli.ts needs updating",
  );
}
await Deno.writeTextFile(
  cliPath,
  cli.replace(shebang, "#!/usr/bin/env -S deno run --no-config "),
);
await Deno.chmod(cliPath, 0o755);

// Into place: the chunks, then cli.js, then the list; then what neither
// this build nor the one before it has.
const previous = await Deno.readTextFile(manifest)
  .then((text) => text.split("\n").filter((name) => name !== ""))
  .catch(() => [] as string[]);
await Deno.mkdir(out, { recursive: true });
for (const name of [...built.filter((name) => name !== "cli.js"), "cli.js"]) {
  await Deno.rename(join(next, name), join(out, name));
}
await Deno.writeTextFile(`${manifest}.new`, built.sort().join("\n") + "\n");
await Deno.rename(`${manifest}.new`, manifest);
await Deno.remove(next, { recursive: true });
const keep = new Set([...built, ...previous, ".files"]);
for await (const entry of Deno.readDir(out)) {
  if (!keep.has(entry.name)) await Deno.remove(join(out, entry.name));
}
console.log(`wrote ${join(out, "cli.js")} (${built.length} files)`);
