/**
 * The interface of `MiSslAdamMany`: one Adam update of many float32 variables in one kernel call,
 * which a backend may run in a few GPU programs instead of one or more per variable (webgpu:
 * `webgpu_adam.ts`). `Adam` in core/optimizer.ts calls it when the backend registers it, and the
 * per-variable `MiSslAdam` (`adam.ts`) otherwise.
 *
 * Inputs `w0, g0, m0, v0, w1, g1, ...` (weights, gradient, first and second moments of each
 * variable) and optionally `ok`, a one-element tensor: where it is 0 (a step whose loss was not
 * finite, decided on the device without reading it back), nothing changes; the attributes of
 * `MiSslAdam`, outputs `[w0', m0', v0', w1', ...]`. An output may be
 * its input's data updated in place (with one more reference, as tfjs's `Reshape` returns its
 * input's data): a kernel may do so only where the input's data has no other holder.
 *
 * @module
 */
import type { tf } from "../../deps.ts";

/** Kernel name of the many-variable Adam update (registered for webgpu with `kernels: custom`). */
export const ADAM_MANY_KERNEL = "MiSslAdamMany";

/** One variable's tensors of an Adam update: weights, gradient, first and second moments. */
export interface AdamSlot<T> {
  w: T;
  g: T;
  m: T;
  v: T;
}

/** The optional gate input of `MiSslAdamMany`: the update applies only where it is not 0. */
export const ADAM_GATE_INPUT = "ok";

/** The named inputs of `MiSslAdamMany` for `slots`, in order (and the gate `ok`, if given). */
export function adamManyInputs<T>(slots: AdamSlot<T>[], ok?: T): Record<string, T> {
  const inputs: Record<string, T> = {};
  if (ok !== undefined) inputs[ADAM_GATE_INPUT] = ok;
  slots.forEach((s, i) => {
    inputs[`w${i}`] = s.w;
    inputs[`g${i}`] = s.g;
    inputs[`m${i}`] = s.m;
    inputs[`v${i}`] = s.v;
  });
  return inputs;
}

/** The slots of `MiSslAdamMany`'s named inputs (the inverse of {@linkcode adamManyInputs}). */
export function adamManySlots(inputs: tf.NamedTensorInfoMap): AdamSlot<tf.TensorInfo>[] {
  const count = Object.keys(inputs).filter((k) => k !== ADAM_GATE_INPUT).length / 4;
  if (!Number.isInteger(count)) {
    throw new Error(`${ADAM_MANY_KERNEL}: inputs come in fours (w, g, m, v), got ${count * 4}`);
  }
  return Array.from({ length: count }, (_, i) => {
    const [w, g, m, v] = ["w", "g", "m", "v"].map((k) => inputs[`${k}${i}`]);
    if (!w || !g || !m || !v) {
      throw new Error(`${ADAM_MANY_KERNEL}: missing input w${i}, g${i}, m${i} or v${i}`);
    }
    return { w, g, m, v };
  });
}
