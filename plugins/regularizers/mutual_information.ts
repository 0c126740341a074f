/**
 * Mutual information between a prediction and the inverse-transformed prediction of a
 * transformed image, over a window of displacements (paper Eq. 5-7, IIC style).
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import { pairedPredictions, type RegularizerFactory } from "../../core/regularizer.ts";
import { kernelMode } from "../../runtime/tfjs_internals.ts";
import { miJoint } from "../../runtime/kernels/mi_joint.ts";
import { miFromJoint, miFromJointAvailable } from "../../runtime/kernels/mi_from_joint.ts";
import { stopSides } from "./_masked.ts";
import { miOfJointComposed, mutualInformationComposed } from "./_mi_composed.ts";

/** Options of {@linkcode mutualInformation}. */
export interface MutualInformationOptions {
  /** Window radius r: displacements in [-r, r]^2 ((2r+1)^2 of them). @default {1} */
  radius?: number;
  /** Clamp of the normalised joint (IIC clamps at float epsilon). @default {1.1920929e-7} */
  eps?: number;
  /** `[B, H, W, 1]` valid-pixel mask; both maps are multiplied by it (IIC). */
  mask?: tf.Tensor;
  /**
   * Symmetrise each joint, `(P + P^T) / 2`, as IIC does. The plain (unsymmetrised) MI is
   * invariant to permuting the classes of one side; the symmetrised one only to permuting
   * both sides alike. @default {true}
   */
  symmetrize?: boolean;
  /**
   * IIC's `lambda_ent`: the weight of the marginal terms,
   * `I = sum P (log P - w log rowsum - w log colsum) = w (H(rows) + H(cols)) - H(P)`; 1 is the
   * plain MI. For a symmetrised joint, 0.5 leaves minus the conditional entropy `-H(j | i)`:
   * consistent, confident predictions with no pull on the class proportions; above 0.5 the
   * term also pulls the predicted class proportions towards uniform, below 0.5 away from it
   * (0 collapses to one class). @default {1}
   */
  marginalWeight?: number;
}

/**
 * The mutual information (in nats, not negated) between probability maps `p` and `q`
 * (`[B, H, W, C]`), averaged over the `(2r+1)^2` displacements `d` of the window: for each `d`
 * the joint `P_d = sum_{b,x} p(x) q(x + d)^T` (a `C x C` matrix; zero outside the image) is
 * symmetrised (unless `symmetrize: false`), normalised to sum 1 and clamped at `eps`, and
 * `I_d = sum P_d (log P_d - log rowsum - log colsum)`.
 *
 * Nothing loops over pixels. With `kernels: custom` (the default) the joints of all
 * displacements are one convolution filter gradient (`runtime/kernels/mi_joint.ts`) and the rest
 * one fused kernel with its gradient kernel (`runtime/kernels/mi_from_joint.ts`, on webgpu
 * `webgpu_mi.ts`): on webgpu a handful of GPU programs for the whole term, forward and backward.
 * With `kernels: builtin` it is composed from tfjs ops (`_mi_composed.ts`: one batched matrix
 * product of `p` with the stack of the shifted `q`s, then the tail op by op), the reference the
 * fused version is tested against.
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { mutualInformation } from "./mutual_information.ts";
 * const p = tf.randomUniform([2, 8, 8, 3]) as tf.Tensor4D;
 * const probs = tf.div(p, tf.sum(p, 3, true)) as tf.Tensor4D;
 * mutualInformation(probs, probs).dataSync(); // >= 0
 * ```
 */
export function mutualInformation(
  p: tf.Tensor4D,
  q: tf.Tensor4D,
  options: MutualInformationOptions = {},
): tf.Scalar {
  const r = options.radius ?? 1;
  if (!Number.isInteger(r) || r < 0) {
    throw new Error(`mutualInformation: radius must be an integer >= 0, got ${r}`);
  }
  if (p.shape.join() !== q.shape.join()) {
    throw new Error(`mutualInformation: shapes differ, ${p.shape} vs ${q.shape}`);
  }
  const tail = {
    eps: options.eps ?? 1.1920929e-7,
    symmetrize: options.symmetrize ?? true,
    marginalWeight: options.marginalWeight ?? 1,
  };
  return tf.tidy(() => {
    let pm: tf.Tensor4D = p, qm: tf.Tensor4D = q;
    if (options.mask !== undefined) {
      pm = tf.mul(p, options.mask);
      qm = tf.mul(q, options.mask);
    }
    if (kernelMode() === "builtin") {
      return mutualInformationComposed(pm, qm, { ...tail, radius: r });
    }
    const joint = miJoint(pm, qm, r);
    return miFromJointAvailable() ? miFromJoint(joint, tail) : miOfJointComposed(joint, tail);
  });
}

/** Recipe options of the `mi` regularizer. */
export const miOptions = z.object({
  radius: z.number().int().min(0).max(7).default(1).describe(
    "Window radius: 1 is the paper's 3x3, 2 is 5x5, 3 is 7x7.",
  ),
  stopGradient: z.enum(["none", "source", "target"]).default("none").describe(
    "Which side gets no gradient: `source` = the clean prediction's side (f(x); T f(x) with " +
      "`pairing: forward`, which the reference code detaches), `target` = the transformed " +
      "image's side (T^-1 f(T x); f(T x)).",
  ),
  mask: z.boolean().default(true).describe("Multiply both maps by the pairing's valid-pixel mask."),
  eps: z.number().gt(0).lt(0.01).default(1.1920929e-7).describe("Clamp of the normalised joint."),
  symmetrize: z.boolean().default(true).describe("Symmetrise each joint as IIC does."),
  marginalWeight: z.number().min(0).max(10).default(1).describe(
    "IIC's `lambda_ent`, the weight of the marginal terms (1 = plain MI).",
  ),
}).strict();

/**
 * The `mi` regularizer plugin: minimises `-I(f(x); T^-1 f(T x))`, or `-I(T f(x); f(T x))` with
 * the recipe's `pairing: forward`.
 */
export const miRegularizer: RegularizerFactory<z.infer<typeof miOptions>> = {
  id: "mi",
  description:
    "Mutual information between f(x) and T^-1(f(T(x))) (T f(x) and f(T x) with pairing: forward) over a window of displacements (Eq. 5-7); minimises -MI",
  options: miOptions,
  create: (options) => ({
    id: "mi",
    needsUnlabeled: true,
    loss: (ctx) =>
      tf.tidy(() => {
        const pair = pairedPredictions(ctx);
        const [p, q] = stopSides(pair.source, pair.target, options.stopGradient);
        return tf.neg(mutualInformation(p as tf.Tensor4D, q as tf.Tensor4D, {
          radius: options.radius,
          eps: options.eps,
          symmetrize: options.symmetrize,
          marginalWeight: options.marginalWeight,
          mask: options.mask ? pair.mask : undefined,
        })) as tf.Scalar;
      }),
  }),
};
