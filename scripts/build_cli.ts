// `deno task build:cli`: the lockbox CLI for Deno as JavaScript, in
// dist/deno/ — cli.ts and every module it can import, bundled by esbuild
// (`deno bundle`) into chunks, with commander and pg left as `npm:` imports.
// `deno task install:cli` installs it. It is the same program as cli.ts and
// starts faster: Deno loads a TypeScript module through its emit cache,
// whose inline source map (with the whole source) it reads too, and the
// chunks are plain JavaScript without comments, about a quarter of the
// bytes `lockbox run` loads from source. See ARCHITECTURE.md, "The built
// CLI", and docs/benchmarks.md, "CLI start-up".
//
// The bundle keeps cli.ts's dynamic imports as dynamic imports of chunks:
// `lockbox run` loads its own few, and `--unstable-lazy-dynamic-imports`
// (on the `#!` line) keeps Deno from reading the rest at start. The `#!`
// line also gets `--no-config`: the built CLI needs no deno.json, and must
// not take on the configuration (import map, lock file) of the directory
// it runs in.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./_run.ts";

const root = new URL("../", import.meta.url);
const out = new URL("dist/deno/", root);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));

/** deno.json's npm imports: `commander` gives `npm:commander@14.0.3`. */
const npmImports = Object.fromEntries(
  Object.entries(config.imports as Record<string, string>)
    .filter(([, target]) => target.startsWith("npm:")),
);

await Deno.remove(out, { recursive: true }).catch(() => {});
await run(Deno.execPath(), [
  "bundle",
  "--quiet",
  "--platform=deno",
  "--format=esm",
  "--code-splitting",
  ...Object.keys(npmImports).map((name) => `--external=${name}`),
  `--outdir=${fileURLToPath(out)}`,
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
let files = 0;
for await (const entry of Deno.readDir(out)) {
  if (!entry.isFile || !entry.name.endsWith(".js")) continue;
  files++;
  const path = join(fileURLToPath(out), entry.name);
  const code = await Deno.readTextFile(path);
  await Deno.writeTextFile(
    path,
    code.replace(bare, (_, before, name) => `${before}"${npmImports[name]}"`),
  );
}

const cliPath = new URL("cli.js", out);
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
console.log(`wrote ${fileURLToPath(cliPath)} (${files} files)`);
