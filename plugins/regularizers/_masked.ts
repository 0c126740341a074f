import { tf } from "../../deps.ts";
import { stopGradient } from "../../core/ops.ts";

/**
 * Mean of a per-pixel map `[B, H, W]` (or `[B, H, W, 1]`) over the pixels where `mask` is 1;
 * the plain mean when `mask` is undefined. Zero when the mask is empty.
 */
export function maskedMean(perPixel: tf.Tensor, mask?: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    if (mask === undefined) return tf.mean(perPixel) as tf.Scalar;
    const m = tf.reshape(mask, perPixel.shape);
    return tf.div(tf.sum(tf.mul(perPixel, m)), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
  });
}

/** Apply the `stopGradient` option of a two-sided consistency term. */
export function stopSides(
  p: tf.Tensor,
  q: tf.Tensor,
  stop: "none" | "source" | "target",
): [tf.Tensor, tf.Tensor] {
  return [
    stop === "source" ? stopGradient(p) : p,
    stop === "target" ? stopGradient(q) : q,
  ];
}
