/**
 * The plan of a sweep: several recipes x several seeds, each (recipe, seed) given its
 * deterministic run directory (`<output.dir>/<recipe name>/seed<N>`, or
 * `<--out>/<recipe name>/seed<N>`) once every recipe has loaded and validated, and the state of
 * such a directory (finished, interrupted, new).
 *
 * @module
 */
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { UserError } from "../core/errors.ts";
import { RunDir } from "../core/run_dir.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { registerBuiltins } from "../plugins/mod.ts";

/** One run of a sweep. */
export interface PlannedRun {
  /** The recipe file, as given. */
  recipe: string;
  /** The recipe's name (`name`, else `method`), as used in directory names. */
  name: string;
  seed: number;
  /** The run directory. */
  dir: string;
}

/** The state of a planned run's directory. */
export type RunState = "finished" | "running" | "interrupted" | "new";

/**
 * Parse `--seeds`: a comma-separated list of non-negative integers and ranges
 * (`1,2,3`, `1-5`, `1-3,10`).
 */
export function parseSeeds(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(",").map((s) => s.trim())) {
    const range = part.match(/^(\d+)-(\d+)$/);
    if (range) {
      const [a, b] = [Number(range[1]), Number(range[2])];
      if (b < a || b - a > 10000) throw new UserError(`--seeds: bad range "${part}"`);
      for (let s = a; s <= b; s++) out.push(s);
    } else if (/^\d+$/.test(part)) out.push(Number(part));
    else {
      throw new UserError(
        `--seeds: "${part}" is not a seed; give non-negative integers like 1,2,3 or 1-3`,
      );
    }
  }
  const seen = new Set<number>();
  for (const s of out) {
    if (!Number.isSafeInteger(s)) throw new UserError(`--seeds: ${s} is too large`);
    if (seen.has(s)) throw new UserError(`--seeds: seed ${s} is given twice`);
    seen.add(s);
  }
  if (out.length === 0) throw new UserError("--seeds: no seed given");
  return out;
}

/** A recipe name made safe for a directory name (as the single-run directory is). */
export function runName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, "_");
}

/** Options of {@linkcode planRuns}. */
export interface PlanOptions {
  /** `--set` overrides, applied to every recipe. */
  set?: string[];
  /** Seeds; by default each recipe's own `seed` (after `set`). */
  seeds?: number[];
  /** Base directory of the run directories; by default each recipe's `output.dir`. */
  out?: string;
}

/**
 * Load and validate every recipe (nothing is run or written when one is bad), and give each
 * (recipe, seed) its run directory `<out>/<name>/seed<N>`.
 *
 * @throws {UserError} When a recipe is bad, or two recipes share a name (and so a directory).
 */
export async function planRuns(files: string[], options: PlanOptions = {}): Promise<PlannedRun[]> {
  if (files.length === 0) throw new UserError("no recipe given");
  registerBuiltins();
  const runs: PlannedRun[] = [];
  const owner = new Map<string, string>();
  for (const file of files) {
    const loaded = await loadRecipe(file, { set: options.set ?? [] });
    await loadPluginModules(loaded.recipe.plugins);
    validatePluginOptions(loaded.recipe, loaded.file);
    const r = loaded.recipe;
    const name = runName(r.name ?? r.method);
    const base = (options.out ?? r.output.dir).replace(/(.)\/+$/, "$1");
    const other = owner.get(`${base}/${name}`);
    if (other !== undefined) {
      throw new UserError(
        `${other} and ${file} have the same name "${name}", so their runs would share ` +
          `${base}/${name}/; give one of them another name (--set name=... changes all)`,
      );
    }
    owner.set(`${base}/${name}`, file);
    for (const seed of options.seeds ?? [r.seed]) {
      runs.push({ recipe: file, name, seed, dir: `${base}/${name}/seed${seed}` });
    }
  }
  return runs;
}

/**
 * `finished` (has `summary.json`), `running` (another process trains into it: it holds
 * `run.lock`), `interrupted` (has `latest.ckpt`) or `new`.
 */
export async function runState(dir: string): Promise<RunState> {
  const run = new RunDir(dir);
  if (await run.has("summary")) return "finished";
  if (await run.lockHolder() !== null) return "running";
  if (await run.has("latest")) return "interrupted";
  return "new";
}
