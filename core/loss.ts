/**
 * The supervised-loss interface: `L_sup` of the objective, computed on the labeled batch. A loss
 * plugin is a factory (id, description, options schema) whose `create` returns the loss function;
 * recipes pick one with `supervised: { type: <id>, weight: w, ...options }`.
 *
 * @module
 */
import type { tf } from "../deps.ts";
import type { OptionsSchema } from "./types.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/**
 * A supervised loss: the mean loss of `logits` `[B, H, W, C]` against integer `labels`
 * `[B, H, W]`, as a scalar. `mask` `[B, H, W, 1]` (optional) weights the pixels (0 leaves a pixel
 * out). Runs synchronously inside the trainer's `tidy` and gradient tape.
 */
export type SupervisedLoss = (
  logits: tf.Tensor4D,
  labels: tf.Tensor3D,
  mask?: tf.Tensor4D,
) => tf.Scalar;

/** What a loss factory gets besides its own options. */
export interface LossContext {
  /** Number of classes (the channels of the logits). */
  numClasses: number;
}

/** A supervised-loss plugin. */
export interface LossFactory<O = Record<string, unknown>> {
  /** The id recipes name the plugin by (`type: <id>`), unique among plugins of its kind. */
  readonly id: string;
  /** One line shown by `deno task plugins`. */
  readonly description: string;
  /** Strict schema of the plugin's options (its recipe entry without `type`), with defaults. */
  readonly options: OptionsSchema<O>;
  /** The loss function for the parsed options. */
  create(options: O, context: LossContext): SupervisedLoss;
}

/** All supervised-loss plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const losses: Registry<LossFactory<any>> = sharedRegistry("loss", "losses");
