// The rules of ARCHITECTURE.md's "Layers" and "Rooms", read from the code:
// imports only go down the layers, a `_` module is imported only from its
// own folder, and files and functions stay small enough to read.

import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The layers of `src/`, each importing only those before it. */
const LAYERS = ["runtime", "base", "lock", "store", "seeds", "postgres", "cli"];

/** The two runtime twins, each the whole of a runtime's API. */
const TWINS = ["src/runtime/deno.ts", "src/runtime/node.ts"];

const MAX_FILE_LINES = 800;
const MAX_FUNCTION_LINES = 80;

async function sources(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts")) {
        files.set(path, await Deno.readTextFile(join(ROOT, path)));
      }
    }
  };
  await walk("src");
  return files;
}

/** The repository paths a module imports (static and dynamic, relative). */
function importsOf(path: string, text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)) {
    found.push(normalize(join(dirname(path), m[1])));
  }
  return found;
}

const folder = (path: string) => dirname(path);
const layer = (path: string) => LAYERS.indexOf(path.split("/")[1]);

Deno.test("the house: every import in src/ goes down the layers, never up", async () => {
  const up: string[] = [];
  for (const [path, text] of await sources()) {
    assert.notEqual(layer(path), -1, `${path} is in no layer`);
    for (const target of importsOf(path, text)) {
      if (!target.startsWith("src/")) continue;
      if (layer(target) > layer(path)) up.push(`${path} -> ${target}`);
    }
  }
  assert.deepEqual(up, []);
});

Deno.test("the house: a module whose name starts with _ is imported only from its own folder", async () => {
  const crossing: string[] = [];
  for (const [path, text] of await sources()) {
    for (const target of importsOf(path, text)) {
      const name = target.split("/").at(-1)!;
      if (name.startsWith("_") && folder(target) !== folder(path)) {
        crossing.push(`${path} -> ${target}`);
      }
    }
  }
  assert.deepEqual(crossing, []);
});

Deno.test(`the house: no file in src/ is over ${MAX_FILE_LINES} lines but the runtime twins`, async () => {
  const over: string[] = [];
  for (const [path, text] of await sources()) {
    const lines = text.split("\n").length - 1;
    if (lines > MAX_FILE_LINES && !TWINS.includes(path)) {
      over.push(`${path}: ${lines} lines`);
    }
  }
  assert.deepEqual(over, []);
});

/**
 * Named functions and methods with their lengths in lines, from deno fmt's
 * layout: a declaration's body ends at the first `}` at its indentation.
 */
function functionsOf(text: string): { name: string; lines: number }[] {
  const lines = text.split("\n");
  const head =
    /^(\s*)(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?\s+([\w$]+)|(?:(?:static|async|get|set|private|public|protected|override)\s+)*(#?[a-z_$][\w$]*)\s*(?:<[^>]*>)?\()/;
  const notNames = new Set(["if", "for", "while", "switch", "catch", "return"]);
  const found: { name: string; lines: number }[] = [];
  for (const [i, line] of lines.entries()) {
    const m = head.exec(line);
    if (!m) continue;
    const name = m[2] ?? m[3];
    if (notNames.has(name)) continue;
    const indent = m[1];
    let open = -1;
    if (line.trimEnd().endsWith("{")) open = i;
    else if (line.trimEnd().endsWith("(")) {
      // The parameters end at a line of the declaration's indentation:
      // `): T {`, or `): Promise<` with the return type's `> {` after it.
      for (let j = i + 1; j < Math.min(i + 30, lines.length); j++) {
        const at = lines[j].slice(indent.length);
        if (!lines[j].startsWith(indent) || /^\s/.test(at)) continue;
        if (!at.startsWith(")") && !at.startsWith(">")) break;
        if (at.trimEnd().endsWith("{")) {
          open = j;
          break;
        }
      }
    }
    if (open === -1) continue;
    let end = open + 1;
    while (end < lines.length && !lines[end].startsWith(`${indent}}`)) end++;
    found.push({ name, lines: end - i + 1 });
  }
  return found;
}

Deno.test(`the house: no named function in src/ is over ${MAX_FUNCTION_LINES} lines`, async () => {
  const over: string[] = [];
  for (const [path, text] of await sources()) {
    for (const { name, lines } of functionsOf(text)) {
      if (lines > MAX_FUNCTION_LINES) {
        over.push(`${path} ${name}: ${lines} lines`);
      }
    }
  }
  assert.deepEqual(over, []);
});

Deno.test("the house: functionsOf() measures a declaration from its first line to its closing brace", () => {
  const text = [
    "export async function a(",
    "  x: number,",
    "): Promise<void> {",
    "  if (x) {",
    "  }",
    "}",
    "function d(",
    "  x: number,",
    "): Promise<",
    "  number",
    "> {",
    "  return x;",
    "}",
    "class B {",
    "  #c(): void {",
    "    return;",
    "  }",
    "}",
  ].join("\n");
  assert.deepEqual(functionsOf(text), [
    { name: "a", lines: 6 },
    { name: "d", lines: 7 },
    { name: "#c", lines: 3 },
  ]);
});
