/**
 * Supervised pixel-wise cross-entropy, `L_sup` of the paper (the `cross-entropy` loss plugin).
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import type { LossFactory } from "../../core/loss.ts";
import { softmaxCeAvailable, softmaxCrossEntropyFused } from "../../runtime/kernels/softmax_ce.ts";

/**
 * Mean pixel-wise cross-entropy of `logits` `[B, H, W, C]` against integer `labels` `[B, H, W]`,
 * in nats. With `mask` `[B, H, W, 1]`, the mask-weighted mean (0 when the mask is empty).
 * With `kernels: custom` on `cpu` and webgpu, one fused softmax cross-entropy kernel and one
 * gradient kernel (`runtime/kernels/softmax_ce.ts`); with `builtin`, and on `wasm` (faster
 * there), tfjs's ops ({@linkcode crossEntropyComposed}).
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { crossEntropy } from "./cross_entropy.ts";
 * const logits = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
 * const labels = tf.zeros([1, 2, 2], "int32") as tf.Tensor3D;
 * crossEntropy(logits, labels); // log(4)
 * ```
 */
export function crossEntropy(
  logits: tf.Tensor4D,
  labels: tf.Tensor3D,
  mask?: tf.Tensor4D,
): tf.Scalar {
  if (softmaxCeAvailable()) return softmaxCrossEntropyFused(logits, labels, mask);
  return crossEntropyComposed(logits, labels, mask);
}

/** {@linkcode crossEntropy} composed from tfjs ops (the reference of the fused kernels). */
export function crossEntropyComposed(
  logits: tf.Tensor4D,
  labels: tf.Tensor3D,
  mask?: tf.Tensor4D,
): tf.Scalar {
  return tf.tidy(() => {
    const c = logits.shape[3];
    const oneHot = tf.oneHot(tf.cast(labels, "int32"), c);
    const logp = tf.logSoftmax(logits, 3);
    const perPixel = tf.neg(tf.sum(tf.mul(oneHot, logp), 3));
    if (mask === undefined) return tf.mean(perPixel) as tf.Scalar;
    const m = tf.reshape(mask, perPixel.shape);
    return tf.div(tf.sum(tf.mul(perPixel, m)), tf.maximum(tf.sum(m), 1e-12)) as tf.Scalar;
  });
}

/** Options of the `cross-entropy` loss (none). */
export const crossEntropyOptions = z.object({}).strict();

/** The `cross-entropy` loss plugin. */
export const crossEntropyLoss: LossFactory<z.infer<typeof crossEntropyOptions>> = {
  id: "cross-entropy",
  description: "Mean pixel-wise cross-entropy (the paper's L_sup)",
  options: crossEntropyOptions,
  create: () => crossEntropy,
};
