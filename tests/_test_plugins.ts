/**
 * Regularizer plugins that only tests register (idempotent): `test-nan-at` (a NaN loss at one
 * iteration, for the non-finite paths), `test-copy-checkpoint` (copies a file at the end of one
 * step: a checkpoint the run overwrites later) and `test-throw-at` (a plugin failing at the end
 * of one step).
 *
 * @module
 */
import { tf, z } from "../deps.ts";
import { regularizers } from "../core/regularizer.ts";
import { registerBuiltins } from "../plugins/mod.ts";

/** Zero times the unlabeled predictions' mean: a term that is there and changes nothing. */
const zero = (probs: tf.Tensor) => tf.tidy(() => tf.mul(tf.mean(probs), 0) as tf.Scalar);

/** Register the built-in plugins and the test ones above (once). */
export function registerTestPlugins(): void {
  registerBuiltins();
  if (!regularizers.has("test-nan-at")) {
    regularizers.register({
      id: "test-nan-at",
      description: "test only: NaN at iteration `at`",
      options: z.object({ at: z.number().int() }).strict(),
      create: (o: { at: number }) => ({
        id: "test-nan-at",
        needsUnlabeled: true,
        loss: (ctx) =>
          ctx.iteration === o.at
            ? tf.tidy(() => tf.mul(tf.mean(ctx.probsUnlabeled), NaN) as tf.Scalar)
            : zero(ctx.probsUnlabeled),
      }),
    });
  }
  if (!regularizers.has("test-copy-checkpoint")) {
    regularizers.register({
      id: "test-copy-checkpoint",
      description: "test only: copy a file at the end of step `at`",
      options: z.object({ at: z.number().int(), from: z.string(), to: z.string() }).strict(),
      create: (o: { at: number; from: string; to: string }) => ({
        id: "test-copy-checkpoint",
        needsUnlabeled: false,
        loss: (ctx) => zero(ctx.probsUnlabeled),
        onStepEnd: ({ iteration }) => {
          if (iteration === o.at) Deno.copyFileSync(o.from, o.to);
        },
      }),
    });
  }
  if (!regularizers.has("test-throw-at")) {
    regularizers.register({
      id: "test-throw-at",
      description: "test only: onStepEnd throws at the end of step `at` (0-based)",
      options: z.object({ at: z.number().int() }).strict(),
      create: (o: { at: number }) => ({
        id: "test-throw-at",
        needsUnlabeled: true,
        loss: (ctx) => zero(ctx.probsUnlabeled),
        onStepEnd: ({ iteration }) => {
          if (iteration === o.at) throw new Error("planted failure");
        },
      }),
    });
  }
}
