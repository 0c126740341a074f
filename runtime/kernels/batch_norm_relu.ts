/**
 * Training-mode batch normalisation (no running statistics inside) fused with the ReLU that
 * follows it, as one kernel with its own gradient kernel, for the `wasm` and `cpu` backends.
 *
 * Composed from tfjs ops, a training batch norm is `moments` (a transpose and two reductions),
 * four broadcasting element-wise ops and a ReLU, and its gradient is a dozen more, with
 * broadcast gradients reduced through `Sum` and every intermediate kept for the backward pass.
 * Here the forward pass is two sweeps over the data (statistics, then normalise + scale + shift
 * + ReLU) and keeps only its input and output for the backward pass, which is two sweeps too
 * (per-channel sums, then the input gradient). Statistics and sums are accumulated in float64.
 *
 * Statistics may be per group of consecutive images (`groups`), as if each group went through
 * the network alone.
 *
 * This module holds the op, its registration and its gradient; the kernels are in
 * `batch_norm_relu_kernels.ts` (plain loops), `batch_norm_relu_simd.ts` (one thread) and
 * `batch_norm_relu_threaded.ts` (the kernel pool).
 *
 * ```ts
 * import { batchNormRelu } from "./batch_norm_relu.ts";
 * const { y, mean, variance } = batchNormRelu(x, gamma, beta, { groups: [4, 4, 4] });
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernel, kernelMode } from "../tfjs_internals.ts";
import {
  backwardKernel,
  BATCH_NORM_RELU,
  BATCH_NORM_RELU_GRAD,
  type BatchNormReluAttrs,
  forwardKernel,
} from "./batch_norm_relu_kernels.ts";

export {
  BATCH_NORM_RELU,
  BATCH_NORM_RELU_GRAD,
  type BatchNormReluAttrs,
} from "./batch_norm_relu_kernels.ts";

/**
 * Register both kernels for `wasm` and `cpu` (through `tfjs_internals.ts`, so that
 * `kernels: builtin` can take them out again), and the gradient (idempotent).
 */
export function registerBatchNormRelu(): void {
  for (const backendName of ["wasm", "cpu"]) {
    for (
      const [kernelName, kernelFunc] of [
        [BATCH_NORM_RELU, forwardKernel],
        [BATCH_NORM_RELU_GRAD, backwardKernel],
      ] as const
    ) {
      addKernel({ kernelName, backendName, kernelFunc: kernelFunc as tf.KernelFunc });
    }
  }
  if (tf.getGradient(BATCH_NORM_RELU) === undefined) {
    tf.registerGradient({
      kernelName: BATCH_NORM_RELU,
      inputsToSave: ["x", "gamma"],
      outputsToSave: [true, true, true],
      gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
        const dy = Array.isArray(dys) ? dys[0] : dys;
        const [x, gamma, y, mean, variance] = saved;
        const [dx, dgamma, dbeta] = tf.engine().runKernel(
          BATCH_NORM_RELU_GRAD,
          { dy, x, gamma, y, mean, variance } as unknown as tf.NamedTensorMap,
          attrs,
        ) as tf.Tensor[];
        return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
      },
    });
  }
}

/** Whether the fused kernels run on the active backend (never with `kernels: builtin`). */
export function batchNormReluAvailable(): boolean {
  if (kernelMode() === "builtin") return false;
  registerBatchNormRelu();
  return tf.getKernel(BATCH_NORM_RELU, tf.getBackend()) !== undefined;
}

/** Options of {@linkcode batchNormRelu}. */
export interface BatchNormReluOptions {
  /** Sizes of consecutive groups of images with their own statistics. @default {[B]} */
  groups?: number[];
  /** @default {1e-5} */
  epsilon?: number;
  /** @default {true} */
  relu?: boolean;
}

/**
 * `relu(gamma * (x - mean) / sqrt(variance + epsilon) + beta)` with the batch statistics of
 * `x` (`[B, H, W, C]`) over all axes but the last, per group of images; differentiable in `x`,
 * `gamma` and `beta`. Also returns the biased statistics, `[G, C]` (for running averages).
 */
export function batchNormRelu(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  options: BatchNormReluOptions = {},
): { y: tf.Tensor4D; mean: tf.Tensor2D; variance: tf.Tensor2D } {
  registerBatchNormRelu();
  const attrs: BatchNormReluAttrs = {
    groups: options.groups ?? [x.shape[0]],
    epsilon: options.epsilon ?? 1e-5,
    relu: options.relu ?? true,
  };
  const [y, mean, variance] = tf.engine().runKernel(
    BATCH_NORM_RELU,
    { x, gamma, beta } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  return {
    y: y as tf.Tensor4D,
    mean: mean as tf.Tensor2D,
    variance: variance as tf.Tensor2D,
  };
}
