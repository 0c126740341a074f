/**
 * Several recipes x several seeds: deterministic run directories
 * (`<output.dir>/<recipe name>/seed<N>`, or `<--out>/<recipe name>/seed<N>`), run one after
 * another in this process or as parallel `deno run ... app/cli.ts run` subprocesses, finished runs
 * skipped and interrupted ones resumed; and the same set as a Slurm array job script.
 *
 * @module
 */
import { resolve } from "node:path";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { UserError } from "../core/errors.ts";
import { RUN_FILES, RunDir } from "../core/run_dir.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { InterruptedError } from "../core/trainer.ts";
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
export type RunState = "finished" | "interrupted" | "new";

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

/** `finished` (has `summary.json`), `interrupted` (has `latest.ckpt`) or `new`. */
export async function runState(dir: string): Promise<RunState> {
  const run = new RunDir(dir);
  if (await run.has("summary")) return "finished";
  if (await run.has("latest")) return "interrupted";
  return "new";
}

/** Options of {@linkcode runMany}. */
export interface RunManyOptions extends PlanOptions {
  /** Parallel subprocesses; 1 runs one after another in this process. @default 1 */
  jobs?: number;
  /** `--backend`, passed on to every run. */
  backend?: string;
  /** `--quiet`, passed on to every run. */
  quiet?: boolean;
  /** Messages, default to standard error. */
  log?: (line: string) => void;
  /**
   * Runs one `run` command line in this process (the CLI's `main`) and returns its exit code;
   * used when `jobs` is 1.
   */
  runInProcess: (args: string[]) => Promise<number>;
}

/** The outcome of {@linkcode runMany}. */
export interface RunManyResult {
  runs: PlannedRun[];
  skipped: PlannedRun[];
  failed: Array<{ run: PlannedRun; code: number }>;
}

/** The `run` arguments of one planned run: a fresh run, or `--resume` of an interrupted one. */
export function runArgs(
  run: PlannedRun,
  state: RunState,
  options: Pick<RunManyOptions, "set" | "backend" | "quiet">,
): string[] {
  const tail = options.quiet ? ["--quiet"] : [];
  if (state === "interrupted") return ["run", "--resume", run.dir, ...tail];
  const args = ["run", run.recipe, "--seed", String(run.seed), "--out", run.dir];
  for (const s of options.set ?? []) args.push("--set", s);
  if (options.backend !== undefined) args.push("--backend", options.backend);
  return [...args, ...tail];
}

/** Remove what a run that died before its first checkpoint left (its metrics would be appended to). */
async function clearStale(dir: string, log: (line: string) => void): Promise<void> {
  const stale: string[] = [];
  const run = new RunDir(dir);
  for (const role of ["metrics", "best"] as const) {
    if (await run.has(role)) {
      await Deno.remove(run.file(role));
      stale.push(RUN_FILES[role]);
    }
  }
  if (stale.length) log(`${dir}: no checkpoint to resume from; removed ${stale.join(", ")}`);
}

/** Summary line of a finished run: `mean Dice 81.23 %`. */
async function resultLine(dir: string): Promise<string> {
  try {
    const s = await new RunDir(dir).readSummary<{ dice_mean: number }>();
    if (s === null) throw new Error("no summary");
    return `mean Dice ${(100 * s.dice_mean).toFixed(2)} %`;
  } catch {
    return "no summary.json";
  }
}

/**
 * The permission flags of a child `deno run`: the ones this process holds globally, and for
 * partial read / write grants, those of `paths` it holds.
 */
export async function permissionFlags(
  paths: { read: string[]; write: string[] },
): Promise<string[]> {
  const flags: string[] = [];
  const names = ["read", "write", "env", "sys", "net", "ffi", "run", "import"] as const;
  for (const name of names) {
    let state: string;
    try {
      state = (await Deno.permissions.query({ name } as Deno.PermissionDescriptor)).state;
    } catch {
      continue; // not a permission of this Deno
    }
    if (state === "granted") {
      flags.push(`--allow-${name}`);
      continue;
    }
    if (name !== "read" && name !== "write") continue;
    const granted: string[] = [];
    for (const path of paths[name]) {
      const s = await Deno.permissions.query({ name, path });
      if (s.state === "granted") granted.push(path);
    }
    if (granted.length) flags.push(`--allow-${name}=${granted.join(",")}`);
  }
  return flags;
}

/**
 * The permission flags `deno task run` (app/launcher.ts) gave this process, passed on in
 * `MISSL_PERMISSION_FLAGS` so that each `--jobs` child gets the same, or `null`.
 */
function inheritedFlags(): string[] | null {
  let text: string | undefined;
  try {
    text = Deno.env.get("MISSL_PERMISSION_FLAGS");
  } catch {
    return null; // not granted: not launched by deno task run
  }
  if (!text) return null;
  try {
    const flags = JSON.parse(text);
    if (Array.isArray(flags) && flags.every((f) => typeof f === "string" && f.startsWith("--"))) {
      return flags;
    }
  } catch {
    // fall through
  }
  return null;
}

/**
 * This Deno's executable when it may be run, else `deno` from the PATH when that may (what
 * `--allow-run=deno` names; it may be a link to the former), else null.
 */
export async function runnableDeno(): Promise<string | null> {
  const exec = Deno.execPath();
  for (const command of [exec, "deno"]) {
    if ((await Deno.permissions.query({ name: "run", command })).state === "granted") {
      return command;
    }
  }
  return null;
}

/** The path of app/cli.ts (its URL when the framework is imported by URL). */
export function cliPath(): string {
  const url = new URL("./cli.ts", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;
}

/**
 * Run every (recipe, seed) of `files` x `seeds` in its own directory: finished runs are skipped,
 * interrupted ones (a `latest.ckpt`, no `summary.json`) resumed. With `jobs` > 1, up to `jobs`
 * `deno run ... app/cli.ts run` subprocesses at a time, each with this process's permissions and its
 * output in `<run dir>/run.log`.
 *
 * @throws {InterruptedError} On SIGINT / SIGTERM, once the running runs have checkpointed.
 */
export async function runMany(files: string[], options: RunManyOptions): Promise<RunManyResult> {
  const log = options.log ?? ((line: string) => console.error(line));
  const jobs = options.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1) throw new UserError("--jobs must be a positive integer");
  // the backend is checked with the recipes, before anything runs
  const set = [...(options.set ?? []), ...(options.backend ? [`backend=${options.backend}`] : [])];
  const runs = await planRuns(files, { ...options, set });
  const result: RunManyResult = { runs, skipped: [], failed: [] };
  const todo: Array<{ run: PlannedRun; state: RunState }> = [];
  for (const run of runs) {
    const state = await runState(run.dir);
    if (state === "finished") {
      log(`skip ${run.dir}: finished (summary.json exists)`);
      result.skipped.push(run);
    } else todo.push({ run, state });
  }
  log(
    `${runs.length} run(s): ${result.skipped.length} finished, ${todo.length} to run` +
      (todo.length && jobs > 1 ? `, ${Math.min(jobs, todo.length)} at a time` : ""),
  );
  if (todo.length === 0) return result;
  if (jobs === 1) {
    for (const [i, { run, state }] of todo.entries()) {
      log(
        `\n=== [${i + 1}/${todo.length}] ${run.name} seed ${run.seed} -> ${run.dir}` +
          (state === "interrupted" ? " (resuming)" : ""),
      );
      if (state === "new") await clearStale(run.dir, log);
      let code: number;
      try {
        code = await options.runInProcess(runArgs(run, state, options));
      } catch (error) {
        log(`error: ${(error as Error)?.stack ?? error}`);
        code = 1;
      }
      if (code === 130 || code === 143) {
        throw new InterruptedError(
          code === 130 ? "SIGINT" : "SIGTERM",
          `Stopped the sweep in ${run.dir}; run the same command again to resume it ` +
            "(finished runs are skipped)",
        );
      }
      if (code !== 0) result.failed.push({ run, code });
    }
    return result;
  }
  return await runParallel(todo, jobs, options, log, result);
}

async function runParallel(
  todo: Array<{ run: PlannedRun; state: RunState }>,
  jobs: number,
  options: RunManyOptions,
  log: (line: string) => void,
  result: RunManyResult,
): Promise<RunManyResult> {
  const deno = await runnableDeno();
  if (deno === null) {
    throw new UserError(
      "--jobs runs each recipe in its own deno process, which needs the permission to run " +
        "deno: call the CLI with --allow-run=deno, e.g. deno run --allow-read --allow-write " +
        "--allow-env --allow-run=deno app/cli.ts run ... --jobs 2 (or use --jobs 1)",
    );
  }
  const cli = cliPath();
  const dirs = todo.map((t) => t.run.dir);
  const flags = inheritedFlags() ?? await permissionFlags({
    read: [Deno.cwd(), cli.replace(/\/[^/]*$/, ""), ...todo.map((t) => t.run.recipe), ...dirs],
    write: dirs,
  });
  let stopSignal: "SIGINT" | "SIGTERM" | null = null;
  const children = new Set<Deno.ChildProcess>();
  const onSignal = (signal: "SIGINT" | "SIGTERM") => () => {
    if (stopSignal === null) {
      log(`${signal}: asking the ${children.size} running run(s) to checkpoint and stop`);
    }
    stopSignal ??= signal;
    for (const c of children) {
      try {
        c.kill(signal);
      } catch {
        // already gone
      }
    }
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  let next = 0;
  let finished = 0;
  const worker = async () => {
    while (stopSignal === null && next < todo.length) {
      const { run, state } = todo[next++];
      if (state === "new") await clearStale(run.dir, log);
      await Deno.mkdir(run.dir, { recursive: true });
      const logFile = `${run.dir}/run.log`;
      const out = await Deno.open(logFile, { append: true, create: true });
      const args = runArgs(run, state, options);
      log(
        `start ${run.name} seed ${run.seed} -> ${run.dir}` +
          (state === "interrupted" ? " (resuming)" : "") + ` (log: ${logFile})`,
      );
      let code: number;
      try {
        const child = new Deno.Command(deno, {
          args: ["run", ...flags, cli, ...args],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        children.add(child);
        const pipes = [child.stdout, child.stderr].map((s) =>
          s.pipeTo(
            new WritableStream({
              write: async (chunk) => {
                for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
              },
            }),
          )
        );
        code = (await child.status).code;
        await Promise.allSettled(pipes);
        children.delete(child);
      } finally {
        out.close();
      }
      finished++;
      const tag = `[${finished}/${todo.length}]`;
      if (code === 0) log(`${tag} done ${run.name} seed ${run.seed}: ${await resultLine(run.dir)}`);
      else if (code === 130 || code === 143) {
        log(`${tag} stopped ${run.name} seed ${run.seed} (checkpoint written)`);
      } else {
        log(`${tag} FAILED ${run.name} seed ${run.seed} (exit ${code}); see ${logFile}`);
        result.failed.push({ run, code });
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
  if (stopSignal !== null) {
    throw new InterruptedError(
      stopSignal,
      `Stopped the sweep (${stopSignal}); run the same command again to resume it ` +
        "(finished runs are skipped, interrupted ones resumed)",
    );
  }
  return result;
}

/** Options of {@linkcode slurmScript}. */
export interface SlurmOptions {
  partition?: string;
  /** `--time`, e.g. `04:00:00` or `1-00:00:00`. */
  time?: string;
  /** `--cpus-per-task`. */
  cpus?: number;
  /** `--mem`, e.g. `16G`. */
  mem?: string;
  /** GPUs per task (`--gres=gpu:N`). */
  gpus?: number;
  /** `--job-name`. @default "mi-ssl" */
  jobName?: string;
  /** `--set` overrides, passed to every run. */
  set?: string[];
  /** `--backend`, passed to every run. */
  backend?: string;
  /** What generated the script (a comment). */
  command?: string;
  /** The folder relative recipe and run paths are resolved against. @default Deno.cwd() */
  cwd?: string;
  /** The framework's folder (its `deno.json`). @default this checkout */
  root?: string;
  /** The Deno a task runs when `MISSL_DENO` is not set. @default Deno.execPath() */
  deno?: string;
}

/** Quote a string for bash (single quotes). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Check the Slurm options; throws a {@linkcode UserError} naming the bad one. */
export function checkSlurmOptions(o: SlurmOptions): void {
  if (o.partition !== undefined && !/^[A-Za-z0-9_.,-]+$/.test(o.partition)) {
    throw new UserError(`--partition: "${o.partition}" is not a partition name`);
  }
  if (o.time !== undefined && !/^(\d+-)?\d+(:\d{1,2}){0,2}$/.test(o.time)) {
    throw new UserError(`--time: "${o.time}" is not a Slurm time (HH:MM:SS, D-HH:MM:SS, minutes)`);
  }
  if (o.mem !== undefined && !/^\d+[KMGT]?$/i.test(o.mem)) {
    throw new UserError(`--mem: "${o.mem}" is not a Slurm memory size (e.g. 16G, 8000M)`);
  }
  for (const [k, v, min] of [["--cpus", o.cpus, 1], ["--gpus", o.gpus, 0]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) {
      throw new UserError(`${k}: expected an integer >= ${min}`);
    }
  }
}

/** The folder of this checkout's `deno.json` (its URL when imported by URL). */
function frameworkRoot(): string {
  const url = new URL("..", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname).replace(/\/$/, "") : url.href;
}

/**
 * A Slurm array job script with one task per planned run: `#SBATCH --array=0-(n-1)`, bash
 * arrays of the (recipe, seed, directory) of each task, indexed by `$SLURM_ARRAY_TASK_ID`, and
 * `deno task --config <root>/deno.json run <recipe> --seed <seed> --out <dir>` (a finished task
 * exits at once, an interrupted one resumes, so resubmitting the script finishes a partial
 * sweep).
 *
 * Everything a task needs is absolute, since a compute node starts it in the submission folder
 * with the submitter's environment: the recipes and run folders (resolved against `cwd`), the
 * framework's `deno.json` (`deno task` run elsewhere finds none, and would resolve relative paths
 * against its folder rather than the submission folder), and the Deno that wrote the script
 * (used unless `MISSL_DENO` names another; `deno` from the node's PATH when it is not there).
 * A task that died before its first checkpoint leaves `metrics.jsonl` / `best.ckpt` behind,
 * which `run` would refuse to overwrite: the task removes them before starting afresh.
 */
export function slurmScript(runs: PlannedRun[], o: SlurmOptions = {}): string {
  checkSlurmOptions(o);
  if (runs.length === 0) throw new UserError("no run to put in the array job");
  const cwd = o.cwd ?? Deno.cwd();
  const root = o.root ?? frameworkRoot();
  const deno = o.deno ?? Deno.execPath();
  const n = runs.length;
  const sb = [
    `#SBATCH --job-name=${o.jobName ?? "mi-ssl"}`,
    `#SBATCH --array=0-${n - 1}`,
    `#SBATCH --output=slurm-%A_%a.out`,
    `#SBATCH --ntasks=1`,
  ];
  if (o.partition !== undefined) sb.push(`#SBATCH --partition=${o.partition}`);
  if (o.time !== undefined) sb.push(`#SBATCH --time=${o.time}`);
  if (o.cpus !== undefined) sb.push(`#SBATCH --cpus-per-task=${o.cpus}`);
  if (o.mem !== undefined) sb.push(`#SBATCH --mem=${o.mem}`);
  if (o.gpus !== undefined && o.gpus > 0) sb.push(`#SBATCH --gres=gpu:${o.gpus}`);
  const extra: string[] = [];
  for (const s of o.set ?? []) extra.push("--set", s);
  if (o.backend !== undefined) extra.push("--backend", o.backend);
  const recipes = new Set(runs.map((r) => r.recipe)).size;
  const seeds = new Set(runs.map((r) => r.seed)).size;
  const table = runs.map((r, i) =>
    `RECIPE[${i}]=${shellQuote(resolve(cwd, r.recipe))}; SEED[${i}]=${r.seed}; ` +
    `OUT[${i}]=${shellQuote(resolve(cwd, r.dir))}`
  );
  return [
    "#!/bin/bash",
    `# Slurm array job: ${recipes} recipe(s) x ${seeds} seed(s) = ${n} task(s), one run each.`,
    ...(o.command ? [`# Written by: ${o.command}`] : []),
    "# Submit it with sbatch <this file>, from any folder (task logs: slurm-<job>_<task>.out",
    "# there). A finished task (summary.json) exits at once and an interrupted one resumes from",
    "# its latest.ckpt, so submitting the script again completes a partial sweep.",
    ...sb,
    "",
    "set -euo pipefail",
    `ROOT=${shellQuote(root)} # the framework (its deno.json)`,
    "# Deno: $MISSL_DENO, else the one that wrote this script, else deno on the node's PATH",
    `DENO="\${MISSL_DENO:-${deno.replace(/["$`\\]/g, "\\$&")}}"`,
    '[ -x "$DENO" ] || DENO="$(command -v deno || true)"',
    'if [ -z "$DENO" ]; then',
    '  echo "deno is not on this node: install it or set MISSL_DENO to its path" >&2',
    "  exit 127",
    "fi",
    "export NO_COLOR=1 # plain logs",
    "",
    "declare -a RECIPE SEED OUT",
    ...table,
    "",
    'i="${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is a Slurm array job}"',
    'recipe="${RECIPE[$i]}"',
    'seed="${SEED[$i]}"',
    'out="${OUT[$i]}"',
    `extra=(${extra.map(shellQuote).join(" ")})`,
    'echo "task $i: $recipe seed $seed -> $out on $(hostname)"',
    'if [ -f "$out/summary.json" ]; then',
    '  echo "$out is finished (summary.json exists); nothing to do"',
    "  exit 0",
    'elif [ -f "$out/latest.ckpt" ]; then',
    '  exec "$DENO" task --config "$ROOT/deno.json" run --resume "$out"',
    "fi",
    "# no checkpoint: what a task that died early left would make run refuse the folder",
    'rm -f "$out/metrics.jsonl" "$out/best.ckpt"',
    'exec "$DENO" task --config "$ROOT/deno.json" run "$recipe" --seed "$seed" --out "$out" \\',
    '  ${extra[@]+"${extra[@]}"}',
    "",
  ].join("\n");
}
