// The lockbox build under test: LOCKBOX_NODE_PACKAGE (a directory, such as
// dist/node-src/) or else the npm package in dist/npm/.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The package directory, with a trailing slash. */
export const PACKAGE = resolve(
  process.env.LOCKBOX_NODE_PACKAGE ??
    fileURLToPath(new URL("../../../dist/npm/", import.meta.url)),
) + "/";

/** The package's public API. */
export const lockbox = await import(pathToFileURL(`${PACKAGE}mod.js`).href);

/** The package's `./postgres` entry point, wherever the build puts it. */
export async function lockboxPostgres() {
  const pkg = JSON.parse(readFileSync(`${PACKAGE}package.json`, "utf8"));
  const entry = pkg.exports["./postgres"];
  const file = typeof entry === "string"
    ? entry
    : entry.import?.default ?? entry.default;
  return await import(pathToFileURL(`${PACKAGE}${file}`).href);
}
