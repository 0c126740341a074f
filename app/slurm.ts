/**
 * A sweep's planned runs ({@linkcode PlannedRun}) as a Slurm array job script, one task per run,
 * and the checks of its `#SBATCH` options.
 *
 * @module
 */
import { resolve } from "node:path";
import { UserError } from "../core/errors.ts";
import type { PlannedRun } from "./sweep_plan.ts";

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
    "fi",
    "# a task of another submission trains into it (holds run.lock): leave it that one",
    'if [ -f "$out/run.lock" ] && command -v flock >/dev/null && ! flock -n "$out/run.lock" true; then',
    '  echo "$out is being trained by another process ($(cat "$out/run.lock")); nothing to do"',
    "  exit 0",
    "fi",
    'if [ -f "$out/latest.ckpt" ]; then',
    '  exec "$DENO" task --config "$ROOT/deno.json" run --resume "$out"',
    "fi",
    "# no checkpoint: what a task that died early left would make run refuse the folder",
    'rm -f "$out/metrics.jsonl" "$out/best.ckpt"',
    'exec "$DENO" task --config "$ROOT/deno.json" run "$recipe" --seed "$seed" --out "$out" \\',
    '  ${extra[@]+"${extra[@]}"}',
    "",
  ].join("\n");
}
