/**
 * The runs a table or a plot is made of: run directories found under paths, globs or folders
 * (finished ones have a `summary.json`, unfinished ones only a `recipe.yaml`), and their
 * summaries read and checked.
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import { RunDir } from "../core/run_dir.ts";
import type { Summary } from "../core/trainer.ts";
import { isDirectory } from "./_fs.ts";
import { expandGlob } from "./glob.ts";

/**
 * The fields of `summary.json` a table reads. `seconds_wall` is missing in summaries written
 * before it existed, which have `seconds` (the training steps only) instead; the source-grid
 * Dice (`dice_source`, `dice_source_mean`, `per_volume[id].dice_source`) in those written before
 * them.
 */
export type RunSummary =
  & Pick<Summary, "method" | "dataset" | "seed" | "dice" | "dice_mean" | "per_volume">
  & Partial<Pick<Summary, "seconds_wall" | "dice_source" | "dice_source_mean" | "best">>
  & { seconds?: number };

/** One finished run: its directory and `summary.json`. */
export interface RunResult {
  dir: string;
  summary: RunSummary;
}

/**
 * The run directories under `paths` (each a run directory, a glob, or a folder searched for run
 * directories): those with a `summary.json` are returned, those with a `recipe.yaml` but no
 * summary (unfinished) are listed in `unfinished`.
 */
export async function findRunDirs(
  paths: string[],
): Promise<{ finished: string[]; unfinished: string[] }> {
  const finished = new Set<string>();
  const unfinished = new Set<string>();
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (await new RunDir(dir).has("summary")) {
      finished.add(dir);
      return;
    }
    if (await new RunDir(dir).has("recipe")) {
      unfinished.add(dir);
      return;
    }
    if (depth >= 6) return;
    const children: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") {
          children.push(`${dir.replace(/\/+$/, "")}/${e.name}`);
        }
      }
    } catch {
      return;
    }
    for (const c of children.sort()) await visit(c, depth + 1);
  };
  for (const pattern of paths) {
    const matches = await expandGlob(pattern);
    if (matches.length === 0) throw new UserError(`No such run directory: ${pattern}`);
    for (const m of matches) {
      if (!(await isDirectory(m))) throw new UserError(`Not a run directory: ${m}`);
      await visit(m.replace(/(.)\/+$/, "$1"), 0);
    }
  }
  return { finished: [...finished], unfinished: [...unfinished] };
}

/** Read and check `<dir>/summary.json`. */
export async function readRunSummary(dir: string): Promise<RunSummary> {
  const file = new RunDir(dir).file("summary");
  let s: RunSummary;
  try {
    s = JSON.parse(await Deno.readTextFile(file));
  } catch (error) {
    throw new UserError(`Cannot read ${file}: ${(error as Error).message}`);
  }
  const ok = s && typeof s.method === "string" && typeof s.dataset === "string" &&
    typeof s.seed === "number" && typeof s.dice === "object" && s.dice !== null &&
    typeof s.dice_mean === "number";
  if (!ok) {
    throw new UserError(
      `${file} is not a run summary (it needs method, dataset, seed, dice and dice_mean)`,
    );
  }
  s.per_volume ??= {};
  return s;
}

/** Find and read the finished runs under `paths`; `log` receives the notes (unfinished runs). */
export async function loadRuns(
  paths: string[],
  log: (line: string) => void = (line) => console.error(line),
): Promise<RunResult[]> {
  const { finished, unfinished } = await findRunDirs(paths);
  for (const dir of unfinished) log(`note: ${dir} has no summary.json (unfinished), left out`);
  if (finished.length === 0) {
    throw new UserError(`No finished run (a directory with summary.json) in ${paths.join(" ")}`);
  }
  const runs: RunResult[] = [];
  for (const dir of finished) runs.push({ dir, summary: await readRunSummary(dir) });
  return runs;
}
