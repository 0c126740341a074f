/**
 * The {@linkcode StepContext} a training step hands its regularizers: the batches, the student's
 * logits of `[x_l, x_u, T(x_u)]`, their softmax, and the pairing maps, which are computed on first
 * use (a regularizer reads only those of the recipe's `pairing`, see `pairedPredictions`).
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { SegmentationModel } from "./model.ts";
import type { Pairing, StepContext } from "./regularizer.ts";
import { forwardValidMask, type InvertibleTransform } from "./transform.ts";

/** What one step's {@linkcode StepContext} is built from. */
export interface StepContextInit {
  /** 0-based iteration. */
  iteration: number;
  /** Total iterations of the run. */
  iterations: number;
  /** Number of classes. */
  numClasses: number;
  /** Labeled images `[Bl, H, W, 1]`. */
  xLabeled: tf.Tensor4D;
  /** Labels `[Bl, H, W]` (int32). */
  yLabeled: tf.Tensor3D;
  /** Unlabeled images `[Bu, H, W, 1]`. */
  xUnlabeled: tf.Tensor4D;
  /** `T(x_u)`. */
  xTransformed: tf.Tensor4D;
  /** Logits of `x_l`. */
  logitsLabeled: tf.Tensor4D;
  /** Logits of `x_u`. */
  logitsUnlabeled: tf.Tensor4D;
  /** Logits of `T(x_u)`. */
  logitsTransformed: tf.Tensor4D;
  /** The recipe's `pairing`. */
  pairing: Pairing;
  /** The transform `T`. */
  transform: InvertibleTransform;
  /** The parameters of `T` drawn for this step. */
  transformParams: unknown;
  /** The student. */
  model: SegmentationModel;
}

/**
 * Build the step context inside the step's gradient tape. The maps computed on first use are
 * `tf.keep`-ed (the first use may be inside a regularizer's `tidy`) and pushed to `kept`, which
 * the caller disposes after the step.
 */
export function createStepContext(init: StepContextInit, kept: tf.Tensor[]): StepContext {
  const { transform, transformParams: params } = init;
  const [bu, h, w] = init.xUnlabeled.shape;
  const probsUnlabeled = tf.softmax(init.logitsUnlabeled) as tf.Tensor4D;
  const probsTransformed = tf.softmax(init.logitsTransformed) as tf.Tensor4D;
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
