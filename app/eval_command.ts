/**
 * `eval`: evaluate a run directory's checkpoint on a split (or on the dataset `--data` names),
 * on the network's grid and with `--grid source` on each volume's own file's grid too; print
 * the tables or JSON; with `--export` write the predictions on the chosen grid; with `--write`
 * add the source-grid scores to the run's `summary.json`.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import type { SourceGridPrediction, Volume } from "../core/dataset.ts";
import { loadRecipe } from "../core/recipe.ts";
import { type Evaluation, formatDice, sourceGridScores } from "../core/evaluate.ts";
import { runEnvironment } from "../core/provenance.ts";
import { RUN_FILES, RunDir } from "../core/run_dir.ts";
import { Trainer } from "../core/trainer.ts";
import { addCommand, EVAL_COMMAND } from "./commands.ts";
import { printTable } from "./dice_table.ts";
import { datasetOverride, exportPrediction, predictionFileName } from "./export.ts";
import { refuseGrant } from "./grants.ts";
import { writeNiftiLabels } from "./predict.ts";
import { addSourceScores } from "./source_scores.ts";

/**
 * `eval --export DIR --grid source`: each volume's prediction on the grid of the file it was
 * read from (the one its source-grid evaluation scored: the class probabilities resampled,
 * then the argmax), written as NIfTI with that file's shape, spacing and affine. Volumes
 * without one (generated data, phantom: their evaluated grid is their own) are written as
 * `--grid network` writes them. `add` is called with each evaluated volume, `done` at the end.
 */
function sourceGridExport(dir: string, datasetId: string) {
  let generated = 0;
  let count = 0;
  return {
    get count() {
      return count;
    },
    async add(v: Volume, p: Uint8Array, onSource: SourceGridPrediction | null): Promise<void> {
      count++;
      if (onSource === null) {
        generated++;
        await exportPrediction(dir, v, p);
        return;
      }
      try {
        await Deno.mkdir(dir, { recursive: true });
      } catch (error) {
        throw new UserError(`Cannot write predictions to "${dir}": ${(error as Error).message}`);
      }
      await writeNiftiLabels(
        join(dir, predictionFileName(v.id)),
        onSource.labels,
        onSource.image,
        v.source!.path,
      );
    },
    done(): void {
      if (generated) {
        console.error(
          `${generated} volume(s) of dataset "${datasetId}" have no source grid (generated ` +
            `data, whose grid is their own, or a source that cannot bring predictions back): ` +
            `written on the evaluated grid`,
        );
      }
    },
  };
}

/** The options of `eval`. */
interface EvalOptions {
  grant: string[];
  split: string;
  checkpoint: string;
  set: string[];
  json?: boolean;
  data?: string;
  export?: string;
  grid: string;
  write?: boolean;
  checkpointFrom?: string;
}

/**
 * Why `--write` cannot be used with these options, or `null`: it adds to the summary the
 * scores of the weights and volumes the summary describes (the run's own validation split,
 * `latest.ckpt`).
 */
function refuseWrite(opts: EvalOptions, checkpointGiven: boolean): string | null {
  if (opts.grid !== "source") return "--write adds source-grid scores: give --grid source";
  if (opts.split === "test") return "--write records the validation split's scores, not test";
  if (opts.data !== undefined || opts.set.length) {
    return "--write records the run's own dataset: leave out --data and --set";
  }
  if (checkpointGiven && opts.checkpoint !== "latest") {
    return "--write scores latest.ckpt, the final weights summary.json describes " +
      "(leave out --checkpoint)";
  }
  return null;
}

/** Add `eval` to `program`. */
export function addEvalCommand(program: Command): void {
  addCommand(program, EVAL_COMMAND)
    .action(async (runDir: string, opts: EvalOptions, command: Command) => {
      refuseGrant(opts.grant);
      if (opts.grid !== "network" && opts.grid !== "source") {
        throw new UserError(`Unknown grid "${opts.grid}"; use network or source`);
      }
      if (!["val", "validation", "test"].includes(opts.split)) {
        throw new UserError(`Unknown split "${opts.split}"; known splits: val, test`);
      }
      if (opts.checkpointFrom !== undefined && !opts.write) {
        throw new UserError(
          "--checkpoint-from gives --write another run's weights: add --grid source --write " +
            "(to evaluate that run, give its folder as <run-dir>)",
        );
      }
      if (opts.write) {
        const why = refuseWrite(opts, command.getOptionValueSource("checkpoint") === "cli");
        if (why) throw new UserError(why);
        opts.checkpoint = "latest";
      }
      if (!["best", "latest"].includes(opts.checkpoint)) {
        throw new UserError(`Unknown checkpoint "${opts.checkpoint}"; use best or latest`);
      }
      const dir = new RunDir(runDir);
      // the run whose weights (and recipe, dataset folder) are evaluated
      const from = opts.checkpointFrom === undefined ? dir : new RunDir(opts.checkpointFrom);
      const ckpt = from.checkpoint(opts.checkpoint as "best" | "latest");
      try {
        await Deno.stat(ckpt);
      } catch (error) {
        if (error instanceof Deno.errors.NotCapable) throw error; // the launcher names the grant
        throw new UserError(`Cannot evaluate "${from.path}": ${ckpt} does not exist`);
      }
      const sameRecipe = from === dir ? null : await sameRecipeAs(dir, from);
      const summary = opts.write ? await dir.readSummary() : null;
      if (opts.write && summary === null) {
        throw new UserError(
          `Cannot add source-grid scores to "${runDir}": it has no readable ` +
            `${RUN_FILES.summary} (unfinished?)`,
        );
      }
      const recipeFile = from.file("recipe");
      const set = opts.data
        ? [
          await datasetOverride(opts.data, {
            runDataset: (await loadRecipe(recipeFile)).recipe.dataset,
          }),
          ...opts.set,
        ]
        : opts.set;
      const loaded = await loadRecipe(recipeFile, { set });
      const trainer = await Trainer.create(loaded.recipe, {
        source: recipeFile,
        // relative dataset paths of the recipe are relative to where it came from
        baseDir: (await from.info()).baseDir,
        out: null,
        progress: false,
      });
      try {
        await trainer.loadCheckpoint(ckpt, { weightsOnly: true });
        const split = opts.split === "test" ? "test" : "validation";
        const onSource = opts.grid === "source";
        const predictions: [Volume, Uint8Array][] = [];
        // --grid source exports what the evaluation scored on the source grid (one pass)
        const source = opts.export && onSource
          ? sourceGridExport(opts.export, trainer.dataset.id)
          : null;
        const ev = await trainer.evaluate(split, undefined, {
          sourceGrid: onSource ? "require" : undefined,
          onPrediction: !opts.export
            ? undefined
            : source
            ? (v, p, _probabilities, back) => source.add(v, p, back)
            : (v, p) => predictions.push([v, p]),
        });
        source?.done();
        for (const [v, p] of predictions) await exportPrediction(opts.export!, v, p);
        if (opts.export && !opts.json) {
          console.log(
            `${source?.count ?? predictions.length} predictions written to ${opts.export} ` +
              `(${opts.grid} grid)`,
          );
        }
        if (ev.source_grid_missing) {
          console.error(`note: no source-grid scores: ${ev.source_grid_missing}`);
        }
        if (opts.json) console.log(JSON.stringify(ev, null, 2));
        else {
          const title = `${runDir} (${opts.checkpoint}.ckpt) on ${split}`;
          const grids = onSource ? "network grid: " : "";
          printTable(ev, `${title}, ${grids}${formatDice(ev.dice)}`);
          const s = sourceGridScores(ev);
          if (s) printTable(s, `${title}, source grid: ${formatDice(s.dice)}`);
        }
        if (opts.write) {
          await writeSourceScores(dir, summary!, ev, trainer, sameRecipe);
        }
      } finally {
        trainer.dispose();
      }
    });
}

/**
 * `eval --checkpoint-from`: what the summary records of `from`, the run whose weights are scored
 * for `dir` (which kept none), after checking that both ran the same recipe (the resolved
 * `recipe.yaml`s, seed included, are the same text).
 *
 * @throws {UserError} When either has no readable recipe.yaml, or they differ.
 */
async function sameRecipeAs(dir: RunDir, from: RunDir): Promise<string> {
  const read = async (d: RunDir) => {
    try {
      return await Deno.readTextFile(d.file("recipe"));
    } catch (error) {
      throw new UserError(`Cannot read ${d.file("recipe")}: ${(error as Error).message}`);
    }
  };
  const [mine, theirs] = [await read(dir), await read(from)];
  if (mine.trim() !== theirs.trim()) {
    const a = mine.trim().split("\n"), b = theirs.trim().split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    const at = line < 0 ? a.length : line;
    throw new UserError(
      `Cannot score "${from.path}" for "${dir.path}": their recipe.yaml differ (line ` +
        `${at + 1}: ${JSON.stringify(a[at] ?? "")} against ${JSON.stringify(b[at] ?? "")}); ` +
        `--checkpoint-from takes another run of the same recipe and seed`,
    );
  }
  const seed = /^seed:\s*(\S+)/m.exec(mine)?.[1];
  return `latest.ckpt of ${from.path}, another run of the same recipe.yaml` +
    (seed === undefined ? "" : ` (seed ${seed})`) + ` (this run kept no checkpoint)`;
}

/**
 * `eval --grid source --write`: add `ev`'s source-grid scores (and, for a mean teacher, its
 * student's, evaluated here) to the run's summary, atomically.
 */
async function writeSourceScores(
  dir: RunDir,
  summary: Record<string, unknown>,
  ev: Evaluation,
  trainer: Trainer,
  checkpointFrom: string | null,
): Promise<void> {
  const file = dir.file("summary");
  if (ev.dice_source === undefined) {
    console.error(`${file} left as it was: nothing to add`);
    return;
  }
  const student = summary.student
    ? await trainer.evaluate("validation", trainer.model, { sourceGrid: "require" })
    : null;
  const updated = addSourceScores(summary, file, { evaluated: ev, student }, {
    command: "eval --grid source --write",
    checkpoint: "latest.ckpt",
    date: new Date().toISOString(),
    environment: await runEnvironment(),
    ...(checkpointFrom === null ? {} : { checkpoint_from: checkpointFrom }),
  });
  await dir.writeSummary(updated);
  console.error(
    `${file}: source-grid scores added (mean Dice ${(100 * ev.dice_source_mean!).toFixed(2)} %` +
      ` on the source grid, ${(100 * ev.dice_mean).toFixed(2)} % on the network's)`,
  );
}
