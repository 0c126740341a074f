/**
 * The {@linkcode StepContext} a training step hands its regularizers: the batches, the student's
 * logits of `[x_l, x_u, T(x_u)]`, their softmax, and the pairing maps, which are computed on first
 * use (a regularizer reads only those of the recipe's `pairing`, see `pairedPredictions`).
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { Pairing, StepContext } from "./regularizer.ts";
import { forwardValidMask } from "./transform.ts";
import { softmaxLastAxis } from "../runtime/kernels/softmax_fused.ts";

/**
 * What one step's {@linkcode StepContext} is built from: its batches, logits, transform and
 * model (the same fields, `pairing` required); the softmax and pairing maps are derived.
 */
export type StepContextInit =
  & Pick<
    StepContext,
    | "iteration"
    | "iterations"
    | "numClasses"
    | "xLabeled"
    | "yLabeled"
    | "xUnlabeled"
    | "xTransformed"
    | "logitsLabeled"
    | "logitsUnlabeled"
    | "logitsTransformed"
    | "transform"
    | "transformParams"
    | "model"
  >
  & { pairing: Pairing };

/**
 * Build the step context inside the step's gradient tape. The maps computed on first use are
 * `tf.keep`-ed (the first use may be inside a regularizer's `tidy`) and pushed to `kept`, which
 * the caller disposes after the step.
 */
export function createStepContext(init: StepContextInit, kept: tf.Tensor[]): StepContext {
  const { transform, transformParams: params } = init;
  const [bu, h, w] = init.xUnlabeled.shape;
  // one kernel forward and one backward where available (tf.softmax's gradient is four)
  const probsUnlabeled = softmaxLastAxis(init.logitsUnlabeled);
  const probsTransformed = softmaxLastAxis(init.logitsTransformed);
  const lazy = <T extends tf.Tensor>(make: () => T): () => T => {
    let value: T | undefined;
    return () => {
      if (value === undefined) {
        // First use may be inside a regularizer's tidy: keep it for the others.
        value = tf.keep(make());
        kept.push(value);
      }
      return value;
    };
  };
  const back = lazy(() => transform.invert(probsTransformed, params));
  const mask = lazy(() => transform.validMask(params, h, w));
  const warped = lazy(() => transform.apply(probsUnlabeled, params, "bilinear"));
  const forwardMask = lazy(() => forwardValidMask(transform, params, h, w, bu));
  return {
    iteration: init.iteration,
    iterations: init.iterations,
    numClasses: init.numClasses,
    xLabeled: init.xLabeled,
    yLabeled: init.yLabeled,
    xUnlabeled: init.xUnlabeled,
    xTransformed: init.xTransformed,
    logitsLabeled: init.logitsLabeled,
    logitsUnlabeled: init.logitsUnlabeled,
    logitsTransformed: init.logitsTransformed,
    probsUnlabeled,
    probsTransformed,
    get probsTransformedBack() {
      return back();
    },
    get validMask() {
      return mask();
    },
    get probsUnlabeledWarped() {
      return warped();
    },
    get forwardMask() {
      return forwardMask();
    },
    pairing: init.pairing,
    transform,
    transformParams: params,
    model: init.model,
  };
}
