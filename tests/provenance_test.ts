/**
 * The framework's commit recorded in summary.json (core/provenance.ts): read from `.git` files in
 * each layout git writes, checked against `git rev-parse HEAD` where git is installed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { frameworkDir, gitCommit, runEnvironment } from "../core/provenance.ts";

const A = "0123456789abcdef0123456789abcdef01234567";
const B = "fedcba9876543210fedcba9876543210fedcba98";

async function write(path: string, text: string): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
}

Deno.test("provenance: the commit of a branch (loose or packed ref), a detached HEAD, a gitdir file and a worktree", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // no .git at all
    assert.equal(await gitCommit(join(dir, "none")), null);
    // a branch with a loose ref
    const loose = join(dir, "loose");
    await write(join(loose, ".git", "HEAD"), "ref: refs/heads/main\n");
    await write(join(loose, ".git", "refs", "heads", "main"), `${A}\n`);
    assert.equal(await gitCommit(loose), A);
    // a branch whose ref was packed (the loose file is gone)
    const packed = join(dir, "packed");
    await write(join(packed, ".git", "HEAD"), "ref: refs/heads/dev\n");
    await write(
      join(packed, ".git", "packed-refs"),
      `# pack-refs with: peeled fully-peeled sorted\n${B} refs/heads/main\n${A} refs/heads/dev\n`,
    );
    assert.equal(await gitCommit(packed), A);
    // detached HEAD
    const detached = join(dir, "detached");
    await write(join(detached, ".git", "HEAD"), `${B}\n`);
    assert.equal(await gitCommit(detached), B);
    // .git as a file pointing elsewhere (submodules), relative path
    const sub = join(dir, "sub");
    await write(join(sub, ".git"), "gitdir: ../loose/.git\n");
    assert.equal(await gitCommit(sub), A);
    // a worktree: HEAD in its own folder, refs in the common one
    const wt = join(dir, "wt");
    await write(join(dir, "main-git", "worktrees", "wt", "HEAD"), "ref: refs/heads/feature\n");
    await write(join(dir, "main-git", "worktrees", "wt", "commondir"), "../..\n");
    await write(join(dir, "main-git", "refs", "heads", "feature"), `${B}\n`);
    await write(join(wt, ".git"), `gitdir: ${join(dir, "main-git", "worktrees", "wt")}\n`);
    assert.equal(await gitCommit(wt), B);
    // a branch with no commit yet, and a HEAD that is not a commit
    const empty = join(dir, "empty");
    await write(join(empty, ".git", "HEAD"), "ref: refs/heads/main\n");
    assert.equal(await gitCommit(empty), null);
    await write(join(empty, ".git", "HEAD"), "garbage\n");
    assert.equal(await gitCommit(empty), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("provenance: this checkout's commit is what git rev-parse HEAD says", async () => {
  const root = frameworkDir();
  assert.ok(root !== null);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("git", { args: ["-C", root, "rev-parse", "HEAD"] }).output();
  } catch {
    console.log("skipped: git is not installed");
    return;
  }
  if (!out.success) {
    console.log(`skipped: ${root} is not a git checkout`);
    return;
  }
  const expected = new TextDecoder().decode(out.stdout).trim();
  assert.equal(await gitCommit(root), expected);
  const env = await runEnvironment();
  assert.equal(env.commit, expected);
  assert.equal(env.deno, Deno.version.deno);
  assert.match(env.tfjs, /^\d+\.\d+\.\d+$/);
});
