/**
 * Adam (with PyTorch-style L2 weight decay) over named variables, and learning-rate schedules.
 * The optimizer's moments are plain named variables so that checkpoints can hold them.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { ADAM_KERNEL } from "../runtime/kernels/adam.ts";
import { ADAM_MANY_KERNEL, adamManyInputs } from "../runtime/kernels/adam_many.ts";

/** Assign a fused update's outputs `[w', m', v', ...]` to the slots' variables. */
function assignAll(
  slots: { w: tf.Variable; m: tf.Variable; v: tf.Variable }[],
  outputs: tf.Tensor[],
): void {
  slots.forEach((s, i) => {
    s.w.assign(outputs[3 * i]);
    s.m.assign(outputs[3 * i + 1]);
    s.v.assign(outputs[3 * i + 2]);
  });
}

/** Options of {@linkcode Adam}. */
export interface AdamOptions {
  /** Decay of the first moment. @default {0.9} */
  beta1?: number;
  /** Decay of the second moment. @default {0.999} */
  beta2?: number;
  /** Added to the denominator's square root. @default {1e-8} */
  epsilon?: number;
  /** L2 penalty added to the gradient, as in `torch.optim.Adam`. @default {0} */
  weightDecay?: number;
  /**
   * Prefix of the moments' tfjs variable names (a trainer's variable scope, so that two
   * optimizers can live in one process); {@linkcode Adam.stateVariables} names them without it.
   * @default {""}
   */
  scope?: string;
}

/** Adam over a fixed set of named variables. */
export class Adam {
  readonly #vars: Map<string, tf.Variable>;
  readonly #m = new Map<string, tf.Variable>();
  readonly #v = new Map<string, tf.Variable>();
  readonly #b1: number;
  readonly #b2: number;
  readonly #eps: number;
  readonly #wd: number;
  /** Steps taken so far (bias correction). */
  step = 0;

  /**
   * Adam over `variables`, its moments zero.
   *
   * @param variables The variables to update, by name (gradients are keyed the same way).
   * @param options Hyper-parameters and the variable scope of the moments.
   */
  constructor(variables: Map<string, tf.Variable>, options: AdamOptions = {}) {
    this.#vars = variables;
    this.#b1 = options.beta1 ?? 0.9;
    this.#b2 = options.beta2 ?? 0.999;
    this.#eps = options.epsilon ?? 1e-8;
    this.#wd = options.weightDecay ?? 0;
    const scope = options.scope ?? "";
    try {
      // each moment its own zeros: a fused update may write a moment's data in place
      const zeros = (v: tf.Variable, name: string) =>
        tf.tidy(() => tf.variable(tf.zerosLike(v), false, name));
      for (const [name, v] of variables) {
        this.#m.set(name, zeros(v, `${scope}adam/m/${name}`));
        this.#v.set(name, zeros(v, `${scope}adam/v/${name}`));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  /**
   * Apply one update with learning rate `lr` from gradients keyed like the variables. With `ok`
   * (a one-element bool tensor, e.g. "every loss term is finite", left on the device), the
   * update applies only where it is true: weights and moments stay as they are otherwise. The
   * step count (bias correction) counts the update either way: a caller that learns later that
   * it did not apply takes it back (`step--`).
   */
  apply(grads: Record<string, tf.Tensor>, lr: number, ok?: tf.Tensor): void {
    this.step++;
    const c1 = 1 - this.#b1 ** this.step;
    const c2 = 1 - this.#b2 ** this.step;
    const stepSize = lr / c1;
    const backend = tf.getBackend();
    const many = tf.getKernel(ADAM_MANY_KERNEL, backend) !== undefined;
    const fused = tf.getKernel(ADAM_KERNEL, backend) !== undefined;
    const attrs = {
      stepSize,
      beta1: this.#b1,
      beta2: this.#b2,
      epsilon: this.#eps,
      c2,
      weightDecay: this.#wd,
    };
    tf.tidy(() => {
      // with MiSslAdamMany, every float32 variable in one kernel call (webgpu: a few programs)
      const batch: { w: tf.Variable; g: tf.Tensor; m: tf.Variable; v: tf.Variable }[] = [];
      for (const [name, variable] of this.#vars) {
        let g = grads[name];
        if (g === undefined) continue;
        const float = g.dtype === "float32" && variable.dtype === "float32";
        if ((fused || many) && float) {
          const slot = { w: variable, g, m: this.#m.get(name)!, v: this.#v.get(name)! };
          if (many) {
            batch.push(slot);
            continue;
          }
          if (ok === undefined) {
            assignAll([slot], tf.engine().runKernel(ADAM_KERNEL, slot as never, attrs) as never);
            continue;
          }
          // the one-variable kernel has no gate: keep the old values (held, the kernel writes
          // new buffers) and select
          const old = [slot.w, slot.m, slot.v].map((t) => tf.clone(t));
          const out = tf.engine().runKernel(ADAM_KERNEL, slot as never, attrs) as tf.Tensor[];
          const gate = tf.cast(ok, "bool");
          assignAll([slot], out.map((t, j) => tf.where(gate, t, old[j])));
          continue;
        }
        if (this.#wd > 0) g = tf.add(g, tf.mul(variable, this.#wd));
        const m = this.#m.get(name)!;
        const v = this.#v.get(name)!;
        const mNew = tf.add(tf.mul(m, this.#b1), tf.mul(g, 1 - this.#b1));
        const vNew = tf.add(tf.mul(v, this.#b2), tf.mul(tf.square(g), 1 - this.#b2));
        const denom = tf.add(tf.sqrt(tf.div(vNew, c2)), this.#eps);
        const wNew = tf.sub(variable, tf.mul(tf.div(mNew, denom), stepSize));
        const gate = (next: tf.Tensor, old: tf.Tensor) =>
          ok === undefined ? next : tf.where(tf.cast(ok, "bool"), next, old);
        const [w1, m1, v1] = [gate(wNew, variable), gate(mNew, m), gate(vNew, v)];
        m.assign(m1);
        v.assign(v1);
        variable.assign(w1);
      }
      if (batch.length > 0) {
        const inputs = adamManyInputs(batch, ok) as unknown as tf.NamedTensorMap;
        assignAll(batch, tf.engine().runKernel(ADAM_MANY_KERNEL, inputs, attrs) as tf.Tensor[]);
      }
    });
  }

  /** The moments by name for checkpoints: `adam/m/<variable>`, `adam/v/<variable>` (no scope). */
  stateVariables(): Map<string, tf.Variable> {
    return new Map([
      ...[...this.#m].map(([k, v]) => [`adam/m/${k}`, v] as const),
      ...[...this.#v].map(([k, v]) => [`adam/v/${k}`, v] as const),
    ]);
  }

  /** Free the moments (idempotent). */
  dispose(): void {
    for (const v of this.#m.values()) v.dispose();
    for (const v of this.#v.values()) v.dispose();
    this.#m.clear();
    this.#v.clear();
  }
}

/** A learning-rate schedule (recipe `optimizer.schedule`). */
export interface ScheduleOptions {
  /** `constant`, `step` (times `gamma` every `stepSize`), or `cosine` (down to `minLr`). */
  type: "constant" | "step" | "cosine";
  /** Linear warm-up iterations from 0 to `lr`. */
  warmup: number;
  /** Iterations between decays (`step`); default: a third of the run. */
  stepSize?: number;
  /** Decay factor (`step`). */
  gamma: number;
  /** Final learning rate (`cosine`). */
  minLr: number;
}

/** Learning rate at 0-based `iteration` of `total`. */
export function learningRate(
  base: number,
  schedule: ScheduleOptions,
  iteration: number,
  total: number,
): number {
  if (schedule.warmup > 0 && iteration < schedule.warmup) {
    return base * (iteration + 1) / schedule.warmup;
  }
  const t = iteration - schedule.warmup;
  const span = Math.max(total - schedule.warmup, 1);
  switch (schedule.type) {
    case "constant":
      return base;
    case "step": {
      const size = schedule.stepSize ?? Math.max(Math.ceil(span / 3), 1);
      return base * schedule.gamma ** Math.floor(t / size);
    }
    case "cosine":
      return schedule.minLr + (base - schedule.minLr) * 0.5 * (1 + Math.cos(Math.PI * t / span));
  }
}
