/**
 * The TensorFlow.js and zod types of the public interfaces, under names of this package: what a
 * plugin author writes in type positions (`Scalar`, `Tensor4D`, `OptionsSchema<O>`), and what
 * the API documentation can name. They are the tfjs / zod types themselves, not wrappers.
 *
 * @module
 */
import type { tf, z } from "../deps.ts";

/** A tensor of any rank (TensorFlow.js `tf.Tensor`). */
export type Tensor = tf.Tensor;
/** A rank-0 tensor, e.g. a loss value (`tf.Scalar`). */
export type Scalar = tf.Scalar;
/** A rank-1 tensor, e.g. per-channel parameters (`tf.Tensor1D`). */
export type Tensor1D = tf.Tensor1D;
/** A rank-3 tensor, e.g. integer labels `[B, H, W]` (`tf.Tensor3D`). */
export type Tensor3D = tf.Tensor3D;
/** A rank-4 tensor, e.g. images or class maps `[B, H, W, C]` (`tf.Tensor4D`). */
export type Tensor4D = tf.Tensor4D;
/** A mutable tensor holding a weight or a running statistic (`tf.Variable`). */
export type Variable = tf.Variable;

/**
 * The schema of a plugin's options: a zod schema that parses the plugin's recipe entry (all but
 * `type`, and `weight` / `name` for regularizers) into the options `O`, defaults applied, and
 * rejects unknown keys (`z.object({...}).strict()`).
 */
export type OptionsSchema<O> = z.ZodType<O, z.ZodTypeDef, unknown>;
