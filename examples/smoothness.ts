// A regularizer plugin: total variation of the unlabeled predictions (a smoothness prior).
// Use it from a recipe with `plugins: ["./smoothness.ts"]` and `- { type: smoothness }`.
// Outside this repository, import mod.ts by its URL instead of "../mod.ts".
import { regularizers, tf, z } from "../mod.ts";

const options = z.object({
  /** Which map to smooth: f(x_u), or T^-1(f(T(x_u))). */
  on: z.enum(["unlabeled", "transformed"]).default("unlabeled"),
}).strict();

regularizers.register({
  id: "smoothness",
  description: "Mean absolute difference of the class probabilities of neighbouring pixels",
  options,
  create: (opts: z.infer<typeof options>) => ({
    id: "smoothness",
    needsUnlabeled: true,
    loss: (ctx) =>
      tf.tidy(() => {
        const p = opts.on === "unlabeled" ? ctx.probsUnlabeled : ctx.probsTransformedBack;
        const [b, h, w, c] = p.shape;
        const top = tf.slice(p, [0, 0, 0, 0], [b, h - 1, w, c]);
        const left = tf.slice(p, [0, 0, 0, 0], [b, h, w - 1, c]);
        const dy = tf.sub(tf.slice(p, [0, 1, 0, 0], [b, h - 1, w, c]), top);
        const dx = tf.sub(tf.slice(p, [0, 0, 1, 0], [b, h, w - 1, c]), left);
        return tf.add(tf.mean(tf.abs(dy)), tf.mean(tf.abs(dx))) as tf.Scalar;
      }),
  }),
});
