/**
 * `eval`: evaluate a run directory's checkpoint on a split (or on the dataset `--data` names),
 * print the table or JSON, and with `--export` write the predictions, on the network's grid or
 * brought back onto each source file's grid.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { datasetPreprocessing, type Volume } from "../core/dataset.ts";
import { type LoadedRecipe, loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { formatDice } from "../core/evaluate.ts";
import { RunDir } from "../core/run_dir.ts";
import { Trainer } from "../core/trainer.ts";
import { addCommand, EVAL_COMMAND } from "./commands.ts";
import { printTable } from "./dice_table.ts";
import { datasetOverride, exportPrediction, predictionFileName } from "./export.ts";
import { refuseGrant } from "./grants.ts";
import { volumeOnSourceGrid, writeNiftiLabels } from "./predict.ts";

/**
 * `eval --export DIR --grid source`: each volume's prediction brought back onto the grid of the
 * file it was read from (the class probabilities its evaluation computed, resampled, then the
 * argmax) and written as NIfTI with that file's shape, spacing and affine. Generated volumes
 * (phantom) have no file: their evaluated grid is their own, and they are written as
 * `--grid network` writes them. `add` is called with each evaluated volume, `done` at the end.
 */
function sourceGridExport(dir: string, trainer: Trainer, loaded: LoadedRecipe) {
  const parsed = validatePluginOptions(loaded.recipe, loaded.file);
  const prep = datasetPreprocessing(loaded.recipe.dataset.type, parsed.dataset);
  const numClasses = trainer.dataset.classNames.length;
  let generated = 0;
  let count = 0;
  return {
    get count() {
      return count;
    },
    async add(v: Volume, p: Uint8Array, probabilities: Float32Array): Promise<void> {
      count++;
      const back = await volumeOnSourceGrid(v, probabilities, numClasses, prep);
      if (back === null) {
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
        back.labels,
        back.image,
        v.source!.path,
      );
    },
    done(): void {
      if (generated) {
        console.error(
          `${generated} volume(s) of dataset "${trainer.dataset.id}" have no source file ` +
            `(generated data): written on the evaluated grid, which is their own`,
        );
      }
    },
  };
}

/** Add `eval` to `program`. */
export function addEvalCommand(program: Command): void {
  addCommand(program, EVAL_COMMAND)
    .action(async (runDir: string, opts: {
      grant: string[];
      split: string;
      checkpoint: string;
      set: string[];
      json?: boolean;
      data?: string;
      export?: string;
      grid: string;
    }) => {
      refuseGrant(opts.grant);
      if (opts.grid !== "network" && opts.grid !== "source") {
        throw new UserError(`Unknown grid "${opts.grid}"; use network or source`);
      }
      if (!["val", "validation", "test"].includes(opts.split)) {
        throw new UserError(`Unknown split "${opts.split}"; known splits: val, test`);
      }
      if (!["best", "latest"].includes(opts.checkpoint)) {
        throw new UserError(`Unknown checkpoint "${opts.checkpoint}"; use best or latest`);
      }
      const dir = new RunDir(runDir);
      const ckpt = dir.checkpoint(opts.checkpoint as "best" | "latest");
      try {
        await Deno.stat(ckpt);
      } catch {
        throw new UserError(`Cannot evaluate "${runDir}": ${ckpt} does not exist`);
      }
      const recipeFile = dir.file("recipe");
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
        baseDir: (await dir.info()).baseDir,
        out: null,
        progress: false,
      });
      try {
        await trainer.loadCheckpoint(ckpt, { weightsOnly: true });
        const split = opts.split === "test" ? "test" : "validation";
        const predictions: [Volume, Uint8Array][] = [];
        // --grid source exports from the probabilities the evaluation computed (one pass)
        const source = opts.export && opts.grid === "source"
          ? sourceGridExport(opts.export, trainer, loaded)
          : null;
        const ev = await trainer.evaluate(split, undefined, {
          onPrediction: !opts.export
            ? undefined
            : source
            ? (v, p, probabilities) => source.add(v, p, probabilities)
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
        if (opts.json) console.log(JSON.stringify(ev, null, 2));
        else {printTable(
            ev,
            `${runDir} (${opts.checkpoint}.ckpt) on ${split}: ${formatDice(ev.dice)}`,
          );}
      } finally {
        trainer.dispose();
      }
    });
}
