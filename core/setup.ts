/**
 * Setting up a run from a validated recipe, before its first step: plugin modules, backend,
 * dataset (checked), supervised loss, networks, transform and the run folder, in the order
 * that creates the folder only once everything else worked.
 *
 * @module
 */
import { initBackend } from "../runtime/backend.ts";
import { datasets, type SegmentationDataset } from "./dataset.ts";
import { UserError } from "./errors.ts";
import { losses, type SupervisedLoss } from "./loss.ts";
import type { SegmentationModel } from "./model.ts";
import { createNetworks, type NamedRegularizer } from "./networks.ts";
import { loadPluginModules } from "./plugin_modules.ts";
import { type PluginOptions, type Recipe, validatePluginOptions } from "./recipe.ts";
import {
  callPlugin,
  callPluginAsync,
  formatShape,
  PluginError,
  type PluginRef,
} from "./plugin_errors.ts";
import { RunDir } from "./run_dir.ts";
import { type InvertibleTransform, transforms } from "./transform.ts";

/** Options of `Trainer.create` and {@linkcode setUpRun}. */
export interface TrainerOptions {
  /** Directory of the recipe file (relative dataset paths). @default {Deno.cwd()} */
  baseDir?: string;
  /** The run directory; `null` writes nothing (e.g. `eval`, benchmarks). @default {runs/<name>/<time>-seed<N>} */
  out?: string | null;
  /** The resolved recipe to write into the run directory. @default {the recipe} */
  resolved?: Record<string, unknown>;
  /** The recipe file the run came from (written to `run.json`). */
  recipeFile?: string;
  /** The recipe's file as messages name it. @default {recipeFile, else "<inline>"} */
  source?: string;
  /** Show progress on standard error. @default {true} */
  progress?: boolean;
  /**
   * `out` is the run being resumed (`Trainer.resume` sets it). Without it, an `out`
   * that already holds a run (a checkpoint, metrics or a summary) is refused: runs are never
   * overwritten.
   */
  resuming?: boolean;
  /** Messages (loading, validation), default to standard error. */
  log?: (line: string) => void;
}

/** What a trainer is made of: everything {@linkcode setUpRun} built. */
export interface TrainerParts {
  /** The validated recipe. */
  recipe: Recipe;
  /** The loaded dataset. */
  dataset: SegmentationDataset;
  /** The student network. */
  model: SegmentationModel;
  /** The transform `T` of the consistency terms. */
  transform: InvertibleTransform;
  /** The regularizers, by unique name. */
  regularizers: NamedRegularizer[];
  /** The supervised loss. */
  supervisedLoss: SupervisedLoss;
  /** The tfjs backend in use. */
  backend: string;
  /** The run folder, or `null` when the run writes nothing. */
  runDir: RunDir | null;
  /** Where messages go. */
  log: (line: string) => void;
  /** Show progress. */
  progress: boolean;
  /** `performance.now()` when the set-up started. */
  wallStart: number;
  /** Seconds spent loading the dataset. */
  secondsData: number;
  /** The prefix of the networks' variable names. */
  scope: string;
}

/**
 * Build everything a run needs from a validated recipe: backend, plugin modules, dataset,
 * model, transform, regularizers. The run directory is created only once all of that worked.
 * The plugins must be registered before: importing `mod.ts` registers the built-in ones (or
 * call `registerBuiltins()` from `plugins/mod.ts`); the trainer itself registers nothing.
 *
 * A failure after the networks were built (a regularizer whose `create` throws, an unwritable
 * run folder) frees everything built so far. The variables of each trainer live in their own
 * scope, so several trainers can live in one process.
 */
export async function setUpRun(
  recipe: Recipe,
  options: TrainerOptions = {},
): Promise<TrainerParts> {
  const wallStart = performance.now();
  if (options.out && !options.resuming) await new RunDir(options.out).refuseExisting();
  const log = options.log ?? ((line: string) => console.error(line));
  const baseDir = options.baseDir ?? Deno.cwd();
  await loadPluginModules(recipe.plugins);
  const parsed = validatePluginOptions(
    recipe,
    options.source ?? options.recipeFile ?? "<inline>",
  );
  const backend = await initBackend(recipe.backend, {
    threads: recipe.threads,
    kernels: recipe.kernels,
    log,
  });
  const dataStart = performance.now();
  const datasetPlugin: PluginRef = { kind: "dataset", id: recipe.dataset.type, entry: "dataset" };
  const dataset = await callPluginAsync(
    datasetPlugin,
    { method: "load()", expected: "a dataset" },
    () =>
      datasets.get(recipe.dataset.type).load(parsed.dataset, { seed: recipe.seed, baseDir, log }),
  );
  const secondsData = (performance.now() - dataStart) / 1000;
  checkDatasetShapes(datasetPlugin, dataset);
  checkDataset(dataset, recipe);
  const numClasses = dataset.classNames.length;
  const lossPlugin: PluginRef = { kind: "loss", id: parsed.supervised.type, entry: "supervised" };
  const supervisedLoss = callPlugin(
    lossPlugin,
    { method: "create()", expected: "a loss function" },
    () => losses.get(parsed.supervised.type).create(parsed.supervised.options, { numClasses }),
  );
  const networks = createNetworks(recipe, parsed, numClasses);
  try {
    return await finishSetUp(recipe, options, {
      parsed,
      networks,
      supervisedLoss,
      dataset,
      backend,
      baseDir,
      log,
      wallStart,
      secondsData,
    });
  } catch (error) {
    networks.dispose();
    throw error;
  }
}

/** The part of {@linkcode setUpRun} after the networks exist (its caller frees them when this throws). */
async function finishSetUp(
  recipe: Recipe,
  options: TrainerOptions,
  built: {
    parsed: PluginOptions;
    networks: ReturnType<typeof createNetworks>;
    supervisedLoss: SupervisedLoss;
    dataset: SegmentationDataset;
    backend: string;
    baseDir: string;
    log: (line: string) => void;
    wallStart: number;
    secondsData: number;
  },
): Promise<TrainerParts> {
  const { parsed, networks, supervisedLoss, dataset, backend, baseDir, log } = built;
  const { model, regularizers: regs } = networks;
  checkRegularizersRun(regs);
  const transform = callPlugin(
    { kind: "transform", id: recipe.transform.type, entry: "transform" },
    { method: "create()", expected: "a transform" },
    () => transforms.get(recipe.transform.type).create(parsed.transform),
  );
  let runDir: RunDir | null = null;
  if (options.out !== null) {
    runDir = options.out !== undefined ? new RunDir(options.out) : RunDir.forRecipe(recipe);
    await runDir.start({
      resolved: options.resolved ?? recipe,
      splits: dataset.splits,
      baseDir,
      recipeFile: options.recipeFile,
      classNames: dataset.classNames,
      resuming: options.resuming,
    });
  }
  log(
    `backend ${backend} | dataset ${dataset.id}: ${dataset.labeled.count} labeled, ` +
      `${dataset.unlabeled.count} unlabeled slices, ${dataset.validation.length} validation ` +
      `volumes | model ${recipe.model.type} ${model.paramCount} parameters` +
      (runDir ? ` | run ${runDir.path}` : ""),
  );
  return {
    recipe,
    dataset,
    model,
    transform,
    regularizers: regs,
    supervisedLoss,
    backend,
    runDir,
    log,
    progress: options.progress ?? true,
    wallStart: built.wallStart,
    secondsData: built.secondsData,
    scope: networks.scope,
  };
}

/**
 * The trainer calls the regularizers only in steps that run the unlabeled batch, which it does
 * only when a regularizer declares `needsUnlabeled`: regularizers none of which does would never
 * run, and the run would silently be plain supervised training.
 */
function checkRegularizersRun(regs: NamedRegularizer[]): void {
  if (regs.length === 0 || regs.some((r) => r.instance.needsUnlabeled)) return;
  throw new UserError(
    `The regularizers (${regs.map((r) => r.name).join(", ")}) would never run: none declares ` +
      `needsUnlabeled, and the trainer calls regularizers only in steps that compute the ` +
      `unlabeled predictions. Set needsUnlabeled: true in the plugin (its loss gets the ` +
      `unlabeled batch and its transform), or remove the regularizers`,
  );
}

function checkDataset(d: SegmentationDataset, recipe: Recipe): void {
  if (d.labeled.count === 0) throw new UserError(`Dataset "${d.id}" has no labeled slices`);
  if (d.validation.length === 0) throw new UserError(`Dataset "${d.id}" has no validation volumes`);
  const needsU = recipe.regularizers.length > 0 && recipe.trainer.unlabeledBatch > 0;
  if (needsU && d.unlabeled.count === 0) {
    throw new UserError(
      `Dataset "${d.id}" has no unlabeled slices, but the recipe has regularizers`,
    );
  }
}

/**
 * What the trainer reads of a dataset has the shapes it reads it with: class names (background
 * and at least one class), slice sets of `count x height x width` values, volumes of
 * `D x H x W` values.
 *
 * @throws {PluginError} Naming the first field that does not.
 */
function checkDatasetShapes(plugin: PluginRef, d: SegmentationDataset): void {
  const fail = (what: string): never => {
    throw new PluginError(plugin, `load() returned a dataset whose ${what}`);
  };
  if (typeof d !== "object" || d === null) fail("value is not an object; expected a dataset");
  if (!Array.isArray(d.classNames) || d.classNames.length < 2) {
    fail(
      `classNames is ${JSON.stringify(d.classNames)}; expected the class names, background ` +
        `first, at least two`,
    );
  }
  const sliceSet = (name: "labeled" | "unlabeled", withLabels: boolean) => {
    const set = d[name];
    if (typeof set !== "object" || set === null) fail(`${name} is missing; expected a SliceSet`);
    const { count, height, width } = set;
    const n = count * height * width;
    if (![count, height, width].every((x) => Number.isInteger(x) && x >= 0)) {
      fail(`${name} has count ${count}, height ${height}, width ${width}; expected whole numbers`);
    }
    if (!(set.images instanceof Float32Array) || set.images.length !== n) {
      fail(
        `${name}.images holds ${set.images?.length} values; expected count x height x width = ` +
          `${count} x ${height} x ${width} = ${n} (a Float32Array)`,
      );
    }
    if (withLabels && (set.labels === null || set.labels?.length !== n)) {
      fail(
        `${name}.labels holds ${set.labels?.length ?? "no"} values; expected one label per ` +
          `pixel, ${n}`,
      );
    }
  };
  sliceSet("labeled", true);
  sliceSet("unlabeled", false);
  if (!Array.isArray(d.validation)) fail("validation is not an array of volumes");
  for (const [i, v] of [...d.validation, ...(d.test ?? [])].entries()) {
    const where = i < d.validation.length ? `validation[${i}]` : `test[${i - d.validation.length}]`;
    const shape = Array.isArray(v?.shape) ? v.shape : [];
    const n = shape.length === 3 ? shape.reduce((a, b) => a * b, 1) : NaN;
    if (!(n >= 0)) fail(`${where}.shape is ${formatShape(shape)}; expected [depth, height, width]`);
    if (v.image?.length !== n || v.label?.length !== n) {
      fail(
        `${where} has ${v.image?.length} image and ${v.label?.length} label values; expected ` +
          `${formatShape(shape)} = ${n} of each`,
      );
    }
  }
}
