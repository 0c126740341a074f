/**
 * What code a run was made with, recorded in its `summary.json` as `environment`: the Deno and
 * TensorFlow.js versions, and the framework's git commit where it runs from a git checkout.
 *
 * The commit is that of the checkout's `HEAD`; uncommitted changes are not recorded. `deno task
 * run` (app/launcher.ts) reads it and hands it to the run in {@linkcode COMMIT_ENV}, since the run
 * itself is not granted the `.git` folder; a run started otherwise looks for `.git` beside
 * `core/` and records `null` where it cannot read it (no checkout, imported by URL, no
 * permission).
 *
 * @module
 */
import { tf } from "../deps.ts";

/** The variable through which the launcher passes the framework's commit to a run. */
export const COMMIT_ENV = "MISSL_COMMIT";

/** `summary.json`'s `environment`. */
export interface RunEnvironment {
  /** `Deno.version.deno`. */
  deno: string;
  /** `tf.version_core`. */
  tfjs: string;
  /** The framework checkout's commit (40 hex digits), or `null` where it is not known. */
  commit: string | null;
}

const SHA = /^[0-9a-f]{40}$/;

async function readText(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return null;
  }
}

/**
 * The commit checked out in the git repository at `dir` (a folder holding `.git`, as a folder or
 * as a `gitdir:` file), or `null` when there is none or it cannot be read. Reads files only: no
 * `git` process.
 */
export async function gitCommit(dir: string): Promise<string | null> {
  let gitDir = `${dir}/.git`;
  const pointer = await readText(gitDir);
  if (pointer?.startsWith("gitdir:")) {
    const target = pointer.slice("gitdir:".length).trim();
    gitDir = target.startsWith("/") ? target : `${dir}/${target}`;
  }
  const head = await readText(`${gitDir}/HEAD`);
  if (head === null) return null;
  if (SHA.test(head)) return head;
  const ref = /^ref:\s*(\S+)$/.exec(head)?.[1];
  if (!ref) return null;
  // A worktree keeps its HEAD in its own folder and its refs in the common one.
  const common = await readText(`${gitDir}/commondir`);
  const dirs = common === null
    ? [gitDir]
    : [gitDir, common.startsWith("/") ? common : `${gitDir}/${common}`];
  for (const d of dirs) {
    const loose = await readText(`${d}/${ref}`);
    if (loose !== null && SHA.test(loose)) return loose;
    const packed = await readText(`${d}/packed-refs`);
    for (const line of packed?.split("\n") ?? []) {
      const [sha, name] = line.trim().split(/\s+/);
      if (name === ref && SHA.test(sha)) return sha;
    }
  }
  return null;
}

function envCommit(): string | null {
  try {
    const v = Deno.env.get(COMMIT_ENV);
    return v !== undefined && SHA.test(v) ? v : null;
  } catch {
    return null; // not granted
  }
}

/** The framework's own folder, where it runs from local files (else `null`). */
export function frameworkDir(): string | null {
  const url = new URL("..", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname).replace(/\/$/, "") : null;
}

/** This process's {@linkcode RunEnvironment}. */
export async function runEnvironment(): Promise<RunEnvironment> {
  let commit = envCommit();
  const dir = frameworkDir();
  if (commit === null && dir !== null) commit = await gitCommit(dir);
  return { deno: Deno.version.deno, tfjs: tf.version_core, commit };
}
