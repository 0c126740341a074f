/**
 * Invertible transforms (MONAI style): random parameters are sampled separately from applying
 * them, and returned as values, never kept as hidden state.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { OptionsSchema } from "./types.ts";
import type { Rng } from "./rng.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/** Interpolation used by {@linkcode InvertibleTransform.apply}. */
export type Interpolation = "bilinear" | "nearest";

/** An invertible spatial transform on `[B, H, W, C]` tensors. */
export interface InvertibleTransform<P = unknown> {
  /** The id of the plugin that made it. */
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
  /**
   * `[B, H, W, 1]` mask, 1 where `apply(y)` reads only pixels inside `y` (the forward form's
   * mask: `T f(x)` carries information there), 0 where it brought in zeros from outside. Optional:
   * {@linkcode forwardValidMask} falls back to warping an image of ones.
   */
  forwardValidMask?(params: P, height: number, width: number): tf.Tensor4D;
}

/**
 * The forward form's valid-pixel mask of `transform` (see
 * {@linkcode InvertibleTransform.forwardValidMask}). For a transform without that method: 1 where
 * `apply` of an image of ones gives 1 (to within 1e-4), else 0; `batch` defaults to the batch of
 * `validMask(params)`.
 */
export function forwardValidMask<P>(
  transform: InvertibleTransform<P>,
  params: P,
  height: number,
  width: number,
  batch?: number,
): tf.Tensor4D {
  if (transform.forwardValidMask) return transform.forwardValidMask(params, height, width);
  return tf.tidy(() => {
    const b = batch ?? transform.validMask(params, height, width).shape[0];
    const warped = transform.apply(tf.ones([b, height, width, 1]), params, "bilinear");
    return tf.cast(tf.greater(warped, 1 - 1e-4), "float32") as tf.Tensor4D;
  });
}

/** A transform plugin. */
export interface TransformFactory<O = Record<string, unknown>, P = unknown> {
  /** The id recipes name the plugin by (`type: <id>`), unique among plugins of its kind. */
  readonly id: string;
  /** One line shown by `deno task plugins`. */
  readonly description: string;
  /** Strict schema of the plugin's options (its recipe entry without `type`), with defaults. */
  readonly options: OptionsSchema<O>;
  /**
   * The option that holds nested transform entries (`{ type, ...options }`), as `compose`'s
   * `transforms` does: `validatePluginOptions` checks each entry's id and options like the
   * recipe's own `transform`, so `validate` catches a bad part before `run`.
   */
  readonly partsOption?: string;
  /** The transform for the parsed options (its random parameters are drawn by `sample`). */
  create(options: O): InvertibleTransform<P>;
}

/** All transform plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const transforms: Registry<TransformFactory<any, any>> = sharedRegistry("transform");
