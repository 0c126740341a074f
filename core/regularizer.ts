/**
 * The regularizer interface. A regularizer returns its **unweighted** loss from the step context;
 * the trainer owns weighting (`lambda * weight`) and reduction, as in Keras' `Loss.__call__` vs
 * `call()` split.
 *
 * @module
 */
import type { tf, z } from "../deps.ts";
import type { SegmentationModel } from "./model.ts";
import type { InvertibleTransform } from "./transform.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/**
 * Everything one training step computed that regularizers may share. Tensors here belong to the
 * trainer's `tidy` scope: a regularizer must not dispose or keep them.
 */
export interface StepContext {
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
  /** Unlabeled images `x_u`, `[Bu, H, W, 1]`. */
  xUnlabeled: tf.Tensor4D;
  /** `T(x_u)`. */
  xTransformed: tf.Tensor4D;
  /** Logits of `x_l`, `[Bl, H, W, C]`. */
  logitsLabeled: tf.Tensor4D;
  /** Logits of `x_u`, `[Bu, H, W, C]`. */
  logitsUnlabeled: tf.Tensor4D;
  /** Logits of `T(x_u)`, `[Bu, H, W, C]`. */
  logitsTransformed: tf.Tensor4D;
  /** `p = softmax f(x_u)`, `[Bu, H, W, C]`. */
  probsUnlabeled: tf.Tensor4D;
  /** `q = T^-1(softmax f(T(x_u)))`, `[Bu, H, W, C]`. */
  probsTransformedBack: tf.Tensor4D;
  /** `[Bu, H, W, 1]`, 1 where `q` carries information (see `InvertibleTransform.validMask`). */
  validMask: tf.Tensor4D;
  /** The transform and the parameters drawn for this step. */
  transform: InvertibleTransform;
  transformParams: unknown;
  /** The student network. */
  model: SegmentationModel;
}

/** What `onStepEnd` gets. */
export interface StepEndContext {
  iteration: number;
  model: SegmentationModel;
}

/** A regularizer instance, created per run. */
export interface Regularizer {
  readonly id: string;
  /** Whether the trainer must compute the unlabeled/transformed predictions for it. */
  readonly needsUnlabeled: boolean;
  /** The raw (unweighted) scalar loss. Runs synchronously inside the trainer's `tidy`. */
  loss(context: StepContext): tf.Scalar;
  /** Called after the optimizer step, outside any gradient tape (e.g. EMA updates). */
  onStepEnd?(context: StepEndContext): void;
  /**
   * The network to evaluate and checkpoint as the run's result instead of the student (a mean
   * teacher's teacher). The trainer reports the student too.
   */
  evaluationModel?(): SegmentationModel;
  /** Tensors to save in checkpoints (e.g. a teacher's weights), by unique name. */
  stateTensors?(): Map<string, tf.Variable>;
  /** Free what the regularizer owns. */
  dispose?(): void;
}

/** What a regularizer factory gets besides its own options. */
export interface RegularizerContext {
  model: SegmentationModel;
  numClasses: number;
  seed: number;
  /** Build another model like the student (mean teacher). */
  createModel(name: string): SegmentationModel;
}

/** A regularizer plugin. */
export interface RegularizerFactory<O = Record<string, unknown>> {
  readonly id: string;
  readonly description: string;
  readonly options: z.ZodType<O, z.ZodTypeDef, unknown>;
  create(options: O, context: RegularizerContext): Regularizer;
}

/** All regularizer plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const regularizers: Registry<RegularizerFactory<any>> = sharedRegistry("regularizer");
