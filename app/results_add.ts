/**
 * `deno task results:add <run-dir>... --to results/<protocol>`: commit-ready copies of finished
 * runs, as `results/` keeps them: `<to>/<method>/seed<N>/` with the run's `summary.json`,
 * `recipe.yaml` and `metrics.jsonl` gzipped (level 9, no name or time in the header, so the same
 * text always gives the same bytes). A result already there is never replaced: the same files
 * again are a no-op, different ones an error (a changed protocol gets its own folder), except
 * that a summary may gain the source-grid scores it lacked (`eval --grid source --write`, on the
 * run or on one trained again from its recipe and seed): nothing else in it may differ. A run
 * without them is added with a note saying how to add them.
 *
 * @module
 */
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { UserError } from "../core/errors.ts";
import { runScript } from "./run_script.ts";
import { RunDir } from "../core/run_dir.ts";
import { readRunSummary } from "./find_runs.ts";
import { SOURCE_KEYS } from "./source_scores.ts";
import { taskCwd } from "./task_cwd.ts";

/** The three files a committed result holds, by name. */
export type ResultFiles = Record<"summary.json" | "recipe.yaml" | "metrics.jsonl.gz", Uint8Array>;

/** What {@linkcode addResult} did with one run. */
export interface AddedResult {
  /** The run directory. */
  from: string;
  /** `<to>/<method>/seed<N>`. */
  dest: string;
  /**
   * `added`: written; `unchanged`: the same result was already there; `source-grid added`: the
   * result there was this one without its source-grid scores, and its summary now has them.
   */
  state: "added" | "unchanged" | "source-grid added";
  /** Whether its summary has the source-grid Dice (`dice_source`). */
  sourceGrid: boolean;
}

/** `text` gzipped as `results/` keeps it: level 9, header without name or time. */
export function gzipResultText(text: string): Uint8Array {
  return new Uint8Array(gzipSync(new TextEncoder().encode(text), { level: 9 }));
}

/**
 * The files of the finished run in `dir`, as `results/` keeps them.
 *
 * @throws {UserError} When the run is unfinished or lacks its recipe or metrics.
 */
export async function resultFiles(dir: string): Promise<ResultFiles> {
  const run = new RunDir(dir);
  if (!(await run.has("summary"))) {
    throw new UserError(`${dir} is not a finished run (no summary.json)`);
  }
  const metrics = await run.readMetrics();
  if (metrics === null) throw new UserError(`${dir} has no metrics.jsonl`);
  let recipe: Uint8Array;
  try {
    recipe = await Deno.readFile(join(dir, "recipe.yaml"));
  } catch {
    throw new UserError(`${dir} has no recipe.yaml`);
  }
  return {
    "summary.json": await Deno.readFile(run.file("summary")),
    "recipe.yaml": recipe,
    "metrics.jsonl.gz": gzipResultText(metrics),
  };
}

/** Whether two byte arrays are equal. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Whether a committed file holds what `want` would write (a `.gz` compared unzipped). */
async function holds(path: string, name: keyof ResultFiles, want: Uint8Array): Promise<boolean> {
  let have: Uint8Array;
  try {
    have = await Deno.readFile(path);
  } catch {
    return false;
  }
  if (name !== "metrics.jsonl.gz") return sameBytes(have, want);
  try {
    return sameBytes(new Uint8Array(gunzipSync(have)), new Uint8Array(gunzipSync(want)));
  } catch {
    return false;
  }
}

/**
 * Copy the finished run in `dir` into `<to>/<method>/seed<N>/` (method and seed from its
 * summary).
 *
 * @throws {UserError} When the run is unfinished, or another result is already at that place.
 */
export async function addResult(dir: string, to: string): Promise<AddedResult> {
  const files = await resultFiles(dir);
  const summary = await readRunSummary(dir);
  const dest = join(to, summary.method, `seed${summary.seed}`);
  const names = Object.keys(files) as (keyof ResultFiles)[];
  const present = [];
  for (const name of names) {
    try {
      await Deno.stat(join(dest, name));
      present.push(name);
    } catch {
      // not there
    }
  }
  const sourceGrid = summary.dice_source_mean !== undefined;
  if (present.length > 0) {
    const same = await Promise.all(names.map((n) => holds(join(dest, n), n, files[n])));
    if (same.every(Boolean)) return { from: dir, dest, state: "unchanged", sourceGrid };
    if (sourceGrid && await addsOnlySourceGrid(dest, files)) {
      await writeAtomically(join(dest, "summary.json"), files["summary.json"]);
      return { from: dir, dest, state: "source-grid added", sourceGrid };
    }
    const differ = names.filter((_, i) => !same[i]);
    throw new UserError(
      `${dest} already holds another result (${differ.join(", ")} differ${
        differ.length === 1 ? "s" : ""
      }); results are never replaced: a changed protocol gets its own folder`,
    );
  }
  await Deno.mkdir(dest, { recursive: true });
  for (const name of names) await writeAtomically(join(dest, name), files[name]);
  return { from: dir, dest, state: "added", sourceGrid };
}

/** Write `path` through a temporary file beside it, so that a reader never sees half of it. */
async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, path);
}

type Json = Record<string, unknown>;

/** A summary without what `eval --grid source --write` adds (a copy). */
function withoutSourceGrid(summary: Json): Json {
  const out: Json = { ...summary };
  for (const k of [...SOURCE_KEYS, "source_evaluation"]) delete out[k];
  for (const key of ["per_volume", "student"] as const) {
    const part = out[key];
    if (!part || typeof part !== "object") continue;
    if (key === "student") {
      out.student = withoutSourceGrid(part as Json);
      continue;
    }
    out.per_volume = Object.fromEntries(
      Object.entries(part as Record<string, Json>).map(([id, v]) => {
        const { dice_source: _d, hd95_source: _h, ...rest } = v;
        return [id, rest];
      }),
    );
  }
  return out;
}

/**
 * Whether the result at `dest` is this one before its source-grid scores: its summary has none,
 * and this summary less them is that summary, and the recipes are the same (the metrics are not
 * compared: a run trained again to add them has other times, and the committed ones are kept).
 */
async function addsOnlySourceGrid(dest: string, files: ResultFiles): Promise<boolean> {
  let old: Json;
  try {
    old = JSON.parse(await Deno.readTextFile(join(dest, "summary.json")));
  } catch {
    return false;
  }
  if (old.dice_source_mean !== undefined) return false;
  if (!(await holds(join(dest, "recipe.yaml"), "recipe.yaml", files["recipe.yaml"]))) return false;
  const mine = withoutSourceGrid(JSON.parse(new TextDecoder().decode(files["summary.json"])));
  return JSON.stringify(canonical(mine)) === JSON.stringify(canonical(old));
}

/** `value` with object keys sorted, for comparing JSON regardless of key order. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((k) => [k, canonical((value as Json)[k])]),
    );
  }
  return value;
}

/** `deno task results:add <run-dir>... --to <folder>`. */
async function main(argv: string[]): Promise<void> {
  // paths are relative to where the command was typed, as for every task
  const cwd = taskCwd();
  if (cwd !== undefined) Deno.chdir(cwd);
  const args = [...argv];
  const at = args.findIndex((a) => a === "--to" || a.startsWith("--to="));
  let to: string | undefined;
  if (at >= 0) {
    to = args[at].startsWith("--to=") ? args[at].slice(5) : args[at + 1];
    args.splice(at, args[at].startsWith("--to=") ? 1 : 2);
  }
  if (args.includes("-h") || args.includes("--help")) {
    console.log(
      "Usage: deno task results:add <run-dir>... --to results/<protocol>\n\n" +
        "Copy finished runs into <to>/<method>/seed<N>/ (summary.json, recipe.yaml,\n" +
        "metrics.jsonl.gz) as results/ keeps them; an existing different result is an error.\n" +
        "Then: deno task tables:update, and commit.",
    );
    return;
  }
  if (!to) throw new UserError("results:add needs --to <folder> (e.g. --to results/acdc-cpu)");
  const unknown = args.find((a) => a.startsWith("--"));
  if (unknown) throw new UserError(`results:add: unknown option ${unknown} (it takes --to)`);
  if (args.length === 0) throw new UserError("results:add needs at least one run directory");
  for (const dir of args) {
    const r = await addResult(dir.replace(/(.)\/+$/, "$1"), to);
    console.log(`${r.dest}: ${r.state === "unchanged" ? "already there, unchanged" : r.state}`);
    if (!r.sourceGrid) {
      console.error(
        `note: ${r.from} has no source-grid Dice; while it has its latest.ckpt, add them with ` +
          `deno task eval ${r.from} --grid source --write, then add it again (that adds them)`,
      );
    }
  }
}

if (import.meta.main) await runScript(main);
