/**
 * The model interface: a segmentation network as plain `tf.Variable`s and a forward function,
 * which keeps weight averaging (mean teacher), checkpoints and custom training loops simple.
 *
 * @module
 */
import type { tf, z } from "../deps.ts";
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
export const models: Registry<ModelFactory<any>> = sharedRegistry("model");
