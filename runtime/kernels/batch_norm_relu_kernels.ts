/**
 * The fused batch norm + ReLU kernels for the `wasm` and `cpu` backends (registered by
 * `batch_norm_relu.ts`): their names and attributes, and the forward and backward kernels, which
 * run the SIMD sweeps of `wasm_bn.ts` where they apply (split between the threads,
 * `batch_norm_relu_threaded.ts`, or on one, `batch_norm_relu_simd.ts`), else plain loops with
 * float64 statistics and sums.
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { type KernelMemory, kernelMemory } from "../tfjs_internals.ts";
import { bnKernelsFor } from "./wasm_bn.ts";
import { backwardSimd, forwardSimd } from "./batch_norm_relu_simd.ts";
import { backwardThreaded, forwardThreaded } from "./batch_norm_relu_threaded.ts";

/** Kernel name of the forward pass: outputs `[y, mean, variance]`. */
export const BATCH_NORM_RELU = "MiSslBatchNormRelu";
/** Kernel name of the backward pass: outputs `[dx, dgamma, dbeta]`. */
export const BATCH_NORM_RELU_GRAD = "MiSslBatchNormReluGrad";

/** Attributes of both kernels. */
export interface BatchNormReluAttrs {
  /** Sizes of consecutive groups of images with their own statistics (sum: the batch). */
  groups: number[];
  /** Added to the variance. */
  epsilon: number;
  /** Apply a ReLU to the output. */
  relu: boolean;
}

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Access to float32 data of tensors and creation of outputs, per backend. */
type Memory = KernelMemory;
const memoryOf = kernelMemory;

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkFloat(name: string, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    if (info.dtype !== "float32") throw new Error(`${name}: float32 tensors only`);
  }
}

/** Pixels per group and the channel count of `[B, H, W, C]` data split by `groups`. */
function layout(shape: readonly number[], groups: number[]): { c: number; pixels: number[] } {
  const c = shape[shape.length - 1];
  const perImage = sizeOf(shape) / (shape[0] * c);
  if (groups.reduce((a, b) => a + b, 0) !== shape[0]) {
    throw new Error(`batchNormRelu: groups ${groups} do not add up to the batch ${shape[0]}`);
  }
  return { c, pixels: groups.map((g) => g * perImage) };
}

/** The forward kernel: outputs `[y, mean, variance]` (see {@linkcode BATCH_NORM_RELU}). */
export function forwardKernel(args: KernelArgs): TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, TensorInfo>;
  const { groups, epsilon, relu } = args.attrs as unknown as BatchNormReluAttrs;
  checkFloat(BATCH_NORM_RELU, x, gamma, beta);
  const { c, pixels } = layout(x.shape, groups);
  const g = groups.length;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(x.shape);
  const meanInfo = mem.alloc([g, c]);
  const varInfo = mem.alloc([g, c]);
  const simd = c % 4 === 0 ? bnKernelsFor(args.backend) : null;
  if (simd !== null) {
    const t = { x, out, meanInfo, varInfo, gamma, beta };
    if (!forwardThreaded(args.backend, mem, t, pixels, c, { epsilon, relu })) {
      forwardSimd(simd, args.backend, mem, t, pixels, c, { epsilon, relu });
    }
    return [out, meanInfo, varInfo];
  }
  const xv = mem.view(x), ov = mem.view(out);
  const gv = mem.view(gamma), bv = mem.view(beta);
  const mv = mem.view(meanInfo), vv = mem.view(varInfo);
  const sum = new Float64Array(c);
  const scale = new Float32Array(c), shift = new Float32Array(c);
  let start = 0;
  for (let k = 0; k < g; k++) {
    const end = start + pixels[k] * c;
    const n = pixels[k];
    sum.fill(0);
    for (let i = start; i < end; i += c) {
      for (let j = 0; j < c; j++) sum[j] += xv[i + j];
    }
    for (let j = 0; j < c; j++) sum[j] /= n;
    const mean = Float64Array.from(sum);
    sum.fill(0);
    for (let i = start; i < end; i += c) {
      for (let j = 0; j < c; j++) {
        const d = xv[i + j] - mean[j];
        sum[j] += d * d;
      }
    }
    for (let j = 0; j < c; j++) {
      const variance = sum[j] / n;
      const rstd = 1 / Math.sqrt(variance + epsilon);
      mv[k * c + j] = mean[j];
      vv[k * c + j] = variance;
      scale[j] = gv[j] * rstd;
      shift[j] = bv[j] - mean[j] * gv[j] * rstd;
    }
    if (relu) {
      for (let i = start; i < end; i += c) {
        for (let j = 0; j < c; j++) {
          const z = xv[i + j] * scale[j] + shift[j];
          ov[i + j] = z > 0 ? z : 0;
        }
      }
    } else {
      for (let i = start; i < end; i += c) {
        for (let j = 0; j < c; j++) ov[i + j] = xv[i + j] * scale[j] + shift[j];
      }
    }
    start = end;
  }
  return [out, meanInfo, varInfo];
}

/** The backward kernel: outputs `[dx, dgamma, dbeta]` (see {@linkcode BATCH_NORM_RELU_GRAD}). */
export function backwardKernel(args: KernelArgs): TensorInfo[] {
  const { dy, x, gamma, y, mean, variance } = args.inputs as Record<string, TensorInfo>;
  const { groups, epsilon, relu } = args.attrs as unknown as BatchNormReluAttrs;
  checkFloat(BATCH_NORM_RELU_GRAD, dy, x, gamma, y, mean, variance);
  const { c, pixels } = layout(x.shape, groups);
  const g = groups.length;
  const mem = memoryOf(args.backend);
  const dx = mem.alloc(x.shape);
  const dgamma = mem.alloc([c]);
  const dbeta = mem.alloc([c]);
  const simd = c % 4 === 0 ? bnKernelsFor(args.backend) : null;
  if (simd !== null) {
    const t = { dy, x, gamma, y, mean, variance, dx, dgamma, dbeta };
    if (!backwardThreaded(args.backend, mem, t, pixels, c, { epsilon, relu })) {
      backwardSimd(simd, args.backend, mem, t, pixels, c, { epsilon, relu });
    }
    return [dx, dgamma, dbeta];
  }
  const dyv = mem.view(dy), xv = mem.view(x), yv = mem.view(y), gv = mem.view(gamma);
  const mv = mem.view(mean), vv = mem.view(variance);
  const dxv = mem.view(dx), dgv = mem.view(dgamma), dbv = mem.view(dbeta);
  const s1 = new Float64Array(c), s2 = new Float64Array(c);
  const totalG = new Float64Array(c), totalB = new Float64Array(c);
  const mu = new Float32Array(c), rstd = new Float32Array(c);
  const a = new Float32Array(c), b = new Float32Array(c), k0 = new Float32Array(c);
  let start = 0;
  for (let k = 0; k < g; k++) {
    const end = start + pixels[k] * c;
    const n = pixels[k];
    for (let j = 0; j < c; j++) {
      mu[j] = mv[k * c + j];
      rstd[j] = 1 / Math.sqrt(vv[k * c + j] + epsilon);
    }
    s1.fill(0);
    s2.fill(0);
    // s1 = sum dz, s2 = sum dz * xhat, with dz = dy * [y > 0] (the ReLU's mask).
    for (let i = start; i < end; i += c) {
      for (let j = 0; j < c; j++) {
        const d = relu && !(yv[i + j] > 0) ? 0 : dyv[i + j];
        s1[j] += d;
        s2[j] += d * (xv[i + j] - mu[j]) * rstd[j];
      }
    }
    // dx = gamma rstd (dz - s1 / n - xhat s2 / n) = a dz + b (x - mu) + k0
    for (let j = 0; j < c; j++) {
      totalB[j] += s1[j];
      totalG[j] += s2[j];
      a[j] = gv[j] * rstd[j];
      b[j] = -a[j] * rstd[j] * s2[j] / n;
      k0[j] = -a[j] * s1[j] / n;
    }
    for (let i = start; i < end; i += c) {
      for (let j = 0; j < c; j++) {
        const d = relu && !(yv[i + j] > 0) ? 0 : dyv[i + j];
        dxv[i + j] = a[j] * d + b[j] * (xv[i + j] - mu[j]) + k0[j];
      }
    }
    start = end;
  }
  for (let j = 0; j < c; j++) {
    dgv[j] = totalG[j];
    dbv[j] = totalB[j];
  }
  return [dx, dgamma, dbeta];
}
