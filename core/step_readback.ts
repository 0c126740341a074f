/**
 * When the trainer reads a step's loss terms back (`trainer.readback`): `step` reads each step's
 * terms right after it (the host waits for the GPU every step), `log` keeps each step's terms as
 * one small device tensor in a {@linkcode StepQueue} and reads the whole queue in one readback at
 * logged iterations, before validation and checkpoints, at interrupts and at the end; `auto` is
 * `log` on webgpu with the fused kernels that gate the update on the device, `step` elsewhere.
 *
 * @module
 */
import { tf } from "../deps.ts";

/** The recipe's `trainer.readback`. */
export type ReadbackOption = "auto" | "step" | "log";

/**
 * The mode a run uses: `auto` is `log` where the update is gated on the device cheaply
 * (`gatedOnDevice`: webgpu with the fused Adam, whose gate input adds no program), else `step`.
 * An explicit `log` is honoured everywhere: without the fused kernels the gate composes
 * `tf.where` (a few programs a variable), slower but the same numbers.
 */
export function readbackMode(
  option: ReadbackOption,
  where: { backend: string; gatedOnDevice: boolean },
): "step" | "log" {
  if (option === "auto") return where.backend === "webgpu" && where.gatedOnDevice ? "log" : "step";
  return option;
}

/** One step's loss terms: read already (`values`) or still on the device (`device`). */
export interface QueuedStep {
  /** 0-based iteration of the step. */
  iteration: number;
  /** The terms' names, in the order of `device`'s elements (`loss` first). */
  names: string[];
  /** The terms stacked into one 1-D tensor (owned by the queue), or null once read. */
  device: tf.Tensor | null;
  /** The terms' values where the step read them itself (the eager `step` mode). */
  values: number[] | null;
  /** Host-side numbers of the step that go with its terms (learning rate, ramp). */
  host: Record<string, number>;
  /** The run's times after the step (`metrics.jsonl`'s). */
  times: Record<string, number>;
}

/** A read step: its terms by name (`loss` first) and whether it was queued on the device. */
export interface ReadStep {
  /** 0-based iteration. */
  iteration: number;
  /** The loss terms by name, in the queued order. */
  values: Record<string, number>;
  /** Host-side numbers of the step. */
  host: Record<string, number>;
  /** The run's times after the step. */
  times: Record<string, number>;
  /** True where the step's update was gated on the device (its terms were not read before). */
  deferred: boolean;
}

/**
 * Readbacks of loss terms in this process (a step's own, a queue's): for tests and the bench.
 */
export const readbackCount = { reads: 0 };

/** Steps waiting for their loss terms to be read, in order. */
export class StepQueue {
  #steps: QueuedStep[] = [];

  /** Steps waiting. */
  get size(): number {
    return this.#steps.length;
  }

  /** Queue a step (the queue owns `step.device`). */
  push(step: QueuedStep): void {
    this.#steps.push(step);
  }

  /**
   * Read every waiting step, in order, the device-held ones in one readback (their tensors
   * concatenated), and empty the queue.
   */
  async read(): Promise<ReadStep[]> {
    const steps = this.#steps;
    this.#steps = [];
    const held = steps.filter((s) => s.device !== null);
    let flat: Float32Array | null = null;
    if (held.length > 0) {
      const all = held.length === 1 ? held[0].device! : tf.concat(held.map((s) => s.device!));
      try {
        flat = await all.data() as Float32Array;
        readbackCount.reads++;
      } finally {
        if (all !== held[0].device) all.dispose();
        for (const s of held) s.device!.dispose();
      }
    }
    let at = 0;
    return steps.map((s) => {
      let numbers = s.values;
      if (numbers === null) {
        numbers = Array.from(flat!.subarray(at, at + s.names.length));
        at += s.names.length;
      }
      const values: Record<string, number> = {};
      s.names.forEach((name, i) => (values[name] = numbers[i]));
      return {
        iteration: s.iteration,
        values,
        host: s.host,
        times: s.times,
        deferred: s.values === null,
      };
    });
  }

  /** Free the waiting steps' tensors (their terms are lost). */
  dispose(): void {
    for (const s of this.#steps) s.device?.dispose();
    this.#steps = [];
  }
}

/** The first term of `values` that is not finite, as `[name, value]`, or undefined. */
export function firstNonFinite(values: Record<string, number>): [string, number] | undefined {
  return Object.entries(values).find(([, v]) => !Number.isFinite(v));
}
