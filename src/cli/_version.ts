// The package version `lockbox --version` prints. A plain module rather than
// an import of deno.json, so that every build (deno compile, the npm bundle,
// each module transpiled on its own as JSR serves Node) carries it; a test
// checks it against deno.json's.

/** lockbox's version, as in deno.json. */
export const VERSION = "0.1.0";
