/**
 * The regularizer interface. A regularizer returns its **unweighted** loss from the step context;
 * the trainer owns weighting (`lambda * weight`) and reduction, as in Keras' `Loss.__call__` vs
 * `call()` split.
 *
 * @module
 */
import type { tf } from "../deps.ts";
import type { OptionsSchema } from "./types.ts";
import type { SegmentationModel } from "./model.ts";
import { forwardValidMask, type InvertibleTransform } from "./transform.ts";
import { type Registry, sharedRegistry } from "./registry.ts";
import { softmaxLastAxis } from "../runtime/kernels/softmax_fused.ts";

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
  /**
   * `q = T^-1(softmax f(T(x_u)))`, `[Bu, H, W, C]`: the inverse form's transformed side. The
   * trainer computes it on first use only (a `forward` run whose plugins never read it skips
   * the inverse warp).
   */
  probsTransformedBack: tf.Tensor4D;
  /**
   * `[Bu, H, W, 1]`, 1 where `q` carries information (see `InvertibleTransform.validMask`).
   * Computed on first use, like `probsTransformedBack`.
   */
  validMask: tf.Tensor4D;
  /**
   * Which pair the paired terms compare (the recipe's `pairing`; see
   * {@linkcode pairedPredictions}). @default {"inverse"}
   */
  pairing?: Pairing;
  /** `softmax f(T(x_u))`, `[Bu, H, W, C]`. @default {computed from `logitsTransformed`} */
  probsTransformed?: tf.Tensor4D;
  /**
   * `T(softmax f(x_u))`, the clean prediction warped forward (bilinear, zeros outside),
   * `[Bu, H, W, C]`. The trainer computes it on first use only. @default {computed}
   */
  probsUnlabeledWarped?: tf.Tensor4D;
  /**
   * `[Bu, H, W, 1]`, 1 where `T(.)` reads only pixels inside the image, i.e. where
   * `probsUnlabeledWarped` carries information (see `forwardValidMask` in `transform.ts`).
   * Computed on first use. @default {computed}
   */
  forwardMask?: tf.Tensor4D;
  /** The transform of the step. */
  transform: InvertibleTransform;
  /** The parameters of `T` drawn for this step (pass them to the transform's methods). */
  transformParams: unknown;
  /** The student network. */
  model: SegmentationModel;
}

/**
 * How a paired term (`mi`, `kl`, `mse`, `mean-teacher`, `entropy-min`'s transformed side)
 * brings the prediction of `T(x)` and the prediction of `x` into one frame:
 * - `inverse` (paper Eq. 8): compare `f(x)` with `T^-1 f(T x)`, masked where the inverse warp
 *   brought in pixels from outside the image (`validMask`);
 * - `forward` (the authors' code): compare `T f(x)` with `f(T x)`, masked where the forward warp
 *   brought in pixels from outside (`forwardMask`).
 * For flips and 90-degree rotations both forms compare the same pixel pairs.
 */
export type Pairing = "inverse" | "forward";

/** The two sides of a paired term, in one frame, and their valid-pixel mask. */
export interface PairedPredictions {
  /** The form the pair is in. */
  pairing: Pairing;
  /** The clean prediction's side: `f(x)` (inverse) or `T f(x)` (forward); `stopGradient: source`. */
  source: tf.Tensor4D;
  /** The transformed image's side: `T^-1 f(T x)` (inverse) or `f(T x)` (forward); `target`. */
  target: tf.Tensor4D;
  /** `[Bu, H, W, 1]`, 1 where both sides carry information. */
  mask: tf.Tensor4D;
}

/** The recipe's pairing of a step context (`inverse` when the context does not say). */
function formOf(ctx: StepContext): Pairing {
  return ctx.pairing ?? "inverse";
}

/**
 * Bring a prediction of the clean `x_u` into the pair's frame: itself (`inverse`), or warped
 * forward by the step's `T` (`forward`, bilinear, zeros outside). A mean teacher's `teacher(x)`
 * goes through here.
 */
export function toPairFrame(ctx: StepContext, clean: tf.Tensor4D): tf.Tensor4D {
  return formOf(ctx) === "inverse"
    ? clean
    : ctx.transform.apply(clean, ctx.transformParams, "bilinear");
}

/** The clean prediction's side of the pair: `f(x)` (inverse) or `T f(x)` (forward). */
export function pairSource(ctx: StepContext): tf.Tensor4D {
  if (formOf(ctx) === "inverse") return ctx.probsUnlabeled;
  return ctx.probsUnlabeledWarped ?? toPairFrame(ctx, ctx.probsUnlabeled);
}

/** The transformed image's side of the pair: `T^-1 f(T x)` (inverse) or `f(T x)` (forward). */
export function pairTarget(ctx: StepContext): tf.Tensor4D {
  if (formOf(ctx) === "inverse") return ctx.probsTransformedBack;
  return ctx.probsTransformed ?? softmaxLastAxis(ctx.logitsTransformed);
}

/** `[Bu, H, W, 1]`, 1 where both sides of the pair carry information. */
export function pairMask(ctx: StepContext): tf.Tensor4D {
  if (formOf(ctx) === "inverse") return ctx.validMask;
  const [b, h, w] = ctx.probsUnlabeled.shape;
  return ctx.forwardMask ?? forwardValidMask(ctx.transform, ctx.transformParams, h, w, b);
}

/**
 * The pair a paired term compares, in the form `ctx.pairing` chooses (default `inverse`). It
 * reads only the context fields that form needs, so the trainer computes nothing else; with a
 * hand-built context that lacks the forward fields, they are computed here.
 */
export function pairedPredictions(ctx: StepContext): PairedPredictions {
  return {
    pairing: formOf(ctx),
    source: pairSource(ctx),
    target: pairTarget(ctx),
    mask: pairMask(ctx),
  };
}

/** What `onStepEnd` gets. */
export interface StepEndContext {
  /** 0-based iteration of the step that just ended. */
  iteration: number;
  /** The student network, as updated by the step. */
  model: SegmentationModel;
}

/** A regularizer instance, created per run. */
export interface Regularizer {
  /** The id of the plugin that made it. */
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
  /** The student network. */
  model: SegmentationModel;
  /** Number of classes (background included). */
  numClasses: number;
  /** The run's seed. */
  seed: number;
  /**
   * Build another model like the student under `name` (keys `<name>/...`, tfjs names in the
   * run's variable scope), e.g. a mean teacher's `teacher`. The regularizer owns it and frees
   * it in `dispose`. A name the run already holds is a `UserError`.
   */
  createModel(name: string): SegmentationModel;
}

/** A regularizer plugin. */
export interface RegularizerFactory<O = Record<string, unknown>> {
  /** The id recipes name the plugin by (`type: <id>`), unique among plugins of its kind. */
  readonly id: string;
  /** One line shown by `deno task plugins`. */
  readonly description: string;
  /**
   * Strict schema of the plugin's options (its recipe entry without `type`, `weight` and
   * `name`), with defaults.
   */
  readonly options: OptionsSchema<O>;
  /** A new instance for a run (it may build networks with `context.createModel`). */
  create(options: O, context: RegularizerContext): Regularizer;
}

/** All regularizer plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const regularizers: Registry<RegularizerFactory<any>> = sharedRegistry("regularizer");
