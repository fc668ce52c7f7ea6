// `deno task build:node-sources`: what a Node project gets from JSR
// (`npx jsr add @lockbox/lockbox`), built offline in dist/node-src/ — every
// module of the package transpiled on its own to JavaScript, its `.ts`
// imports renamed `.js`, deno.json's bare imports left for npm to resolve,
// and nothing bundled, mapped or swapped. The Node suite runs against it
// (LOCKBOX_NODE_PACKAGE=dist/node-src/) as well as against dist/npm, so a
// module that only works in the bundle fails a test.
//
// With --install, it also runs `npm install` there.

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = fileURLToPath(new URL("../", import.meta.url));
const out = join(root, "dist/node-src");
const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sources(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** `"./x.ts"` and `"../y/z.ts"` become `.js`, as JSR rewrites them for Node. */
function renameImports(code: string): string {
  return code.replace(/(["'])(\.{1,2}\/[^"'\s]+)\.ts\1/g, "$1$2.js$1");
}

await Deno.remove(out, { recursive: true }).catch(() => {});
const files = [join(root, "mod.ts"), join(root, "cli.ts")];
/** The bare specifiers the package's modules import (npm packages). */
const imported = new Set<string>();
for await (const path of sources(join(root, "src"))) files.push(path);
try {
  for (const path of files) {
    const { code } = await esbuild.transform(await Deno.readTextFile(path), {
      loader: "ts",
      format: "esm",
      target: "node20",
      sourcefile: path,
    });
    const target = join(out, relative(root, path)).replace(/\.ts$/, ".js");
    await Deno.mkdir(dirname(target), { recursive: true });
    let text = renameImports(code);
    const bare = /^(?:import|export)\b[^;]*?from\s*"([^".][^":]*)"/gm;
    for (const [, name] of text.matchAll(bare)) imported.add(name);
    for (
      const [, name] of text.matchAll(/\bimport\(\s*"([^".][^":]*)"\s*\)/g)
    ) {
      imported.add(name);
    }
    if (path.endsWith("cli.ts")) {
      text = `#!/usr/bin/env node\n${text.replace(/^#!.*\n/, "")}`;
    }
    await Deno.writeTextFile(target, text);
  }
} finally {
  await esbuild.stop();
}
await Deno.chmod(join(out, "cli.js"), 0o755);

/**
 * What the modules import, at deno.json's versions (`npm:yaml@2.9.1` as
 * `"yaml": "2.9.1"`), and koffi, which Node's runtime layer loads on use.
 */
const dependencies: Record<string, string> = {};
for (const name of [...imported, "koffi"]) {
  const match = /^npm:(?:@[^/]+\/)?[^@]+@(.+)$/.exec(
    config.imports[name] ?? "",
  );
  if (!match) throw new Error(`No npm version in deno.json for '${name}'`);
  dependencies[name] = match[1];
}
const pkg = {
  name: config.name,
  version: config.version,
  private: true,
  type: "module",
  exports: { ".": "./mod.js", "./postgres": "./src/postgres/mod.js" },
  bin: { lockbox: "./cli.js" },
  engines: { node: ">=20" },
  dependencies,
};
await Deno.writeTextFile(
  join(out, "package.json"),
  JSON.stringify(pkg, null, 2) + "\n",
);
console.log(`wrote ${out} (${files.length} modules, no bundle, no swap)`);

if (Deno.args.includes("--install")) {
  const { success, code } = await new Deno.Command("npm", {
    args: ["install", "--no-audit", "--no-fund", "--loglevel=error"],
    cwd: out,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`npm install in ${out} exited ${code}`);
}
