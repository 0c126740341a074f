/**
 * `run`: train one recipe (or resume a run directory) in this process, and print its table;
 * several recipes, `--seeds` or `--jobs` go to the sweep (`app/results_cli.ts`).
 *
 * @module
 */
import { dirname } from "node:path";
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { RunDir } from "../core/run_dir.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { type Summary, Trainer } from "../core/trainer.ts";
import { formatDuration } from "../core/progress.ts";
import { formatDice, sourceGridScores } from "../core/evaluate.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { addCommand, RUN_COMMAND, setOverrides } from "./commands.ts";
import { printTable } from "./dice_table.ts";
import { refuseGrant } from "./grants.ts";
import { runSweep, type SweepRunOptions } from "./results_cli.ts";

/** `12.3 s` under a minute, else `5m09s` / `1h02m`. */
export function formatSeconds(seconds: number): string {
  return seconds < 59.95 ? `${seconds.toFixed(1)} s` : formatDuration(seconds);
}

/**
 * Add `run` to `program`; `main` runs one command line in this process (the CLI's `main`, which
 * a sweep without `--jobs` calls for each of its runs).
 */
export function addRunCommand(
  program: Command,
  main: (args: string[]) => Promise<number>,
): void {
  addCommand(program, RUN_COMMAND)
    .action(async (files: string[], opts: SweepRunOptions & { grant: string[] }) => {
      refuseGrant(opts.grant);
      if (files.length > 1 || opts.seeds !== undefined || opts.jobs !== undefined) {
        return await runSweep(files, opts, main); // several runs: app/results_cli.ts
      }
      const file: string | undefined = files[0];
      const set = setOverrides(opts);
      registerBuiltins();
      let trainer: Trainer;
      if (opts.resume !== undefined) {
        if (file !== undefined || opts.out !== undefined) {
          throw new UserError("--resume takes the run directory alone (no recipe, no --out)");
        }
        const s = await new RunDir(opts.resume).readSummary<Summary>();
        if (s !== null) {
          // Finished means finished: nothing is re-evaluated or rewritten (exit 0, like a sweep
          // that skips finished runs). A longer run is a new run.
          console.log(
            `${opts.resume} is finished (${s.iterations} iterations, mean Dice ` +
              `${(100 * s.dice_mean).toFixed(2)} %): nothing to resume. deno task eval ` +
              `${opts.resume} re-evaluates it; to train longer, start a new run with --out`,
          );
          return;
        }
        trainer = await Trainer.resume(opts.resume, { set, progress: !opts.quiet });
        console.error(`resuming ${opts.resume} at iteration ${trainer.iteration}`);
      } else {
        if (file === undefined) throw new UserError("run needs a recipe file (or --resume DIR)");
        const loaded = await loadRecipe(file, { set });
        await loadPluginModules(loaded.recipe.plugins);
        validatePluginOptions(loaded.recipe, file);
        trainer = await Trainer.create(loaded.recipe, {
          source: file,
          baseDir: dirname(loaded.file),
          recipeFile: loaded.file,
          out: opts.out,
          resolved: loaded.resolved,
          progress: !opts.quiet,
        });
      }
      const signals = ["SIGINT", "SIGTERM"] as const;
      const handlers = signals.map((signal) => {
        const handler = () => trainer.requestStop(signal);
        Deno.addSignalListener(signal, handler);
        return [signal, handler] as const;
      });
      try {
        const summary = await trainer.run();
        printTable(
          summary,
          `${summary.method} on ${summary.dataset}, seed ${summary.seed}: ${summary.iterations} ` +
            `iterations in ${formatSeconds(summary.seconds_wall)} ` +
            `(training ${formatSeconds(summary.seconds_train)}, validation ` +
            `${formatSeconds(summary.seconds_validation)}, data ` +
            `${formatSeconds(summary.seconds_data)}; ` +
            (summary.evaluated === "student" ? "" : `${summary.evaluated} evaluated; `) +
            `best mean ${(100 * summary.best.dice_mean).toFixed(2)} % at iteration ` +
            `${summary.best.iteration})`,
        );
        const onSource = sourceGridScores(summary);
        if (onSource) {
          printTable(
            onSource,
            `on each scan's own grid (source grid): ${formatDice(onSource.dice)}`,
          );
        }
        if (trainer.runDir) console.log(`\nrun directory: ${trainer.runDir}`);
      } finally {
        for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
        trainer.dispose();
      }
    });
}
