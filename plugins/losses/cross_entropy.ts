/**
 * Supervised pixel-wise cross-entropy, `L_sup` of the paper.
 *
 * @module
 */
import { tf } from "../../deps.ts";

/**
 * Mean pixel-wise cross-entropy of `logits` `[B, H, W, C]` against integer `labels` `[B, H, W]`,
 * in nats.
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
export function crossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D): tf.Scalar {
  return tf.tidy(() => {
    const c = logits.shape[3];
    const oneHot = tf.oneHot(tf.cast(labels, "int32"), c);
    const logp = tf.logSoftmax(logits, 3);
    return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), 3))) as tf.Scalar;
  });
}
