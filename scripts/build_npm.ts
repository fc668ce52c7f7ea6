// `deno task build:npm`: the npm package for Node.js in dist/npm/ — an ES
// module bundle of mod.ts, cli.ts and src/postgres/mod.ts with shared
// chunks (the runtime layer chooses Node's functions when it loads), the
// same chunks as CommonJS (`.cjs`, for `require`), `.d.ts` and `.d.cts`
// types from a declaration build with TypeScript's compiler, and a
// package.json whose `bin` is the lockbox CLI. koffi (FFI, through which
// Node calls flock(2)) is a dependency: its prebuilt binaries come as
// per-platform optional dependencies, so nothing is compiled on install
// (`npm install --ignore-scripts` works). pg is an
// optional peer dependency: only `@lockbox/lockbox/postgres` loads it.
//
// TypeScript and Node's types come from npm (the versions pinned below),
// installed by `npm` itself into dist/npm-tools/, so npm's own
// configuration decides where packages come from.
//
// With --install, it also runs `npm install` in dist/npm, so that the
// package can be used in place (the Node tests do).

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { run as runIn } from "./_run.ts";

const root = new URL("../", import.meta.url);
const out = new URL("dist/npm/", root);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
const tools = new URL("dist/npm-tools/", root);
// The declaration build's tools, from npm: pinned here, not in deno.json's
// imports, where Deno would fetch them for every task and an `@types/node`
// would replace the Node types `deno check` uses.
const TYPESCRIPT = "5.9.3";
const NODE_TYPES = "20.19.43";

/** An npm version from deno.json's imports: `npm:pg@8.23.1` gives 8.23.1. */
function npmVersion(name: string): string {
  const match = /^npm:(?:@[^/]+\/)?[^@]+@(.+)$/.exec(
    config.imports[name] ?? "",
  );
  if (!match) throw new Error(`No npm version in deno.json for '${name}'`);
  return match[1];
}

function run(command: string, args: string[], cwd = root): Promise<void> {
  return runIn(command, args, cwd);
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
  "--external=koffi",
  "--external=pg",
  `--outdir=${fileURLToPath(out)}`,
  "mod.ts",
  "cli.ts",
  "src/postgres/mod.ts",
]);
await commonJs();
await declarations();

// The CLI runs under Node: swap Deno's shebang for Node's.
const cliPath = new URL("cli.js", out);
const cli = (await Deno.readTextFile(cliPath)).replace(/^#!.*\n/, "");
await Deno.writeTextFile(cliPath, `#!/usr/bin/env node\n${cli}`);
await Deno.chmod(cliPath, 0o755);

/** Both module systems' files of one entry point. */
function entry(js: string, types: string) {
  const cjs = js.replace(/\.js$/, ".cjs");
  const ctypes = types.replace(/\.d\.ts$/, ".d.cts");
  return {
    import: { types, default: js },
    require: { types: ctypes, default: cjs },
  };
}
const pg = npmVersion("pg");
const pkg = {
  name: config.name,
  version: config.version,
  description:
    "Cross-process file locks (flock) and JSON stores that never lose an update, for Node.js",
  license: config.license,
  type: "module",
  main: "./mod.cjs",
  module: "./mod.js",
  types: "./types/mod.d.ts",
  exports: {
    ".": entry("./mod.js", "./types/mod.d.ts"),
    "./postgres": entry(
      "./src/postgres/mod.js",
      "./types/src/postgres/mod.d.ts",
    ),
    "./package.json": "./package.json",
  },
  bin: { lockbox: "./cli.js" },
  files: [
    "*.js",
    "*.cjs",
    "src/",
    "types/",
    "README.md",
    "docs/",
    "LICENSE",
  ],
  engines: { node: ">=20" },
  os: ["linux", "darwin", "freebsd", "win32"],
  dependencies: { koffi: npmVersion("koffi") },
  // Only `@lockbox/lockbox/postgres` needs pg; a file-only project does not
  // install it. (A dev dependency too, so the package's own install, which
  // the Node tests use, has it.)
  peerDependencies: { pg: `^${pg}` },
  peerDependenciesMeta: { pg: { optional: true } },
  devDependencies: { pg },
};
await Deno.writeTextFile(
  new URL("package.json", out),
  JSON.stringify(pkg, null, 2) + "\n",
);
for (const file of ["README.md", "LICENSE"]) {
  await Deno.copyFile(new URL(file, root), new URL(file, out));
}
// The README links its reference pages as docs/<topic>.md: ship them beside it.
await Deno.mkdir(new URL("docs/", out));
for await (const entry of Deno.readDir(new URL("docs/", root))) {
  if (entry.isFile && entry.name.endsWith(".md")) {
    await Deno.copyFile(
      new URL(`docs/${entry.name}`, root),
      new URL(`docs/${entry.name}`, out),
    );
  }
}
console.log(`wrote ${fileURLToPath(out)} (${pkg.name}@${pkg.version})`);

if (Deno.args.includes("--install")) {
  await run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--loglevel=error"],
    out,
  );
}

/**
 * Writes a CommonJS twin (`x.cjs`) of every module of the bundle but the CLI,
 * importing the other twins, so `require` gets one copy of each class, as
 * `import` does. The runtime layer's choice, a top-level `await import()` in
 * the ES modules, becomes a `require` of the same chunk.
 */
async function commonJs(): Promise<void> {
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const item of Deno.readDir(dir)) {
      const path = join(dir, item.name);
      if (item.isDirectory && item.name !== "node_modules") await walk(path);
      else if (item.name.endsWith(".js") && item.name !== "cli.js") {
        files.push(path);
      }
    }
  };
  await walk(fileURLToPath(out));
  // runtime/mod.ts's one top-level await: Deno's layer is imported
  // statically, Node's on Node only (CommonJS: a require).
  const choice = /_onDeno \? (\w+) : await import\("(\.\/node-\w+)\.js"\)/g;
  let choices = 0;
  try {
    for (const path of files) {
      let code = await Deno.readTextFile(path);
      code = code.replace(choice, (_, deno, node) => {
        choices++;
        return `_onDeno ? ${deno} : require("${node}.cjs")`;
      });
      code = code.replace(
        /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s*)"(\.{1,2}\/[^"]+)\.js"/g,
        '$1"$2.cjs"',
      );
      const result = await esbuild.transform(code, {
        loader: "js",
        format: "cjs",
        platform: "node",
        target: "node20",
        sourcefile: path,
        // import.meta does not exist in CommonJS: the file's own URL.
        define: { "import.meta.url": "__lockbox_module_url" },
        banner:
          'const __lockbox_module_url = require("node:url").pathToFileURL(__filename).href;',
        logLevel: "error",
      });
      if (/\bimport\.meta\b/.test(result.code)) {
        throw new Error(`${path}: import.meta left in its CommonJS twin`);
      }
      await Deno.writeTextFile(path.replace(/\.js$/, ".cjs"), result.code);
    }
  } finally {
    await esbuild.stop();
  }
  if (choices !== 1) {
    throw new Error(
      `Expected the runtime layer's choice once in the bundle, found it ${choices} times: the CommonJS twin needs scripts/build_npm.ts updated`,
    );
  }
}

/** Installs TypeScript and Node's types with npm, if not there yet. */
async function typeScript(): Promise<string> {
  const wanted = {
    typescript: TYPESCRIPT,
    "@types/node": NODE_TYPES,
  };
  const manifest = JSON.stringify(
    { private: true, devDependencies: wanted },
    null,
    2,
  );
  const path = new URL("package.json", tools);
  const installed = await Deno.readTextFile(path).catch(() => "");
  const tsc = fileURLToPath(
    new URL("node_modules/typescript/bin/tsc", tools),
  );
  const present = await Deno.stat(tsc).then(() => true, () => false);
  if (installed !== manifest || !present) {
    await Deno.mkdir(tools, { recursive: true });
    await Deno.writeTextFile(path, manifest);
    await run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--loglevel=error"],
      tools,
    );
  }
  return tsc;
}

/**
 * `.d.ts` files of the two library entry points and every module they
 * reach, from TypeScript's declaration emit (one file per module, so a class
 * the two entry points share is declared once), with `.ts` imports renamed
 * `.js`, and `.d.cts` twins importing `.cjs` for `require`. Then the result
 * is compiled on its own, strict and without skipLibCheck: a missing module
 * or a broken declaration fails the build.
 */
async function declarations(): Promise<void> {
  const tsc = await typeScript();
  const emitted = await Deno.makeTempDir({ prefix: "lockbox_types_" });
  try {
    // --noCheck: the declarations come from the explicit types of the
    // exports (JSR's "no slow types"), so the emit needs no type check of
    // the implementation, whose Deno runtime file Node's types cannot check.
    const typeRoots = [fileURLToPath(new URL("node_modules/@types", tools))];
    await tsconfigRun(tsc, emitted, {
      compilerOptions: {
        noCheck: true,
        declaration: true,
        emitDeclarationOnly: true,
        allowImportingTsExtensions: true,
        strict: true,
        target: "esnext",
        module: "nodenext",
        moduleResolution: "nodenext",
        lib: ["esnext"],
        types: ["node"],
        typeRoots,
        rootDir: fileURLToPath(root),
        outDir: emitted,
      },
      files: ["mod.ts", "src/postgres/mod.ts"].map((file) =>
        fileURLToPath(new URL(file, root))
      ),
    });
    const target = fileURLToPath(new URL("types/", out));
    const walk = async (dir: string): Promise<void> => {
      for await (const item of Deno.readDir(dir)) {
        const path = join(dir, item.name);
        if (item.isDirectory) {
          await walk(path);
          continue;
        }
        const text = await Deno.readTextFile(path);
        const dest = join(target, relative(emitted, path));
        await Deno.mkdir(dirname(dest), { recursive: true });
        const specifier = /(["'])(\.{1,2}\/[^"'\s]+)\.ts\1/g;
        await Deno.writeTextFile(dest, text.replace(specifier, "$1$2.js$1"));
        await Deno.writeTextFile(
          dest.replace(/\.d\.ts$/, ".d.cts"),
          text.replace(specifier, "$1$2.cjs$1"),
        );
      }
    };
    await walk(emitted);
  } finally {
    await Deno.remove(emitted, { recursive: true });
  }
  await tsconfigRun(tsc, fileURLToPath(out), {
    compilerOptions: {
      noEmit: true,
      strict: true,
      skipLibCheck: false,
      module: "nodenext",
      moduleResolution: "nodenext",
      lib: ["es2022", "esnext.disposable"],
      types: ["node"],
      typeRoots: [fileURLToPath(new URL("node_modules/@types", tools))],
    },
    files: [
      "types/mod.d.ts",
      "types/mod.d.cts",
      "types/src/postgres/mod.d.ts",
      "types/src/postgres/mod.d.cts",
    ].map((file) => fileURLToPath(new URL(file, out))),
  });
}

/** Runs tsc on a tsconfig.json written to a temporary directory. */
async function tsconfigRun(
  tsc: string,
  cwd: string,
  tsconfig: unknown,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lockbox_tsconfig_" });
  try {
    const project = join(dir, "tsconfig.json");
    await Deno.writeTextFile(project, JSON.stringify(tsconfig));
    await run("node", [tsc, "--project", project], new URL(`file://${cwd}/`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
