// A supervised-loss plugin: the focal loss (Lin et al. 2017), the cross-entropy of each pixel
// weighted by (1 - p)^gamma, p the probability of its true class, so that pixels the network
// already gets right count less. gamma 0 is the plain cross-entropy.
// Use it from a recipe with `plugins: ["./focal_loss.ts"]` and
// `supervised: { type: focal, gamma: 2 }`.
// Outside this repository, import mod.ts by its URL instead of "../mod.ts".
import { losses, type LossFactory, type OptionsSchema, type Scalar, tf, z } from "../mod.ts";

/** Options of the `focal` loss. */
export interface FocalOptions {
  /** The focusing exponent (0: cross-entropy). */
  gamma: number;
}

const options: OptionsSchema<FocalOptions> = z.object({
  gamma: z.number().min(0).max(10).default(2),
}).strict();

/** The `focal` loss plugin. */
export const focalLoss: LossFactory<FocalOptions> = {
  id: "focal",
  description: "Focal loss: pixel-wise cross-entropy weighted by (1 - p_true)^gamma",
  options,
  // The loss gets logits [B, H, W, C], integer labels [B, H, W] and an optional pixel mask
  // [B, H, W, 1], and returns the mean as a scalar; it runs inside the trainer's gradient tape.
  create: (opts, context) => (logits, labels, mask) =>
    tf.tidy(() => {
      const oneHot = tf.oneHot(tf.cast(labels, "int32"), context.numClasses);
      const logpTrue = tf.sum(tf.mul(oneHot, tf.logSoftmax(logits, 3)), 3);
      const weight = tf.pow(tf.sub(1, tf.exp(logpTrue)), opts.gamma);
      const perPixel = tf.neg(tf.mul(weight, logpTrue));
      if (mask === undefined) return tf.mean(perPixel) as Scalar;
      const m = tf.reshape(mask, perPixel.shape);
      return tf.div(tf.sum(tf.mul(perPixel, m)), tf.maximum(tf.sum(m), 1e-12)) as Scalar;
    }),
};

if (!losses.has(focalLoss.id)) losses.register(focalLoss);
