/**
 * A training step's loss and update: the loss terms under the gradient tape
 * ({@linkcode stepLoss}), then Adam's update, either after reading the terms back (applied when
 * every term is finite) or gated on the device by "every term is finite" with nothing read back
 * (`trainer.readback: log`, core/step_readback.ts).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { blameFirstStep, type LossParts, stepLoss, type StepTensors } from "./loss_terms.ts";
import type { SegmentationModel } from "./model.ts";
import type { Adam } from "./optimizer.ts";
import type { StepBatch } from "./batch.ts";
import { readbackCount } from "./step_readback.ts";
import { commitRunningStatistics } from "../runtime/kernels/bn_running_stats.ts";

/** What a step's loss and update work on: the trained model, its optimizer, the loss's parts. */
export interface UpdateTarget {
  model: SegmentationModel;
  optimizer: Adam;
  parts: LossParts;
}

/**
 * The step's loss terms under the gradient tape ({@linkcode stepLoss}: step context, loss
 * terms), read back, then the update: applied when every term is finite, else skipped.
 */
export async function lossAndUpdate(
  target: UpdateTarget,
  batch: StepBatch,
  step: StepTensors,
  lr: number,
): Promise<{ names: string[]; device: null; values: number[] }> {
  const vars = [...target.model.trainable.values()];
  const { value, grads } = tf.variableGrads(() => stepLoss(target.parts, batch, step), vars);
  try {
    const names = ["loss", ...step.terms.keys()];
    const stacked = tf.stack([value, ...step.terms.values()]);
    const numbers = Array.from(await stacked.data());
    readbackCount.reads++;
    stacked.dispose();
    const values = Object.fromEntries(names.map((n, i) => [n, numbers[i]]));
    const finite = numbers.every((v) => Number.isFinite(v));
    if (!finite && step.iteration === 0) await blameFirstStep(target.parts, values, step.logits);
    if (finite) target.optimizer.apply(byName(target, vars, grads), lr);
    return { names, device: null, values: numbers };
  } finally {
    tf.dispose([value, ...Object.values(grads)]);
  }
}

/**
 * The step's loss terms under the gradient tape, kept on the device, and the update gated on
 * the device by `ok` = every term finite: Adam's (the fused kernel's gate input, or tf.where),
 * the batch norms' running statistics (the fused kernel's gate, or tf.where for statistics a
 * model updated itself, compared with `before`). Nothing is read back.
 */
export function lossAndGatedUpdate(
  target: UpdateTarget,
  batch: StepBatch,
  step: StepTensors,
  lr: number,
  before: Map<string, tf.Tensor>,
): { names: string[]; device: tf.Tensor; values: null } {
  const vars = [...target.model.trainable.values()];
  const { value, grads } = tf.variableGrads(() => stepLoss(target.parts, batch, step), vars);
  const names = ["loss", ...step.terms.keys()];
  const stacked = tf.stack([value, ...step.terms.values()]);
  const ok = tf.tidy(() => tf.all(tf.isFinite(stacked)));
  try {
    tf.tidy(() => {
      for (const [k, v] of target.model.state) {
        const old = before.get(k)!;
        if (v.dataId !== old.dataId) v.assign(tf.where(ok, v, old));
      }
    });
    commitRunningStatistics(ok);
    target.optimizer.apply(byName(target, vars, grads), lr, ok);
    return { names, device: stacked, values: null };
  } catch (error) {
    stacked.dispose();
    throw error;
  } finally {
    tf.dispose([value, ok, ...Object.values(grads)]);
  }
}

/** The gradients keyed by the trainable variables' names. */
function byName(
  target: UpdateTarget,
  vars: tf.Variable[],
  grads: tf.NamedTensorMap,
): Record<string, tf.Tensor> {
  const names = [...target.model.trainable.keys()];
  const out: Record<string, tf.Tensor> = {};
  vars.forEach((v, i) => (out[names[i]] = grads[v.name]));
  return out;
}
