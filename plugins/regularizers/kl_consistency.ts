/**
 * Pixel-wise KL consistency, the paper's Eq. 8: `KL(f(x) || T^-1(f(T(x))))`, averaged over the
 * valid pixels of the unlabeled batch; with the recipe's `pairing: forward`,
 * `KL(T f(x) || f(T x))` (the authors' code).
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import { pairedPredictions, type RegularizerFactory } from "../../core/regularizer.ts";
import { maskedMean, stopSides } from "./_masked.ts";
import { klFused, klFusedAvailable } from "../../runtime/kernels/kl_fused.ts";

/** Options of {@linkcode klConsistency}. */
export interface KlConsistencyOptions {
  /** Probabilities are clamped to at least `eps` before the logarithm. @default {1e-8} */
  eps?: number;
  /** `[B, H, W, 1]` mask of the pixels to average over. @default {all pixels} */
  mask?: tf.Tensor;
}

/**
 * Mean over pixels of `sum_c p_c (log p_c - log q_c)` for probability maps `p`, `q`
 * `[B, H, W, C]`, in nats. With `kernels: custom` on `cpu` and webgpu, one fused kernel and one
 * gradient kernel per input (`runtime/kernels/kl_fused.ts`); with `builtin`, and on `wasm`
 * (faster there), tfjs's ops ({@linkcode klConsistencyComposed}).
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { klConsistency } from "./kl_consistency.ts";
 * const p = tf.tensor4d([0.5, 0.5], [1, 1, 1, 2]);
 * const q = tf.tensor4d([0.9, 0.1], [1, 1, 1, 2]);
 * klConsistency(p, q); // 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5108
 * ```
 */
export function klConsistency(
  p: tf.Tensor4D,
  q: tf.Tensor4D,
  options: KlConsistencyOptions = {},
): tf.Scalar {
  const eps = options.eps ?? 1e-8;
  if (klFusedAvailable()) return klFused(p, q, { eps, mask: options.mask });
  return klConsistencyComposed(p, q, options);
}

/** {@linkcode klConsistency} composed from tfjs ops (the reference of the fused kernels). */
export function klConsistencyComposed(
  p: tf.Tensor4D,
  q: tf.Tensor4D,
  options: KlConsistencyOptions = {},
): tf.Scalar {
  const eps = options.eps ?? 1e-8;
  return tf.tidy(() => {
    const logP = tf.log(tf.maximum(p, eps));
    const logQ = tf.log(tf.maximum(q, eps));
    const perPixel = tf.sum(tf.mul(p, tf.sub(logP, logQ)), 3);
    return maskedMean(perPixel, options.mask);
  });
}

/** Recipe options of the `kl` regularizer. */
export const klOptions = z.object({
  direction: z.enum(["forward", "reverse"]).default("forward").describe(
    "`forward`: KL(source || target), i.e. KL(f(x) || T^-1 f(T x)) as in Eq. 8 (with " +
      "`pairing: forward`, KL(T f(x) || f(T x))); `reverse`: KL(target || source). The KL " +
      "direction, not the recipe's `pairing`.",
  ),
  stopGradient: z.enum(["none", "source", "target"]).default("none").describe(
    "Which side gets no gradient: `source` = the clean prediction's side (f(x); T f(x) with " +
      "`pairing: forward`), `target` = the transformed image's side (T^-1 f(T x); f(T x)).",
  ),
  mask: z.boolean().default(true).describe(
    "Leave out pixels the pairing's warp brought in from outside the image.",
  ),
  eps: z.number().gt(0).lt(0.1).default(1e-8).describe(
    "Clamp of probabilities before the logarithm.",
  ),
}).strict();

/** The `kl` regularizer plugin (Eq. 8). */
export const klRegularizer: RegularizerFactory<z.infer<typeof klOptions>> = {
  id: "kl",
  description:
    "Pixel-wise KL consistency between f(x) and T^-1(f(T(x))) (paper Eq. 8), or T f(x) and f(T x) with pairing: forward",
  options: klOptions,
  create: (options) => ({
    id: "kl",
    needsUnlabeled: true,
    loss: (ctx) =>
      tf.tidy(() => {
        const pair = pairedPredictions(ctx);
        const [p, q] = stopSides(pair.source, pair.target, options.stopGradient);
        const mask = options.mask ? pair.mask : undefined;
        const [a, b] = options.direction === "forward" ? [p, q] : [q, p];
        return klConsistency(a as tf.Tensor4D, b as tf.Tensor4D, { eps: options.eps, mask });
      }),
  }),
};
