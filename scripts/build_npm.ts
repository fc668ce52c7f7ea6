// `deno task build:npm`: the npm package for Node.js in dist/npm/ — an ES
// module bundle of mod.ts, cli.ts and src/postgres/mod.ts with shared
// chunks (the runtime layer chooses Node's
// functions when it loads), .d.ts types, and a package.json whose `bin` is the lockbox CLI. fs-ext (flock for Node) stays
// a dependency: it is a native addon, built by npm on install.
//
// With --install, it also runs `npm install` in dist/npm, so that the
// package can be used in place (the Node tests do).

import { fileURLToPath } from "node:url";

const root = new URL("../", import.meta.url);
const out = new URL("dist/npm/", root);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
const FS_EXT = "2.1.1";

async function run(command: string, args: string[], cwd = root): Promise<void> {
  const { success, code } = await new Deno.Command(command, {
    args,
    cwd: fileURLToPath(cwd),
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`${command} ${args.join(" ")} exited ${code}`);
}

await Deno.remove(out, { recursive: true }).catch(() => {});
await Deno.mkdir(out, { recursive: true });

// The same module graph Deno runs: the runtime layer picks Node's functions
// when it loads under Node (src/runtime/mod.ts), so nothing is swapped and
// no import map is added to deno.json's own. One bundle with code
// splitting: the entry points share their modules as chunks, so the
// package has one JsonStore and one StaleFenceError, whichever entry point
// a value came from (separate bundles each had their own copy, and an error
// thrown by a PostgreSQL store failed `instanceof` against the main
// entry's class).
await run(Deno.execPath(), [
  "bundle",
  "--quiet",
  "--platform=node",
  "--format=esm",
  "--code-splitting",
  "--external=fs-ext",
  "--external=pg",
  `--outdir=${fileURLToPath(out)}`,
  "mod.ts",
  "cli.ts",
  "src/postgres/mod.ts",
]);
// Type declarations of the two library entry points (types only: their
// separate copies of a class declaration describe the same shape).
const types = await Deno.makeTempDir({ prefix: "lockbox_types_" });
for (
  const [name, source] of [["mod", "mod.ts"], [
    "postgres",
    "src/postgres/mod.ts",
  ]]
) {
  await run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--platform=node",
    "--format=esm",
    "--external=fs-ext",
    "--external=pg",
    "--declaration",
    `--output=${types}/${name}.js`,
    source,
  ]);
  await Deno.copyFile(`${types}/${name}.d.ts`, new URL(`${name}.d.ts`, out));
}
await Deno.remove(types, { recursive: true });

// The CLI runs under Node: swap Deno's shebang for Node's.
const cliPath = new URL("cli.js", out);
const cli = (await Deno.readTextFile(cliPath)).replace(/^#!.*\n/, "");
await Deno.writeTextFile(cliPath, `#!/usr/bin/env node\n${cli}`);
await Deno.chmod(cliPath, 0o755);

const pkg = {
  name: config.name,
  version: config.version,
  description:
    "Cross-process file locks (flock) and JSON stores that never lose an update, for Node.js",
  license: config.license,
  type: "module",
  main: "./mod.js",
  types: "./mod.d.ts",
  exports: {
    ".": { types: "./mod.d.ts", default: "./mod.js" },
    "./postgres": {
      types: "./postgres.d.ts",
      default: "./src/postgres/mod.js",
    },
  },
  bin: { lockbox: "./cli.js" },
  files: ["*.js", "*.d.ts", "src/", "README.md", "LICENSE"],
  engines: { node: ">=20" },
  os: ["linux", "darwin", "freebsd"],
  dependencies: { "fs-ext": FS_EXT, pg: config.imports.pg.split("@").pop() },
};
await Deno.writeTextFile(
  new URL("package.json", out),
  JSON.stringify(pkg, null, 2) + "\n",
);
for (const file of ["README.md", "LICENSE"]) {
  await Deno.copyFile(new URL(file, root), new URL(file, out));
}
console.log(`wrote ${fileURLToPath(out)} (${pkg.name}@${pkg.version})`);

if (Deno.args.includes("--install")) {
  await run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--loglevel=error"],
    out,
  );
}
