/**
 * Soft Dice loss over the foreground classes (the `dice` loss plugin) and its sum with the
 * cross-entropy (`dice-ce`).
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import type { LossFactory } from "../../core/loss.ts";
import { crossEntropy } from "./cross_entropy.ts";

/** Options of {@linkcode softDice}. */
export interface SoftDiceOptions {
  /** Added to numerator and denominator of each class's Dice. @default {1e-5} */
  smooth?: number;
  /** Count class 0 (background) too. @default {false} */
  includeBackground?: boolean;
  /** `[B, H, W, 1]` pixel weights (0 leaves a pixel out). */
  mask?: tf.Tensor4D;
}

/**
 * `1 - mean_c Dice_c` with `Dice_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)`,
 * `p = softmax(logits)`, `g` the one-hot labels, sums over the whole batch, `c` over the
 * foreground classes (all classes when there is only one, or with `includeBackground`).
 *
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { softDice } from "./dice.ts";
 * const logits = tf.zeros([1, 2, 2, 2]) as tf.Tensor4D;
 * const labels = tf.tensor3d([0, 1, 1, 1], [1, 2, 2], "int32");
 * softDice(logits, labels); // 1 - (2 * 1.5) / (2 + 3) = 0.4 (smooth aside)
 * ```
 */
export function softDice(
  logits: tf.Tensor4D,
  labels: tf.Tensor3D,
  options: SoftDiceOptions = {},
): tf.Scalar {
  const smooth = options.smooth ?? 1e-5;
  return tf.tidy(() => {
    const c = logits.shape[3];
    let p: tf.Tensor = tf.softmax(logits, 3);
    let g: tf.Tensor = tf.oneHot(tf.cast(labels, "int32"), c);
    if (options.mask !== undefined) {
      p = tf.mul(p, options.mask);
      g = tf.mul(g, options.mask);
    }
    const intersection = tf.sum(tf.mul(p, g), [0, 1, 2]);
    const total = tf.add(tf.sum(p, [0, 1, 2]), tf.sum(g, [0, 1, 2]));
    let dice = tf.div(tf.add(tf.mul(intersection, 2), smooth), tf.add(total, smooth));
    if (!options.includeBackground && c > 1) dice = tf.slice(dice, [1], [c - 1]);
    return tf.sub(1, tf.mean(dice)) as tf.Scalar;
  });
}

/** Options of the `dice` loss. */
export const diceOptions = z.object({
  smooth: z.number().min(0).default(1e-5).describe(
    "Added to numerator and denominator of each class's Dice.",
  ),
  includeBackground: z.boolean().default(false).describe("Count the background class too."),
}).strict();

/** The `dice` loss plugin. */
export const diceLoss: LossFactory<z.infer<typeof diceOptions>> = {
  id: "dice",
  description: "Soft Dice loss, 1 - mean Dice over the foreground classes (batch-wise sums)",
  options: diceOptions,
  create: (o) => (logits, labels, mask) =>
    softDice(logits, labels, { smooth: o.smooth, includeBackground: o.includeBackground, mask }),
};

/** Options of the `dice-ce` loss. */
export const diceCeOptions = z.object({
  diceWeight: z.number().min(0).default(1).describe("Weight of the soft Dice term."),
  ceWeight: z.number().min(0).default(1).describe("Weight of the cross-entropy term."),
  smooth: z.number().min(0).default(1e-5).describe("Dice smoothing."),
  includeBackground: z.boolean().default(false).describe(
    "Count the background class in the Dice term too.",
  ),
}).strict();

/** The `dice-ce` loss plugin: `diceWeight * dice + ceWeight * cross-entropy`. */
export const diceCeLoss: LossFactory<z.infer<typeof diceCeOptions>> = {
  id: "dice-ce",
  description: "diceWeight * soft Dice + ceWeight * cross-entropy",
  options: diceCeOptions,
  create: (o) => (logits, labels, mask) =>
    tf.tidy(() =>
      tf.add(
        tf.mul(
          softDice(logits, labels, {
            smooth: o.smooth,
            includeBackground: o.includeBackground,
            mask,
          }),
          o.diceWeight,
        ),
        tf.mul(crossEntropy(logits, labels, mask), o.ceWeight),
      ) as tf.Scalar
    ),
};
