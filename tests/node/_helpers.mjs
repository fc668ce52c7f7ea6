// Helpers for the Node test suite, which runs against the built package in
// dist/npm (`deno task build:npm --install` first), or the directory
// LOCKBOX_NODE_PACKAGE names (such as dist/node-src/, every module
// transpiled on its own: `deno task build:node-sources --install`).

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

export { PACKAGE } from "./workers/_lockbox.mjs";
import { PACKAGE } from "./workers/_lockbox.mjs";
export const CLI = `${PACKAGE}cli.js`;

/** How long any wait on a child may take before the test fails. */
export const GUARD_MS = 300_000;

/** Runs `fn` in a fresh temporary directory, removed afterwards. */
export async function withTempDir(fn) {
  const dir = mkdtempSync(`${tmpdir()}/lockbox_node_test_`);
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The absolute path of a worker script. */
export function worker(name) {
  return fileURLToPath(new URL(`./workers/${name}`, import.meta.url));
}

/** A child process whose stdout lines are collected. */
export class Child {
  constructor(command, args, options = {}) {
    this.lines = [];
    this.stderr = "";
    this.process = spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      ...options,
    });
    this.pid = this.process.pid;
    let buffer = "";
    this.process.stdout.setEncoding("utf8").on("data", (chunk) => {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop();
      this.lines.push(...parts);
    });
    this.process.stderr.setEncoding("utf8").on("data", (c) => this.stderr += c);
    this.exited = new Promise((resolve) =>
      this.process.on("close", (code, signal) => resolve({ code, signal }))
    );
  }
  /** Waits for a line starting with `prefix` (120 s guard against hangs). */
  async waitFor(prefix) {
    const deadline = Date.now() + 120_000;
    while (!this.lines.some((l) => l.startsWith(prefix))) {
      if (this.process.exitCode !== null) {
        throw new Error(`child ended without '${prefix}': ${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`no '${prefix}' in time`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  /**
   * Closes stdin and waits for the exit and the end of its output; past
   * `guardMs` it kills the child and throws.
   */
  async finish(guardMs = GUARD_MS) {
    this.process.stdin.end();
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.process.kill("SIGKILL");
        this.process.stdout.destroy();
        this.process.stderr.destroy();
        reject(new Error(`child ${this.pid} did not finish in ${guardMs} ms`));
      }, guardMs);
    });
    try {
      return await Promise.race([this.exited, expired]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Starts a Node worker script. */
export function nodeWorker(name, args, options) {
  return new Child(process.execPath, [worker(name), ...args], options);
}

/** Runs a command to completion: { code, stdout, stderr }. */
export function run(command, args, options = {}) {
  const out = spawnSync(command, args, {
    encoding: "utf8",
    timeout: GUARD_MS,
    killSignal: "SIGKILL",
    ...options,
  });
  if (out.error?.code === "ETIMEDOUT") {
    throw new Error(`${command} did not finish in ${GUARD_MS} ms`);
  }
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}
