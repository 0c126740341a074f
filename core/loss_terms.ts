/**
 * A step's loss terms: the forward pass over `[x_l, x_u, T(x_u)]` inside the gradient tape,
 * the step context, the supervised and regularizer terms and their weighted sum, each plugin's
 * result checked (a scalar loss, logits of the batch's shape) so that a broken plugin is named.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { StepBatch } from "./batch.ts";
import type { SupervisedLoss } from "./loss.ts";
import type { SegmentationModel } from "./model.ts";
import type { NamedRegularizer } from "./networks.ts";
import {
  callPlugin,
  checkLogits,
  checkScalarLoss,
  PluginError,
  type PluginRef,
} from "./plugin_errors.ts";
import type { Recipe } from "./recipe.ts";
import type { StepContext } from "./regularizer.ts";
import { createStepContext } from "./step_context.ts";
import type { InvertibleTransform } from "./transform.ts";

/** What a step's loss is computed with: the run's recipe, networks and plugins. */
export interface LossParts {
  /** The recipe (weights, lambda, pairing, batch-norm statistics). */
  recipe: Recipe;
  /** The student. */
  model: SegmentationModel;
  /** The transform `T`. */
  transform: InvertibleTransform;
  /** The regularizers, by unique name. */
  regularizers: NamedRegularizer[];
  /** The supervised loss. */
  supervisedLoss: SupervisedLoss;
  /** Number of classes. */
  numClasses: number;
  /** The model, transform and supervised loss plugins, as failures name them. */
  plugins: Record<"model" | "transform" | "supervised", PluginRef>;
}

/** What a step keeps beyond its gradient tape (disposed after the step). */
export interface StepTensors {
  /** The loss terms by name (`sup`, each regularizer's). */
  terms: Map<string, tf.Tensor>;
  /** The step context's lazily computed maps. */
  kept: tf.Tensor[];
  /** The first step's logits (checked when a term is not finite). */
  logits: tf.Tensor | null;
  /** 0-based iteration. */
  iteration: number;
  /** The ramp-up factor of the regularizer weights. */
  ramp: number;
}

const TRANSFORM = { method: "apply()", expected: "the transformed batch" };
const APPLY = { method: "apply()", expected: "logits [batch, height, width, classes]" };
const LOSS = { method: "loss()", expected: "a scalar loss" };

/** A regularizer's plugin as failures name it. */
export function regularizerRef(reg: NamedRegularizer): PluginRef {
  return reg.plugin ?? { kind: "regularizer", id: reg.name, entry: `regularizers (${reg.name})` };
}

/** Sigmoid ramp-up `exp(-5 (1 - t/L)^2)` (Laine & Aila; SSL4MIS). */
export function sigmoidRampUp(iteration: number, length: number): number {
  if (length <= 0 || iteration >= length) return 1;
  const t = 1 - Math.max(iteration, 0) / length;
  return Math.exp(-5 * t * t);
}

/**
 * The weighted loss of one step, inside the gradient tape: the forward pass over
 * `[x_l, x_u, T(x_u)]` (or `x_l` alone), the step context, the supervised and regularizer
 * terms (each kept in `step.terms`), every plugin's result checked.
 */
export function stepLoss(
  parts: LossParts,
  batch: StepBatch,
  step: StepTensors,
): tf.Scalar {
  const r = parts.recipe;
  const plugins = parts.plugins;
  const ramp = step.ramp;
  const xl = batch.x;
  const bl = xl.shape[0];
  const [, h, w] = xl.shape;
  const classes = parts.numClasses;
  const apply = (x: tf.Tensor4D, groups?: number[]) => {
    const logits = callPlugin(
      plugins.model,
      APPLY,
      () => parts.model.apply(x, { training: true, seed: batch.dropoutSeed, groups }),
    );
    checkLogits(plugins.model, logits, [x.shape[0], h, w, classes]);
    if (step.iteration === 0) step.logits = tf.keep(logits);
    return logits;
  };
  let logitsL: tf.Tensor4D;
  let context: StepContext | null = null;
  if (batch.xu !== null) {
    const xu = batch.xu;
    const bu = xu.shape[0];
    const xt = callPlugin(
      plugins.transform,
      TRANSFORM,
      () => parts.transform.apply(xu, batch.params),
    );
    const perGroup = r.trainer.batchNormStatistics === "per-group";
    const logits = apply(tf.concat([xl, xu, xt], 0), perGroup ? [bl, bu, bu] : undefined);
    const [ll, lu, lt] = tf.split(logits, [bl, bu, bu], 0) as tf.Tensor4D[];
    logitsL = ll;
    context = createStepContext({
      iteration: step.iteration,
      iterations: r.trainer.iterations,
      numClasses: classes,
      xLabeled: xl,
      yLabeled: batch.y,
      xUnlabeled: xu,
      xTransformed: xt,
      logitsLabeled: ll,
      logitsUnlabeled: lu,
      logitsTransformed: lt,
      pairing: r.pairing,
      transform: parts.transform,
      transformParams: batch.params,
      model: parts.model,
    }, step.kept);
  } else {
    logitsL = apply(xl);
  }
  const sup = callPlugin(plugins.supervised, LOSS, () => parts.supervisedLoss(logitsL, batch.y));
  step.terms.set("sup", tf.keep(checkScalarLoss(plugins.supervised, "the loss function", sup)));
  let loss = tf.mul(sup, r.supervised.weight) as tf.Scalar;
  if (context !== null) {
    for (const reg of parts.regularizers) {
      const ref = regularizerRef(reg);
      const term = callPlugin(ref, LOSS, () => reg.instance.loss(context));
      step.terms.set(reg.name, tf.keep(checkScalarLoss(ref, "loss()", term)));
      loss = tf.add(loss, tf.mul(term, r.lambda * ramp * reg.weight));
    }
  }
  return loss;
}

/**
 * A loss term that is not finite on the run's first step is a plugin's fault, not a
 * divergence: the model's (when its logits are not finite), else the term's plugin.
 *
 * @throws {PluginError} Naming it.
 */
export async function blameFirstStep(
  parts: LossParts,
  values: Record<string, number>,
  logits: tf.Tensor | null,
): Promise<void> {
  if (logits !== null) {
    const finite = tf.tidy(() => tf.all(tf.isFinite(logits)));
    const ok = (await finite.data())[0] === 1;
    finite.dispose();
    if (!ok) {
      throw new PluginError(
        parts.plugins.model,
        `apply() gave logits that are not finite on the first step; expected finite numbers`,
      );
    }
  }
  // the term at fault (the total is not finite because one of them is not)
  const terms = Object.entries(values).filter(([name]) => name !== "loss");
  const bad = terms.find(([, v]) => !Number.isFinite(v)) ?? ["loss", values.loss];
  const reg = parts.regularizers.find((r) => r.name === bad[0]);
  const [ref, method] = reg
    ? [regularizerRef(reg), "loss()"]
    : [parts.plugins.supervised, "the loss function"];
  throw new PluginError(
    ref,
    `${method} gave ${bad[1]} on the first step (term "${bad[0]}"); expected a finite scalar`,
  );
}
