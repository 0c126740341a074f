/**
 * Command-line interface: `run`, `validate`, `plugins`, `eval`, `predict`, `init`, `cache`,
 * `bench`, `sweep`, `table`, `plot` (installed as `mi-ssl` by `app/mi_ssl.ts`).
 *
 * Errors the user can fix end with one message on standard error and exit code 2.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { CACHE_DIR_ENV, datasets, defaultCacheDir, type Volume } from "../core/dataset.ts";
import { datasetOverride, exportPrediction, predictionFileName } from "./export.ts";
import { loadPredictor, predictScans, volumeOnSourceGrid, writeNiftiLabels } from "./predict.ts";
import { datasetPreprocessing } from "../core/dataset.ts";
import { models } from "../core/model.ts";
import { type LoadedRecipe, loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { regularizers } from "../core/regularizer.ts";
import { transforms } from "../core/transform.ts";
import { losses } from "../core/loss.ts";
import { formatDice } from "../core/evaluate.ts";
import { RunDir } from "../core/run_dir.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { InterruptedError, type Summary, Trainer } from "../core/trainer.ts";
import { formatDuration } from "../core/progress.ts";
import { volumeFormat } from "../io/volume.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { addBenchCommand } from "./bench.ts";
import { addServeCommand } from "./serve.ts";
import { initProject } from "./init.ts";
import {
  addCommand,
  EVAL_COMMAND,
  PREDICT_COMMAND,
  RUN_COMMAND,
  setOverrides,
} from "./commands.ts";
import { addResultCommands, runSweep, type SweepRunOptions } from "./results_cli.ts";

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `--grant` reaching the CLI itself: it was started without the launcher, so nothing grants. */
function refuseGrant(grants: string[]): void {
  if (grants.length === 0) return;
  throw new UserError(
    "--grant is read by deno task run / eval / predict (the launcher); started with deno run, " +
      "give Deno's own --allow-<kind> flags instead",
  );
}

/** `12.3 s` under a minute, else `5m09s` / `1h02m`. */
export function formatSeconds(seconds: number): string {
  return seconds < 59.95 ? `${seconds.toFixed(1)} s` : formatDuration(seconds);
}

/** The per-class table: Dice (%) and, where evaluated, HD95 (`n/a` where undefined). */
function printTable(
  summary: Pick<Summary, "dice" | "dice_mean"> & Partial<Summary>,
  title: string,
): void {
  const rows = Object.entries(summary.dice);
  const width = Math.max(10, ...rows.map(([k]) => k.length));
  const hd = summary.hd95;
  const cell = (v: number | null | undefined) =>
    typeof v === "number" && Number.isFinite(v) ? v.toFixed(2) : "n/a";
  const line = (name: string, dice: number, h?: number) =>
    console.log(
      `${name.padEnd(width)}  ${(100 * dice).toFixed(2).padStart(8)}` +
        (hd ? `  ${cell(h).padStart(9)}` : ""),
    );
  console.log(`\n${title}`);
  console.log(
    `${"class".padEnd(width)}  ${"Dice (%)".padStart(8)}` +
      (hd ? `  ${`HD95 ${summary.hd95_unit === "voxels" ? "(vx)" : "(mm)"}`.padStart(9)}` : ""),
  );
  for (const [k, v] of rows) line(k, v, hd?.[k]);
  line("mean", summary.dice_mean, summary.hd95_mean);
  const undef = Object.entries(summary.hd95_undefined ?? {}).filter(([, n]) => n > 0);
  if (undef.length) {
    console.log(
      `HD95 undefined (class in only one of prediction and truth), left out of the mean: ` +
        undef.map(([k, n]) => `${k} ${n}`).join(", ") + " volume(s)",
    );
  }
}

/**
 * A scan's shape in the order its file lists the axes: NIfTI and MetaImage list them fastest
 * first (x, y, z: the reverse of a `VolumeData` shape, which is slowest first); HDF5 and PNG
 * slices as stored.
 */
export function fileAxisOrder(shape: number[], path: string): number[] {
  const format = volumeFormat(path);
  return format === "nifti" || format === "metaimage" ? [...shape].reverse() : shape;
}

/** Some items of a command failed (each reported already): exit code 1. */
class PartialFailure extends Error {}

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

/** Build the CLI program (exported for tests). */
export function buildProgram(): Command {
  registerBuiltins();
  const program = new Command()
    .name("mi-ssl")
    .description(
      "Semi-supervised medical image segmentation with mutual-information regularisation " +
        "(Peng et al., MIDL 2020)",
    )
    .exitOverride()
    .showHelpAfterError(false);

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
        if (trainer.runDir) console.log(`\nrun directory: ${trainer.runDir}`);
      } finally {
        for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
        trainer.dispose();
      }
    });

  program.command("validate")
    .description("Check recipes (schema, extends, plugin ids and options) without training")
    .argument("<recipes...>", "YAML recipe files")
    .option("--set <path=value>", "override a recipe field (repeatable)", collect, [])
    .action(async (files: string[], opts: { set: string[] }) => {
      registerBuiltins();
      for (const file of files) {
        const loaded = await loadRecipe(file, { set: opts.set });
        await loadPluginModules(loaded.recipe.plugins);
        validatePluginOptions(loaded.recipe, loaded.file);
        console.log(`ok ${file}`);
      }
    });

  program.command("plugins")
    .description("List the registered plugins and their options")
    .option("--json", "machine-readable output")
    .option("--plugin <module>", "also load a plugin module (repeatable)", collect, [])
    .action(async (opts: { json?: boolean; plugin: string[] }) => {
      registerBuiltins();
      await loadPluginModules(opts.plugin);
      const kinds = {
        dataset: datasets,
        model: models,
        transform: transforms,
        regularizer: regularizers,
        loss: losses,
      };
      const out: Record<
        string,
        Array<{ id: string; description: string; options: Record<string, OptionInfo> }>
      > = {};
      for (const [kind, registry] of Object.entries(kinds)) {
        out[kind] = registry.entries().map((e) => ({
          id: e.id,
          description: e.description ?? "",
          options: describeOptions(e.options),
        }));
      }
      if (opts.json) {
        console.log(JSON.stringify(out, null, 2));
        return;
      }
      for (const [kind, entries] of Object.entries(out)) {
        console.log(`${kind === "loss" ? "losses" : `${kind}s`}:`);
        for (const e of entries) {
          console.log(`  ${e.id}  ${e.description}`);
          for (const [k, o] of Object.entries(e.options)) {
            console.log(`      ${k}: ${o.type}${o.description ? `  ${o.description}` : ""}`);
          }
        }
      }
    });

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

  addCommand(program, PREDICT_COMMAND)
    .action(async (runDir: string, inputs: string[], opts: {
      out: string;
      format: string;
      checkpoint: string;
      backend?: string;
      json?: boolean;
      grant: string[];
    }) => {
      refuseGrant(opts.grant);
      if (opts.format !== "same" && opts.format !== "nifti") {
        throw new UserError(`Unknown format "${opts.format}"; use same or nifti`);
      }
      if (opts.checkpoint !== "best" && opts.checkpoint !== "latest") {
        throw new UserError(`Unknown checkpoint "${opts.checkpoint}"; use best or latest`);
      }
      const predictor = await loadPredictor(runDir, {
        checkpoint: opts.checkpoint,
        backend: opts.backend,
      });
      try {
        const p = predictor.prep;
        console.error(
          `predict with ${predictor.checkpoint} (backend ${predictor.backend}): classes ` +
            `${predictor.classNames.join(", ")}; preprocessing: ${p.size} x ${p.size} ` +
            `slices (fit ${p.fit}, normalize ${p.normalize}, slice axis ${p.sliceAxis}` +
            (p.window ? `, window [${p.window.join(", ")}]` : "") + ")",
        );
        const { written, failed } = await predictScans(predictor, inputs, {
          out: opts.out,
          format: opts.format,
          onResult: opts.json ? undefined : (r) => {
            if ("message" in r) console.log(`FAIL  ${r.input}: ${r.message}`);
            else {
              const counts = Object.entries(r.voxels).slice(1).map(([k, v]) => `${k} ${v}`);
              console.log(
                `ok    ${r.input} -> ${r.output} (${
                  fileAxisOrder(r.shape, r.input).join(" x ")
                }; ` +
                  `voxels ` +
                  `${counts.join(", ")}; ${r.seconds.toFixed(1)} s)`,
              );
            }
          },
        });
        if (opts.json) console.log(JSON.stringify({ written, failed }, null, 2));
        const line = `${written.length + failed.length} scan(s): ${written.length} ` +
          `prediction(s) written to ${opts.out}, ${failed.length} failed`;
        if (failed.length) throw new PartialFailure(line);
        console.error(line);
      } finally {
        predictor.dispose();
      }
    });

  program.command("cache")
    .description(
      `Show the dataset cache folder (${CACHE_DIR_ENV}, else $XDG_CACHE_HOME/mi-ssl or ` +
        `~/.cache/mi-ssl) and its size, or empty it`,
    )
    .option("--clear", "remove every cached dataset")
    .action(async (opts: { clear?: boolean }) => {
      const dir = defaultCacheDir();
      if (dir === null) {
        throw new UserError(
          `No dataset cache folder: set ${CACHE_DIR_ENV}, XDG_CACHE_HOME or HOME`,
        );
      }
      let bytes = 0, files = 0;
      const walk = async (d: string) => {
        for await (const e of Deno.readDir(d)) {
          const p = `${d}/${e.name}`;
          if (e.isDirectory) await walk(p);
          else if (e.isFile) {
            bytes += (await Deno.stat(p)).size;
            files++;
          }
        }
      };
      try {
        await walk(dir);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      const size = `${files} files, ${(bytes / 1e6).toFixed(1)} MB`;
      if (!opts.clear) {
        console.log(`dataset cache: ${dir} (${size}); deno task cache --clear empties it`);
        return;
      }
      // only what the cache writes: entry folders named <dataset>-<key hash>
      let removed = 0;
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.isDirectory && /-[0-9a-f]{16}$/.test(e.name)) {
            await Deno.remove(`${dir}/${e.name}`, { recursive: true });
            removed++;
          }
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      console.log(`cleared the dataset cache ${dir}: ${removed} dataset entries (${size})`);
    });

  program.command("init")
    .description(
      "Write a project template into a folder: a recipe on the folder dataset (data/images, " +
        "data/labels) and a regularizer plugin it loads",
    )
    .argument("<folder>", "the project folder (created where missing)")
    .option("--force", "overwrite template files that exist already")
    .action(async (folder: string, opts: { force?: boolean }) => {
      const files = await initProject(folder, { force: opts.force });
      for (const f of files) console.log(f);
      console.log(
        `\nput image / label pairs in ${join(folder, "data", "images")} and ` +
          `${join(folder, "data", "labels")}, then, in ${folder}: mi-ssl run recipe.yaml`,
      );
    });

  addBenchCommand(program);
  addResultCommands(program);
  addServeCommand(program, () => taskCwd() ?? Deno.cwd());

  return program;
}

/** What `plugins` shows of one option: its type (and default) and its `.describe()` text. */
interface OptionInfo {
  /** The zod type, with the allowed values of an enum and the default: `number = 16`. */
  type: string;
  /** The field's description (zod `.describe()`), `""` when it has none. */
  description: string;
}

/** The type, default and description of each field of a zod object schema. */
function describeOptions(schema: unknown): Record<string, OptionInfo> {
  // deno-lint-ignore no-explicit-any
  let s = schema as any;
  while (s?._def?.innerType || s?._def?.schema) s = s._def.innerType ?? s._def.schema;
  const shape = typeof s?._def?.shape === "function" ? s._def.shape() : s?._def?.shape;
  if (!shape) return {};
  const out: Record<string, OptionInfo> = {};
  for (const [key, field] of Object.entries(shape)) {
    // deno-lint-ignore no-explicit-any
    let f = field as any;
    let def: unknown = undefined;
    let description: string | undefined;
    const kinds: string[] = [];
    while (f?._def) {
      if (f._def.typeName === "ZodDefault") def = f._def.defaultValue();
      description ??= f._def.description;
      kinds.push(f._def.typeName.replace(/^Zod/, "").toLowerCase());
      if (!f._def.innerType && !f._def.schema) break;
      f = f._def.innerType ?? f._def.schema;
    }
    const kind = kinds.filter((k) => !["default", "optional", "effects"].includes(k)).join(" ");
    const values = f?._def?.values ? ` (${f._def.values.join(" | ")})` : "";
    out[key] = {
      type: `${kind}${values}${def !== undefined ? ` = ${JSON.stringify(def)}` : ""}`,
      description: description ?? "",
    };
  }
  return out;
}

/** Run the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof InterruptedError) {
      console.error(error.message);
      return error.exitCode;
    }
    if (error instanceof PartialFailure) {
      console.error(`error: ${error.message}`);
      return 1;
    }
    if (error instanceof UserError || (error as Error)?.name === "UserError") {
      console.error(`error: ${(error as Error).message}`);
      return 2;
    }
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      console.error(
        `error: this run was not granted a permission it needs: ${(error as Error).message}\n` +
          `deno task run / eval grant a run only what its recipes need (README, "Permissions"); ` +
          `grant more with --grant, e.g. deno task run --grant read=/data recipe.yaml, or run ` +
          `deno run <flags> app/cli.ts run ... yourself`,
      );
      return 2;
    }
    throw error;
  }
}

/**
 * The folder a `deno task` command was typed in: deno task runs a task in the project's folder
 * (this framework's root) and passes the folder it was typed in as `INIT_CWD`. `undefined` when
 * the process was started elsewhere (by the launcher, by `mi-ssl`, by `deno run` in another
 * folder) or may not read `INIT_CWD`: then the working directory is the user's already.
 */
export function taskCwd(): string | undefined {
  try {
    const init = Deno.env.get("INIT_CWD");
    const root = fileURLToPath(new URL("..", import.meta.url));
    if (!init || !isAbsolute(init) || resolve(Deno.cwd()) !== resolve(root)) return undefined;
    return Deno.statSync(init).isDirectory ? init : undefined;
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  // every path on the command line is relative to where it was typed, for every command
  const cwd = taskCwd();
  if (cwd !== undefined) Deno.chdir(cwd);
  Deno.exit(await main(Deno.args));
}
