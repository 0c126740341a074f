/**
 * The README and docs/ point at each other and at the tree: a link `[x](docs/runs.md#evaluating-a-run)`
 * must reach an existing file and one of its headings (GitHub's anchor of it), and a path in code
 * spans such as `recipes/acdc-cpu-dicece/` must exist, so that a renamed file or heading shows
 * here instead of as a dead link on the front page.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { documentFiles, REPO_ROOT as ROOT } from "../app/doc_tables.ts";

/** GitHub's anchor of a heading: lower case, punctuation dropped (not `-`), spaces to `-`. */
export function headingAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, "").replaceAll(" ", "-");
}

/** Markdown without its fenced code blocks (a `#` line there is no heading, a link no link). */
function withoutFences(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, "");
}

/** The anchors of a document's headings. */
export function anchorsOf(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of withoutFences(text).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    out.add(headingAnchor(m[1]));
  }
  return out;
}

/** Top-level folders whose paths the documents name in code spans. */
const TREE =
  /`((?:app|bench|core|docs|examples|io|plugins|recipes|results|runtime|tests|web)\/[^`\s]*)`/g;

/**
 * What in `text` (the document at `file`, relative to `root`) points nowhere: relative links to
 * a missing file or heading, and code-span paths of the tree that do not exist (paths with
 * placeholders such as `<method>` or globs are not checked).
 */
export function deadReferences(
  text: string,
  file: string,
  root: string,
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): string[] {
  const dead: string[] = [];
  const prose = withoutFences(text);
  for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    const link = m[1];
    if (/^[a-z]+:/i.test(link)) continue; // http:, https:, mailto:
    const [path, anchor] = link.split("#", 2);
    const target = path ? normalize(join(dirname(file), path)) : file;
    if (!existsSync(join(root, target))) {
      dead.push(`${file}: link ${link}: no file ${target}`);
      continue;
    }
    if (anchor && target.endsWith(".md") && !anchorsOf(read(join(root, target))).has(anchor)) {
      dead.push(`${file}: link ${link}: no heading with anchor #${anchor} in ${target}`);
    }
  }
  for (const m of prose.matchAll(TREE)) {
    const path = m[1].split(":")[0];
    if (/[<>*{}$]/.test(path)) continue;
    if (!existsSync(join(root, path))) dead.push(`${file}: \`${m[1]}\`: no such path`);
  }
  return dead;
}

Deno.test("every link and tree path in README.md and docs/ reaches a file (and a heading)", async () => {
  const dead = (await documentFiles(ROOT)).flatMap((f) =>
    deadReferences(readFileSync(join(ROOT, f), "utf8"), f, ROOT)
  );
  assert.deepEqual(dead, [], `dead references:\n${dead.join("\n")}`);
});

Deno.test("deadReferences finds a missing file, a missing heading and a missing tree path", () => {
  assert.equal(
    headingAnchor("ACDC, protocol v2 (Dice + cross-entropy): `recipes/acdc-cpu-dicece/`"),
    "acdc-protocol-v2-dice--cross-entropy-recipesacdc-cpu-dicece",
  );
  const text = [
    "# Top",
    "[ok](docs/runs.md) [ok too](#top) [web](https://example.org/x#y) `recipes/ours-kl.yaml`",
    "[gone](docs/no-such-page.md) [no heading](#nowhere) `recipes/no-such.yaml` `results/<p>/x`",
    "```sh",
    "# not a heading",
    "[in code](nowhere.md)",
    "```",
  ].join("\n");
  const dead = deadReferences(text, "README.md", ROOT, () => text);
  assert.deepEqual(dead, [
    "README.md: link docs/no-such-page.md: no file docs/no-such-page.md",
    "README.md: link #nowhere: no heading with anchor #nowhere in README.md",
    "README.md: `recipes/no-such.yaml`: no such path",
  ]);
  assert.equal(anchorsOf(text).has("not-a-heading"), false);
});
