/**
 * The model interface: a segmentation network as plain `tf.Variable`s and a forward function,
 * which keeps weight averaging (mean teacher), checkpoints and custom training loops simple.
 *
 * ## The contract a model plugin keeps
 *
 * A {@linkcode ModelFactory} (`id`, `description`, a zod `options` schema, `create`) builds a
 * {@linkcode SegmentationModel} from its parsed options and a {@linkcode ModelContext}:
 *
 * - **Input and output.** `apply` maps `[B, H, W, inChannels]` float32 images to
 *   `[B, H, W, numClasses]` logits (no softmax). Today every dataset gives one channel
 *   (`inChannels` is 1: `SliceSet.images` hold one intensity per pixel); a model reads
 *   `context.inChannels` rather than assuming it. Image sides it cannot take (a U-Net needs
 *   multiples of `2^(depth-1)`) are a `UserError` that says which `dataset.size` would do.
 * - **Variables and their names.** Every weight is a `tf.Variable` in `trainable` (what the
 *   optimizer updates) or `state` (non-trainable: batch-norm running statistics), keyed by
 *   `<context.name>/<path>`, e.g. `student/down0/conv0/kernel`. These keys are what checkpoints
 *   store and what a mean teacher pairs (by the path after the first `/`), so two models built
 *   from the same options under different names must have the same paths and shapes. The tfjs
 *   name of each variable (tfjs keeps one registry per process) is the key with
 *   `context.scope` in front ({@linkcode variableName}); the trainer gives each run its own
 *   scope, so two runs can live in one process. A model that ignores `scope` still works
 *   alone, but a second run beside it fails with tfjs's "already registered" error.
 * - **Training mode.** `apply(x, { training: true })` uses batch statistics, updates the
 *   running statistics in `state` (by assignment, outside the gradient) and applies dropout
 *   seeded by `seed`; `training: false` uses the running statistics and no dropout, and changes
 *   nothing. The built-in U-Net keeps PyTorch's convention: `running = (1 - momentum) * running
 *   + momentum * batch`, with the unbiased (n / (n - 1)) batch variance.
 * - **Per-group batch norm.** `groups` (sizes summing to B) asks that each consecutive group
 *   of the batch be normalised with its own statistics, as if each went through the network
 *   alone, while the convolutions run once over the whole batch: the trainer runs
 *   `[x_l, x_u, T(x_u)]` in one call with `groups: [Bl, Bu, Bu]` (`trainer.batchNormStatistics:
 *   per-group`). A model without batch norm ignores it; one that cannot honour it should throw.
 * - **Lifetime.** `dispose()` frees every variable (it may be called once the model is no
 *   longer used, and must leave no tensor behind); `paramCount` counts trainable scalars.
 *
 * `examples/tiny_model.ts` is a complete, tested example (see `docs/plugins.md`).
 *
 * @module
 */
import type { tf } from "../deps.ts";
import type { OptionsSchema } from "./types.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/** Options of {@linkcode SegmentationModel.apply}. */
export interface ApplyOptions {
  /**
   * Use batch statistics, update the running statistics and apply dropout. @default {false}
   */
  training?: boolean;
  /** Seed of the dropout masks. */
  seed?: number;
  /**
   * Sizes of consecutive groups of the batch (summing to B) whose batch-norm statistics are
   * computed separately, as if each group went through the network on its own, while the
   * convolutions still run once over the whole batch. @default {one group}
   */
  groups?: number[];
}

/** A segmentation network mapping `[B, H, W, C_in]` images to `[B, H, W, numClasses]` logits. */
export interface SegmentationModel {
  /** Weights the optimizer updates, by unique name. */
  readonly trainable: Map<string, tf.Variable>;
  /** Non-trainable state (batch-norm running statistics), by unique name. */
  readonly state: Map<string, tf.Variable>;
  /** Number of trainable scalars. */
  readonly paramCount: number;
  /** Forward pass: `[B, H, W, C_in]` images to `[B, H, W, numClasses]` logits. */
  apply(x: tf.Tensor4D, options?: ApplyOptions): tf.Tensor4D;
  /** Free every variable. */
  dispose(): void;
}

/** What a model factory gets besides its own options. */
export interface ModelContext {
  /** Input channels (the dataset's; 1 for every built-in dataset). */
  inChannels: number;
  /** Output classes (background included). */
  numClasses: number;
  /** Seed for the initial weights. */
  seed: number;
  /**
   * Prefix of the variables' keys in `trainable` / `state` (two models may coexist in a run,
   * e.g. `student` and `teacher`). @default {the model's own, e.g. "unet"}
   */
  name?: string;
  /**
   * Prefix of the tfjs variable names, in front of the keys (see {@linkcode variableName}):
   * unique per run, so that two runs' variables never clash in tfjs's process-wide registry.
   * @default {""}
   */
  scope?: string;
}

/**
 * The tfjs name of a model variable: `context.scope` followed by its key (`student/head/bias`).
 *
 * @example
 * ```ts
 * import { variableName } from "./model.ts";
 * variableName({ inChannels: 1, numClasses: 2, seed: 1, scope: "run3/" }, "student/head/bias");
 * // "run3/student/head/bias"
 * ```
 */
export function variableName(context: Pick<ModelContext, "scope">, key: string): string {
  return `${context.scope ?? ""}${key}`;
}

const SCOPES = Symbol.for("mi-ssl.variableScopes");

/**
 * A fresh variable scope, unique in the process: `run1/`, `run2/`, ... (the counter lives on
 * `globalThis`, so copies of this module loaded from two URLs do not hand out the same one).
 */
export function uniqueVariableScope(label = "run"): string {
  const g = globalThis as unknown as Record<symbol, number>;
  g[SCOPES] = (g[SCOPES] ?? 0) + 1;
  return `${label}${g[SCOPES]}/`;
}

/** A model plugin. */
export interface ModelFactory<O = Record<string, unknown>> {
  /** The id recipes name the plugin by (`type: <id>`), unique among plugins of its kind. */
  readonly id: string;
  /** One line shown by `deno task plugins`. */
  readonly description: string;
  /** Strict schema of the plugin's options (its recipe entry without `type`), with defaults. */
  readonly options: OptionsSchema<O>;
  /** A new network from the parsed options (see the contract in this module's doc). */
  create(options: O, context: ModelContext): SegmentationModel;
}

/** All model plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const models: Registry<ModelFactory<any>> = sharedRegistry("model");
