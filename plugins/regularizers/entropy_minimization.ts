/**
 * Entropy minimisation (Grandvalet & Bengio 2005), the paper's baseline of section 3.2: the mean
 * pixel-wise entropy of the predictions on unlabeled images.
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import { pairMask, pairTarget, type RegularizerFactory } from "../../core/regularizer.ts";
import { maskedMean } from "./_masked.ts";

/** Options of {@linkcode meanEntropy}. */
export interface MeanEntropyOptions {
  /** `[B, H, W, 1]` mask of the pixels to average over. @default {all pixels} */
  mask?: tf.Tensor;
  /** Probabilities are clamped to at least `eps` inside the logarithm. @default {1e-8} */
  eps?: number;
}

/**
 * Mean over (valid) pixels of the entropy `-sum_c p_c log p_c` of a probability map `p`
 * `[B, H, W, C]`, in nats: `log C` for uniform maps, 0 for one-hot maps. The logarithm's
 * argument is clamped at `eps` (so `0 log 0 = 0`). Zero when the mask is empty.
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { meanEntropy } from "./entropy_minimization.ts";
 * const p = tf.tensor4d([0.25, 0.25, 0.25, 0.25, 1, 0, 0, 0], [1, 1, 2, 4]);
 * meanEntropy(p); // (ln 4 + 0) / 2 = 0.6931
 * ```
 */
export function meanEntropy(p: tf.Tensor4D, options: MeanEntropyOptions = {}): tf.Scalar {
  const eps = options.eps ?? 1e-8;
  return tf.tidy(() => {
    const perPixel = tf.neg(tf.sum(tf.mul(p, tf.log(tf.maximum(p, eps))), 3));
    return maskedMean(perPixel, options.mask);
  });
}

/** Recipe options of the `entropy-min` regularizer. */
export const entropyMinOptions = z.object({
  includeTransformed: z.boolean().default(false).describe(
    "Also add the mean entropy of `q = T^-1(f(T x))` (`f(T x)` with the recipe's `pairing: " +
      "forward`), over its valid pixels when `mask`, so the loss is `H(p) + H(q)`; otherwise " +
      "only `H(p)` of `p = f(x)`, the plain baseline.",
  ),
  mask: z.boolean().default(true).describe(
    "Average the entropy of `q` over its valid pixels only (`p = f(x)` has no invalid pixels).",
  ),
  eps: z.number().gt(0).lt(0.1).default(1e-8).describe(
    "Clamp of probabilities inside the logarithm.",
  ),
}).strict();

/** The `entropy-min` regularizer plugin (entropy minimisation baseline). */
export const entropyMinRegularizer: RegularizerFactory<z.infer<typeof entropyMinOptions>> = {
  id: "entropy-min",
  description: "Entropy minimisation: mean pixel-wise entropy of the unlabeled predictions f(x)",
  options: entropyMinOptions,
  create: (options) => ({
    id: "entropy-min",
    needsUnlabeled: true,
    loss(ctx) {
      if (!options.includeTransformed) return meanEntropy(ctx.probsUnlabeled, { eps: options.eps });
      return tf.tidy(() => {
        const hp = meanEntropy(ctx.probsUnlabeled, { eps: options.eps });
        const hq = meanEntropy(pairTarget(ctx), {
          eps: options.eps,
          mask: options.mask ? pairMask(ctx) : undefined,
        });
        return tf.add(hp, hq) as tf.Scalar;
      });
    },
  }),
};
