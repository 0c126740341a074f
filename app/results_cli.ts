/**
 * The CLI's multi-run and results commands: `run` with several recipes / `--seeds` / `--jobs`
 * ({@linkcode runSweep}), and `sweep` (Slurm array job), `table` and `plot`
 * ({@linkcode addResultCommands}).
 *
 * @module
 */
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { plotRuns } from "./plot.ts";
import { parseSeeds, planRuns, runMany, runState, slurmScript } from "./sweep.ts";
import { buildTable, formatTable, loadRuns, parsePowerPoints } from "./table.ts";
import { compareTables, formatComparison } from "./protocol_compare.ts";

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function positiveInt(flag: string, min = 1): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new UserError(`${flag}: expected an integer >= ${min}, got "${v}"`);
    }
    return n;
  };
}

/** The `run` options {@linkcode runSweep} reads. */
export interface SweepRunOptions {
  set: string[];
  resume?: string;
  out?: string;
  seed?: string;
  seeds?: string;
  jobs?: string;
  backend?: string;
  quiet?: boolean;
}

/**
 * `run` with several recipes, `--seeds` or `--jobs`: every (recipe, seed) in
 * `<out or output.dir>/<recipe name>/seed<N>`, finished ones skipped, interrupted ones resumed.
 * `runInProcess` is the CLI's `main` (one `run` command line -> exit code).
 *
 * @throws {UserError} When some runs failed (after all the others ran).
 */
export async function runSweep(
  files: string[],
  opts: SweepRunOptions,
  runInProcess: (args: string[]) => Promise<number>,
): Promise<void> {
  if (opts.resume !== undefined) {
    throw new UserError(
      "--resume takes one run directory; with several recipes or --seeds, run the same " +
        "command again instead (interrupted runs are resumed)",
    );
  }
  if (files.length === 0) throw new UserError("run needs a recipe file (or --resume DIR)");
  if (opts.seed !== undefined && opts.seeds !== undefined) {
    throw new UserError("give --seed or --seeds, not both");
  }
  const seeds = opts.seeds !== undefined
    ? parseSeeds(opts.seeds)
    : opts.seed !== undefined
    ? parseSeeds(opts.seed)
    : undefined;
  const jobs = opts.jobs === undefined ? 1 : positiveInt("--jobs")(opts.jobs);
  const result = await runMany(files, {
    set: opts.set,
    seeds,
    out: opts.out,
    jobs,
    backend: opts.backend,
    quiet: opts.quiet,
    runInProcess,
  });
  const done = result.runs.length - result.skipped.length - result.running.length -
    result.failed.length;
  console.log(
    `\n${result.runs.length} run(s): ${done} trained, ${result.skipped.length} already ` +
      `finished, ` +
      (result.running.length
        ? `${result.running.length} being trained by another process (run the same command ` +
          `again once they end), `
        : "") +
      `${result.failed.length} failed`,
  );
  const bases = [...new Set(result.runs.map((r) => r.dir.replace(/\/[^/]+\/[^/]+$/, "")))];
  console.log(`results: deno task table ${bases.join(" ")}`);
  if (result.failed.length) {
    throw new UserError(
      `${result.failed.length} run(s) failed: ` +
        result.failed.map((f) => `${f.run.dir} (exit ${f.code})`).join(", "),
    );
  }
}

/** Add `sweep`, `table` and `plot` to the program. */
export function addResultCommands(program: Command): void {
  program.command("sweep")
    .description(
      "Plan recipes x seeds in runs/<recipe name>/seed<N>; with --slurm, write a Slurm array " +
        "job script (one task per run)",
    )
    .argument("<recipes...>", "YAML recipe files")
    .option("--seeds <list>", "seeds, e.g. 1,2,3 or 1-3 (default: each recipe's seed)")
    .option("--set <path=value>", "override a recipe field of every run (repeatable)", collect, [])
    .option("--backend <name>", "backend of every run")
    .option("--runs <dir>", "base of the run directories (default: each recipe's output.dir)")
    .option("--slurm", "write a Slurm array job script")
    .option("--out <file>", "where to write the script (default: standard output)")
    .option("--partition <p>", "Slurm partition")
    .option("--time <t>", "Slurm time limit per task, HH:MM:SS or D-HH:MM:SS")
    .option("--cpus <n>", "CPUs per task", positiveInt("--cpus"))
    .option("--mem <m>", "memory per task, e.g. 16G")
    .option("--gpus <n>", "GPUs per task (--gres=gpu:N)", positiveInt("--gpus", 0))
    .option("--job-name <name>", "Slurm job name", "mi-ssl")
    .action(async (files: string[], opts: {
      seeds?: string;
      set: string[];
      backend?: string;
      runs?: string;
      slurm?: boolean;
      out?: string;
      partition?: string;
      time?: string;
      cpus?: number;
      mem?: string;
      gpus?: number;
      jobName: string;
    }) => {
      const runs = await planRuns(files, {
        set: [...opts.set, ...(opts.backend ? [`backend=${opts.backend}`] : [])],
        seeds: opts.seeds !== undefined ? parseSeeds(opts.seeds) : undefined,
        out: opts.runs,
      });
      if (!opts.slurm) {
        for (const r of runs) {
          console.log(
            `${(await runState(r.dir)).padEnd(11)} ${r.dir}  (${r.recipe}, seed ${r.seed})`,
          );
        }
        console.log(
          `\n${runs.length} run(s). Run them here: deno task run ${files.join(" ")}` +
            (opts.seeds ? ` --seeds ${opts.seeds}` : "") +
            (opts.runs ? ` --out ${opts.runs}` : "") +
            opts.set.map((s) => ` --set ${s}`).join("") +
            " [--jobs N]; or write a Slurm array job with --slurm",
        );
        return;
      }
      const script = slurmScript(runs, {
        partition: opts.partition,
        time: opts.time,
        cpus: opts.cpus,
        mem: opts.mem,
        gpus: opts.gpus,
        jobName: opts.jobName,
        set: opts.set,
        backend: opts.backend,
        command: `mi-ssl sweep ${files.join(" ")}` + (opts.seeds ? ` --seeds ${opts.seeds}` : "") +
          " --slurm",
      });
      if (opts.out === undefined) {
        console.log(script.trimEnd());
        return;
      }
      try {
        await Deno.writeTextFile(opts.out, script, { mode: 0o755 });
      } catch (error) {
        throw new UserError(`Cannot write ${opts.out}: ${(error as Error).message}`);
      }
      console.error(`${opts.out}: a Slurm array job of ${runs.length} task(s); submit it with`);
      console.error(`  sbatch ${opts.out}`);
    });

  program.command("table")
    .description(
      "Table 1 of runs: per method, each class's Dice and the mean, mean (std) over seeds, " +
        "and a one-sided paired t-test of the baseline against each method",
    )
    .argument("<runs...>", "run directories, globs (runs/*/seed*) or folders holding runs")
    .option("--format <f>", "md | csv | json", "md")
    .option("--baseline <method>", "the method tested against the others (default ours-kl)")
    .option("--per-seed", "one row per run: each seed's Dice per class, mean and lowest class")
    .option(
      "--grid <grid>",
      "network: the Dice on the network's grid (summary.json dice) | source: on each scan's " +
        "own grid (dice_source; runs without it are left out, and the note says so)",
      "network",
    )
    .option(
      "--power <points>",
      "add the seeds the seed-level test needs to detect a true difference of <points> " +
        "(80 % power, level 0.05), from each row's measured spread",
      parsePowerPoints,
    )
    .option(
      "--versus <runs>",
      "compare with other runs of the same methods (another protocol; repeatable): each set's " +
        "mean, and per class the difference over the seeds both have, with a two-sided " +
        "seed-paired t-test",
      collect,
      [],
    )
    .action(async (
      paths: string[],
      opts: {
        format: string;
        baseline?: string;
        perSeed?: boolean;
        power?: number;
        grid: string;
        versus: string[];
      },
    ) => {
      if (!["md", "csv", "json"].includes(opts.format)) {
        throw new UserError(`Unknown format "${opts.format}"; use md, csv or json`);
      }
      if (opts.grid !== "network" && opts.grid !== "source") {
        throw new UserError(`Unknown grid "${opts.grid}"; use network or source`);
      }
      if (opts.versus.length > 0) {
        if (opts.baseline !== undefined || opts.perSeed || opts.power !== undefined) {
          throw new UserError("--versus takes none of --baseline, --per-seed, --power");
        }
        const grid = opts.grid as "network" | "source";
        const printed = formatComparison(
          compareTables(
            buildTable(await loadRuns(paths), { grid }),
            buildTable(await loadRuns(opts.versus), { grid }),
            { this: paths.join(" "), versus: opts.versus.join(" ") },
          ),
          opts.format as "md" | "csv" | "json",
        );
        console.log(printed.trimEnd());
        return;
      }
      const runs = await loadRuns(paths);
      const table = buildTable(runs, { baseline: opts.baseline, grid: opts.grid });
      if (opts.baseline === undefined && table.baseline === null) {
        console.error("note: no ours-kl run, so no t-test (choose a method with --baseline)");
      }
      const format = opts.format as "md" | "csv" | "json";
      if (opts.power !== undefined && table.baseline === null) {
        throw new UserError("--power needs a baseline to compare with (--baseline <method>)");
      }
      const printed = formatTable(table, format, {
        perSeed: opts.perSeed === true,
        power: opts.power,
      });
      console.log(printed.trimEnd());
    });

  program.command("plot")
    .description(
      "Learning curves (SVG) and Fig. 2-style overlays of each method's predicted contours on " +
        "validation slices (PNG, from best.ckpt)",
    )
    .argument("<runs...>", "run directories, globs or folders holding runs")
    .option("--out <dir>", "output directory", "plots")
    .option("--slices <n>", "validation slices to overlay", positiveInt("--slices"), 3)
    .option("--no-overlays", "learning curves only (loads no checkpoint)")
    .action(async (paths: string[], opts: { out: string; slices: number; overlays: boolean }) => {
      const files = await plotRuns(paths, {
        out: opts.out,
        slices: opts.slices,
        noOverlays: !opts.overlays,
      });
      for (const f of files) console.log(f);
    });
}
