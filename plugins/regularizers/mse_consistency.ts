/**
 * MSE consistency, the paper's "Ours (MSE)" variant of Eq. 8: the mean squared difference
 * between `f(x)` and `T^-1(f(T(x)))`, over the valid pixels of the unlabeled batch; with the
 * recipe's `pairing: forward`, between `T f(x)` and `f(T x)` (the authors' code).
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import { pairedPredictions, type RegularizerFactory } from "../../core/regularizer.ts";
import { maskedMean, stopSides } from "./_masked.ts";

/** Options of {@linkcode mseConsistency}. */
export interface MseConsistencyOptions {
  /** `[B, H, W, 1]` mask of the pixels to average over. @default {all pixels} */
  mask?: tf.Tensor;
}

/**
 * Mean over the valid pixels **and** the classes of `(p - q)^2`, for probability maps `p`, `q`
 * `[B, H, W, C]`: `sum_{x valid} sum_c (p_c(x) - q_c(x))^2 / (C * #valid)`. Without a mask this
 * is PyTorch's `F.mse_loss(p, q)` (mean over all elements), as in the reference code; the value
 * is `1/C` of the per-pixel squared Euclidean distance. Zero when the mask is empty.
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { mseConsistency } from "./mse_consistency.ts";
 * const p = tf.tensor4d([0.5, 0.5], [1, 1, 1, 2]);
 * const q = tf.tensor4d([0.9, 0.1], [1, 1, 1, 2]);
 * mseConsistency(p, q); // (0.4^2 + 0.4^2) / 2 = 0.16
 * ```
 */
export function mseConsistency(
  p: tf.Tensor4D,
  q: tf.Tensor4D,
  options: MseConsistencyOptions = {},
): tf.Scalar {
  if (p.shape.join() !== q.shape.join()) {
    throw new Error(`mseConsistency: shapes differ, ${p.shape} vs ${q.shape}`);
  }
  return tf.tidy(() => {
    const perPixel = tf.mean(tf.squaredDifference(p, q), 3);
    return maskedMean(perPixel, options.mask);
  });
}

/** Recipe options of the `mse` regularizer. */
export const mseOptions = z.object({
  stopGradient: z.enum(["none", "source", "target"]).default("none").describe(
    "Which side gets no gradient: `source` = the clean prediction's side (f(x); T f(x) with " +
      "`pairing: forward`), `target` = the transformed image's side (T^-1 f(T x); f(T x)).",
  ),
  mask: z.boolean().default(true).describe(
    "Leave out pixels the pairing's warp brought in from outside the image.",
  ),
}).strict();

/** The `mse` regularizer plugin (the MSE form of Eq. 8). */
export const mseRegularizer: RegularizerFactory<z.infer<typeof mseOptions>> = {
  id: "mse",
  description:
    "Mean squared difference between f(x) and T^-1(f(T(x))) (T f(x) and f(T x) with pairing: forward), over valid pixels and classes",
  options: mseOptions,
  create: (options) => ({
    id: "mse",
    needsUnlabeled: true,
    loss(ctx) {
      return tf.tidy(() => {
        const pair = pairedPredictions(ctx);
        const [p, q] = stopSides(pair.source, pair.target, options.stopGradient);
        return mseConsistency(p as tf.Tensor4D, q as tf.Tensor4D, {
          mask: options.mask ? pair.mask : undefined,
        });
      });
    },
  }),
};
