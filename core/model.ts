/**
 * The model interface: a segmentation network as plain `tf.Variable`s and a forward function,
 * which keeps weight averaging (mean teacher), checkpoints and custom training loops simple.
 *
 * @module
 */
import type { tf, z } from "../deps.ts";
import { Registry } from "./registry.ts";

/** A segmentation network mapping `[B, H, W, C_in]` images to `[B, H, W, numClasses]` logits. */
export interface SegmentationModel {
  /** Weights the optimizer updates, by unique name. */
  readonly trainable: Map<string, tf.Variable>;
  /** Non-trainable state (batch-norm running statistics), by unique name. */
  readonly state: Map<string, tf.Variable>;
  /** Number of trainable scalars. */
  readonly paramCount: number;
  /**
   * Forward pass. `training` uses batch statistics, updates the running statistics and applies
   * dropout (drawing its randomness from `seed` when given).
   */
  apply(x: tf.Tensor4D, options?: { training?: boolean; seed?: number }): tf.Tensor4D;
  /** Free every variable. */
  dispose(): void;
}

/** What a model factory gets besides its own options. */
export interface ModelContext {
  /** Input channels. */
  inChannels: number;
  /** Output classes (background included). */
  numClasses: number;
  /** Seed for the initial weights. */
  seed: number;
  /** Prefix of variable names (two models may coexist, e.g. student and teacher). */
  name?: string;
}

/** A model plugin. */
export interface ModelFactory<O = Record<string, unknown>> {
  readonly id: string;
  readonly description: string;
  readonly options: z.ZodType<O, z.ZodTypeDef, unknown>;
  create(options: O, context: ModelContext): SegmentationModel;
}

/** All model plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const models: Registry<ModelFactory<any>> = new Registry("model");
