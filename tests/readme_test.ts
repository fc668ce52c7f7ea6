// The README and its pages in docs/: the links between them lead somewhere,
// the commands CI relies on stay in the README, and its quick start runs as
// written from a project of its own.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { acquireInstanceLock } from "../mod.ts";
import { output, withTempDir } from "./_helpers.ts";

const root = new URL("../", import.meta.url);

async function docsPages(): Promise<string[]> {
  const pages: string[] = [];
  for await (const entry of Deno.readDir(new URL("docs/", root))) {
    if (entry.isFile && entry.name.endsWith(".md")) pages.push(entry.name);
  }
  return pages.sort();
}

/** The text of a Markdown file outside its fenced code blocks. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
}

/** GitHub's anchors for a page's headings. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, heading] of prose(text).matchAll(/^#{1,6} +(.+)$/gm)) {
    const slug = heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    result.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return result;
}

Deno.test("README.md links every docs/ page, and every relative link in README.md and docs/ leads to a file and heading that exist", async () => {
  const files = ["README.md", ...(await docsPages()).map((p) => `docs/${p}`)];
  const texts = new Map<string, string>();
  for (const file of files) {
    texts.set(file, await Deno.readTextFile(new URL(file, root)));
  }
  const linkedFromReadme = new Set<string>();
  const broken: string[] = [];
  for (const [file, text] of texts) {
    const base = new URL(file, root);
    for (const [, target] of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [path, anchor] = target.split("#");
      const url = new URL(path || file, path ? base : root);
      const relative = url.pathname.slice(root.pathname.length);
      if (file === "README.md") linkedFromReadme.add(relative);
      const linked = texts.get(relative);
      if (linked === undefined) {
        broken.push(`${file}: ${target} (no such page)`);
      } else if (anchor && !anchors(linked).has(anchor)) {
        broken.push(`${file}: ${target} (no such heading)`);
      }
    }
  }
  assert.deepEqual(broken, []);
  const unlinked = files.filter((f) =>
    f.startsWith("docs/") && !linkedFromReadme.has(f)
  );
  assert.deepEqual(unlinked, [], "docs/ pages the README never links");
});

Deno.test("README.md names the set-up commands and the test command CI runs", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const ci = await Deno.readTextFile(new URL(".ci/run", root));
  // CI runs "exactly the test command from README.md".
  const ciTest = ci.match(/npx --yes deno@[\d.]+ task test/)?.[0];
  assert.ok(ciTest, ".ci/run runs no test task");
  for (
    const command of [
      ciTest,
      ciTest.replace(/task test$/, "task demo"),
      "deno task test",
    ]
  ) {
    assert.ok(readme.includes(command), `README.md lacks '${command}'`);
  }
});

Deno.test("README.md's quick start keeps every update from 8 processes of a project that links the checkout", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const blocks = [...readme.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)];
  const [update, nightly] = blocks.filter(([, lang]) => lang === "ts")
    .map(([, , code]) => code);
  const config = blocks.find(([, lang]) => lang === "json")?.[2];
  const command = readme.match(/`(deno run [^`]*update\.ts)`/)?.[1];
  assert.ok(update?.includes("JsonStore") && nightly && config && command);
  await withTempDir(async (dir) => {
    // The README's project sits next to the checkout; this one links it where
    // it is.
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      config.replace('"../lockbox"', JSON.stringify(fileURLToPath(root))),
    );
    await Deno.writeTextFile(`${dir}/update.ts`, update);
    await Deno.writeTextFile(`${dir}/nightly.ts`, nightly);
    const [deno, ...args] = command.split(" ");
    assert.equal(deno, "deno");
    const run = (script: string) =>
      output(Deno.execPath(), {
        args: [...args.slice(0, -1), script],
        cwd: dir,
        env: { NO_COLOR: "1" },
      });
    const first = await run("update.ts"); // resolves the link once
    assert.equal(first.code, 0, new TextDecoder().decode(first.stderr));
    const rest = await Promise.all(
      Array.from({ length: 7 }, () => run("update.ts")),
    );
    for (const r of rest) {
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    }
    const jobs = JSON.parse(await Deno.readTextFile(`${dir}/jobs.json`));
    assert.equal(jobs.runs, 8);
    assert.equal(jobs.queue.length, 8);

    // The cron job: with another instance running it leaves quietly (exit 0
    // from the LockBusyError branch, not a thrown error).
    {
      await using _running = await acquireInstanceLock(`${dir}/nightly.lock`);
      const busy = await run("nightly.ts");
      assert.equal(busy.code, 0, new TextDecoder().decode(busy.stderr));
    }
    const free = await run("nightly.ts");
    assert.equal(free.code, 0, new TextDecoder().decode(free.stderr));
  });
});
