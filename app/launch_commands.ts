/**
 * `run`, `eval` and `predict` as the launcher (`app/launcher.ts`) sees them: each command's
 * arguments, parsed from the command table as the CLI parses them (plus `--grant`), and the
 * permissions it needs, worked out with a {@linkcode Planner}.
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import { type Command, CommanderError } from "../deps.ts";
import {
  commandParser,
  EVAL_COMMAND,
  PREDICT_COMMAND,
  RUN_COMMAND,
  setOverrides,
} from "./commands.ts";
import { datasetOverride } from "./export.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe } from "../core/recipe.ts";
import type { SweepRunOptions } from "./results_cli.ts";
import { addGrant } from "./grants.ts";
import {
  type LaunchEnvironment,
  type LaunchPlan,
  PERMISSIONS_ENV,
  Planner,
} from "./launch_plan.ts";

/** The `run` arguments the launcher understands (those of `app/cli.ts run`, plus `--grant`). */
export interface LaunchArgs extends SweepRunOptions {
  recipes: string[];
  grant: string[];
}

/** Parse the arguments of `run` as `app/cli.ts run` does (plus `--grant`). */
export function parseLaunchArgs(args: string[]): LaunchArgs {
  let parsed: LaunchArgs | undefined;
  const program = commandParser(RUN_COMMAND)
    .action((recipes: string[], opts: Omit<LaunchArgs, "recipes"> & { help?: boolean }) => {
      parsed = { ...opts, recipes };
    });
  return parseWith(program, args, () => parsed!);
}

function parseWith<T>(program: Command, args: string[], result: () => T): T {
  program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  try {
    program.parse(args, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) throw new UserError(error.message.replace(/^error: /, ""));
    throw error;
  }
  return result();
}

/**
 * Work out the permissions of `app/cli.ts run <args>` from the recipes (or the run directory of
 * `--resume`) without importing any plugin module.
 *
 * @throws {UserError} For a recipe that cannot be loaded (the same message as the run's).
 */
export async function planLaunch(args: LaunchArgs, launch: LaunchEnvironment): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  const set = setOverrides(args);

  if (args.resume !== undefined) {
    const dir = resolve(launch.cwd, args.resume);
    addGrant(grants, "read", dir);
    addGrant(grants, "write", dir);
    const info = await plan.runInfo(dir);
    if (info.recipe) addGrant(grants, "read", info.recipe);
    await plan.runRecipe(dir, set, info.baseDir ?? dir);
  } else {
    if (args.recipes.length === 0) {
      throw new UserError("run needs a recipe file (or --resume DIR)");
    }
    for (const file of args.recipes) {
      const loaded = await loadRecipe(file, { set, env: plan.env, cwd: launch.cwd });
      addGrant(grants, "read", ...loaded.files);
      await plan.recipe(loaded.recipe, dirname(loaded.file));
      const out = resolve(launch.cwd, args.out ?? loaded.recipe.output.dir);
      addGrant(grants, "read", out);
      addGrant(grants, "write", out);
    }
  }
  const several = args.recipes.length > 1 || args.seeds !== undefined ||
    args.jobs !== undefined;
  if (several && args.jobs !== undefined && Number(args.jobs) > 1) {
    addGrant(grants, "run", "deno");
    addGrant(grants, "env", PERMISSIONS_ENV);
  }
  return plan.finish(args.grant);
}

/** The arguments of `eval` (those of `app/cli.ts eval`, plus `--grant`). */
export interface EvalArgs {
  runDir: string;
  set: string[];
  data?: string;
  export?: string;
  /** `--write`: the run's `summary.json` is rewritten (atomically, beside it). */
  write?: boolean;
  /** `--checkpoint-from`: the run whose checkpoint (and recipe, dataset) is evaluated. */
  checkpointFrom?: string;
  grant: string[];
}

/** Parse the arguments of `eval` as `app/cli.ts eval` does (plus `--grant`). */
export function parseEvalArgs(args: string[]): EvalArgs {
  let parsed: EvalArgs | undefined;
  const program = commandParser(EVAL_COMMAND)
    .action((runDir: string | undefined, opts: Omit<EvalArgs, "runDir">) => {
      parsed = { ...opts, runDir: runDir ?? "" };
    });
  return parseWith(program, args, () => parsed!);
}

/**
 * Work out the permissions of `app/cli.ts eval <args>`: read the run directory (and the one
 * `--checkpoint-from` names), the dataset (the evaluated run's, or the one `--data` names) and
 * its cache, write the `--export` folder and the cache, and with `--write` the run directory
 * (its `summary.json`, replaced atomically).
 */
export async function planEval(args: EvalArgs, launch: LaunchEnvironment): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  if (args.runDir === "") throw new UserError("eval needs a run directory");
  const dir = resolve(launch.cwd, args.runDir);
  addGrant(grants, "read", dir);
  const set = [...args.set];
  if (args.data !== undefined) {
    const data = resolve(launch.cwd, args.data);
    addGrant(grants, "read", data);
    try {
      const files: string[] = [];
      set.unshift(await datasetOverride(data, { env: plan.env, files }));
      addGrant(grants, "read", ...files);
    } catch (error) {
      if (!(error instanceof UserError)) throw error; // the evaluation reports it
    }
  }
  // the run evaluated: this one, or the one --checkpoint-from names (its dataset folder)
  const from = args.checkpointFrom === undefined ? dir : resolve(launch.cwd, args.checkpointFrom);
  addGrant(grants, "read", from);
  const info = await plan.runInfo(from);
  await plan.runRecipe(from, set, info.baseDir ?? from);
  if (args.export !== undefined) {
    const out = resolve(launch.cwd, args.export);
    addGrant(grants, "read", out);
    addGrant(grants, "write", out);
  }
  if (args.write) addGrant(grants, "write", dir);
  return plan.finish(args.grant);
}

/** The arguments of `predict` (those of `app/cli.ts predict`, plus `--grant`). */
export interface PredictArgs {
  runDir: string;
  inputs: string[];
  out?: string;
  backend?: string;
  grant: string[];
}

/** Parse the arguments of `predict` as `app/cli.ts predict` does (plus `--grant`). */
export function parsePredictArgs(args: string[]): PredictArgs {
  let parsed: PredictArgs | undefined;
  const program = commandParser(PREDICT_COMMAND)
    .action((runDir: string | undefined, inputs: string[], opts: Omit<PredictArgs, "runDir">) => {
      parsed = { ...opts, runDir: runDir ?? "", inputs };
    });
  return parseWith(program, args, () => parsed!);
}

/**
 * The files a scan given to `predict` is read from: the file (or folder) itself, and for a
 * MetaImage header the data file it names (`ElementDataFile`; its folder for a `LIST` or a
 * slice pattern).
 */
export async function scanFiles(path: string): Promise<string[]> {
  if (!/\.mhd$/i.test(path)) return [path];
  let head: string;
  try {
    const file = await Deno.open(path);
    try {
      const buffer = new Uint8Array(65536);
      const n = await file.read(buffer);
      head = new TextDecoder("latin1").decode(buffer.subarray(0, n ?? 0));
    } finally {
      file.close();
    }
  } catch {
    return [path]; // predict reports it
  }
  const m = /^\s*ElementDataFile\s*=\s*(.*?)\s*$/im.exec(head);
  if (!m || m[1].toUpperCase() === "LOCAL") return [path];
  const data = m[1].split(/\s+/)[0];
  if (m[1].toUpperCase().startsWith("LIST") || m[1].includes("%") || /\s/.test(m[1])) {
    return [path, dirname(path)];
  }
  return [path, resolve(dirname(path), data)];
}

/**
 * Work out the permissions of `app/cli.ts predict <args>`: read the run directory and the
 * scans (files and folders, a MetaImage header's data file), write `--out`; the run's plugin
 * modules and backend as for `run`, but no dataset.
 */
export async function planPredict(
  args: PredictArgs,
  launch: LaunchEnvironment,
): Promise<LaunchPlan> {
  const plan = new Planner(launch);
  const { grants } = plan;
  if (args.runDir === "") throw new UserError("predict needs a run directory");
  const dir = resolve(launch.cwd, args.runDir);
  addGrant(grants, "read", dir);
  for (const input of args.inputs) {
    addGrant(grants, "read", ...await scanFiles(resolve(launch.cwd, input)));
  }
  if (args.out !== undefined) {
    const out = resolve(launch.cwd, args.out);
    addGrant(grants, "read", out);
    addGrant(grants, "write", out);
  }
  const info = await plan.runInfo(dir);
  // an unknown backend is left to the CLI, which names it (through the recipe's schema)
  const set = args.backend !== undefined ? [`backend=${args.backend}`] : [];
  await plan.runRecipe(dir, set, info.baseDir ?? dir, false);
  return plan.finish(args.grant);
}
