/**
 * Several recipes x several seeds: deterministic run directories
 * (`<output.dir>/<recipe name>/seed<N>`, or `<--out>/<recipe name>/seed<N>`), run one after
 * another in this process or as parallel `deno run ... app/cli.ts run` subprocesses, finished runs
 * skipped and interrupted ones resumed; and the same set as a Slurm array job script.
 *
 * This module runs the sweep ({@linkcode runMany}); its parts live in their own files and are
 * re-exported here: the plan and the run directories' state (`sweep_plan.ts`), a child `deno run`
 * and its permissions (`child_deno.ts`), and the Slurm script (`slurm.ts`).
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import { describeHolder, RUN_FILES, RunDir } from "../core/run_dir.ts";
import { InterruptedError } from "../core/trainer.ts";
import {
  type PlannedRun,
  type PlanOptions,
  planRuns,
  type RunState,
  runState,
} from "./sweep_plan.ts";
import { cliPath, inheritedFlags, permissionFlags, runnableDeno } from "./child_deno.ts";

export {
  parseSeeds,
  type PlannedRun,
  type PlanOptions,
  planRuns,
  runName,
  type RunState,
  runState,
} from "./sweep_plan.ts";
export { cliPath, permissionFlags, runnableDeno } from "./child_deno.ts";
export { checkSlurmOptions, shellQuote, type SlurmOptions, slurmScript } from "./slurm.ts";

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
  /** Runs another process was training (their folder's `run.lock` held): left to it. */
  running: PlannedRun[];
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
  const result: RunManyResult = { runs, skipped: [], running: [], failed: [] };
  const todo: Array<{ run: PlannedRun; state: RunState }> = [];
  for (const run of runs) {
    const state = await runState(run.dir);
    if (state === "finished") {
      log(`skip ${run.dir}: finished (summary.json exists)`);
      result.skipped.push(run);
    } else if (state === "running") {
      // resuming it would cut its metrics back (and removing "stale" files would delete them)
      const holder = await new RunDir(run.dir).lockHolder();
      log(`skip ${run.dir}: being trained by ${describeHolder(holder ?? {})} (run.lock)`);
      result.running.push(run);
    } else todo.push({ run, state });
  }
  log(
    `${runs.length} run(s): ${result.skipped.length} finished, ` +
      (result.running.length ? `${result.running.length} being trained elsewhere, ` : "") +
      `${todo.length} to run` +
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
