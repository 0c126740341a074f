/**
 * Invertible transforms (MONAI style): random parameters are sampled separately from applying
 * them, and returned as values, never kept as hidden state.
 *
 * @module
 */
import type { tf, z } from "../deps.ts";
import type { Rng } from "./rng.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/** Interpolation used by {@linkcode InvertibleTransform.apply}. */
export type Interpolation = "bilinear" | "nearest";

/** An invertible spatial transform on `[B, H, W, C]` tensors. */
export interface InvertibleTransform<P = unknown> {
  readonly id: string;
  /** Draw the parameters for a batch of `batch` images of `height x width`. */
  sample(rng: Rng, batch: number, height: number, width: number): P;
  /** `T(x)`: zeros where the source falls outside the image. */
  apply(x: tf.Tensor4D, params: P, interpolation?: Interpolation): tf.Tensor4D;
  /** `T^-1(y)`: differentiable in `y` (used on predictions). */
  invert(y: tf.Tensor4D, params: P): tf.Tensor4D;
  /**
   * `[B, H, W, 1]` mask, 1 where `invert(apply(x))` carries information about `x`, 0 where the
   * inverse brought in pixels from outside `T(x)`.
   */
  validMask(params: P, height: number, width: number): tf.Tensor4D;
}

/** A transform plugin. */
export interface TransformFactory<O = Record<string, unknown>, P = unknown> {
  readonly id: string;
  readonly description: string;
  readonly options: z.ZodType<O, z.ZodTypeDef, unknown>;
  create(options: O): InvertibleTransform<P>;
}

/** All transform plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const transforms: Registry<TransformFactory<any, any>> = sharedRegistry("transform");
