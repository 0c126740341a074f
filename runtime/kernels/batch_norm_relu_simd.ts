/**
 * The fused batch norm + ReLU and its gradient on one thread as the SIMD sweeps of `wasm_bn.ts`
 * over the wasm heap (what `batch_norm_relu_kernels.ts` runs where the kernel pool does not).
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { type KernelMemory as Memory, wasmOffset as heapOffset } from "../tfjs_internals.ts";
import type { BnKernels } from "./wasm_bn.ts";

type TensorInfo = tf.TensorInfo;

/** The tensors of the forward sweeps (output `out`, statistics `meanInfo`, `varInfo`). */
export type ForwardTensors = Record<
  "x" | "out" | "meanInfo" | "varInfo" | "gamma" | "beta",
  TensorInfo
>;
/** The tensors of the backward sweeps (outputs `dx`, `dgamma`, `dbeta`). */
export type BackwardTensors = Record<
  "dy" | "x" | "gamma" | "y" | "mean" | "variance" | "dx" | "dgamma" | "dbeta",
  TensorInfo
>;
/** The attributes the sweeps use. */
export type SweepOptions = { epsilon: number; relu: boolean };

/** Per-channel float64 sums over 16-channel (then 4-channel) blocks of `n` pixels. */
function channelSums(
  sweep16: (x: number, n: number, cb: number, g: number, mean: number, out: number) => void,
  sweep4: (x: number, n: number, cb: number, g: number, mean: number, out: number) => void,
  x: number,
  n: number,
  c: number,
  mean: number,
  out: number,
): void {
  let g = 0;
  for (; g + 16 <= c; g += 16) sweep16(x, n, 4 * c, 4 * g, mean, out);
  for (; g < c; g += 4) sweep4(x, n, 4 * c, 4 * g, mean, out);
}

/** The forward sweeps of every group on the calling thread. */
export function forwardSimd(
  k: BnKernels,
  backend: unknown,
  mem: Memory,
  t: ForwardTensors,
  pixels: number[],
  c: number,
  o: SweepOptions,
): void {
  // scratch: c float64 sums, then mean, scale, shift (float32)
  const scratch = mem.alloc([5 * c]);
  const base = heapOffset(backend, scratch);
  const sums = base, meanAt = base + 8 * c, scaleAt = base + 12 * c, shiftAt = base + 16 * c;
  const xo = heapOffset(backend, t.x), oo = heapOffset(backend, t.out);
  let start = 0;
  pixels.forEach((n, group) => {
    const view = mem.view(scratch);
    const f64 = new Float64Array(view.buffer, view.byteOffset, c);
    f64.fill(0);
    channelSums(k.sum4, k.sum1, xo + 4 * start, n, c, 0, sums);
    const mean = new Float32Array(view.buffer, view.byteOffset + 8 * c, c);
    for (let j = 0; j < c; j++) mean[j] = f64[j] / n;
    f64.fill(0);
    channelSums(k.sq4, k.sq1, xo + 4 * start, n, c, meanAt, sums);
    const scale = new Float32Array(view.buffer, view.byteOffset + 12 * c, c);
    const shift = new Float32Array(view.buffer, view.byteOffset + 16 * c, c);
    const gv = mem.view(t.gamma), bv = mem.view(t.beta);
    const mv = mem.view(t.meanInfo), vv = mem.view(t.varInfo);
    for (let j = 0; j < c; j++) {
      const variance = f64[j] / n;
      const rstd = 1 / Math.sqrt(variance + o.epsilon);
      mv[group * c + j] = mean[j];
      vv[group * c + j] = variance;
      scale[j] = gv[j] * rstd;
      shift[j] = bv[j] - mean[j] * gv[j] * rstd;
    }
    k.apply(xo + 4 * start, oo + 4 * start, n, c / 4, scaleAt, shiftAt, o.relu ? 1 : 0);
    start += n * c;
  });
  (backend as { disposeData(id: unknown): void }).disposeData(scratch.dataId);
}

/** The backward sweeps of every group on the calling thread. */
export function backwardSimd(
  k: BnKernels,
  backend: unknown,
  mem: Memory,
  t: BackwardTensors,
  pixels: number[],
  c: number,
  o: SweepOptions,
): void {
  // scratch: s1, s2 (float64), then mean, a, b, k (float32)
  const scratch = mem.alloc([8 * c]);
  const base = heapOffset(backend, scratch);
  const s1At = base, s2At = base + 8 * c, muAt = base + 16 * c;
  const aAt = base + 20 * c, bAt = base + 24 * c, kAt = base + 28 * c;
  const dyo = heapOffset(backend, t.dy), xo = heapOffset(backend, t.x);
  const yo = heapOffset(backend, t.y), dxo = heapOffset(backend, t.dx);
  const totalG = new Float64Array(c), totalB = new Float64Array(c);
  let start = 0;
  pixels.forEach((n, group) => {
    let view = mem.view(scratch);
    const mv = mem.view(t.mean), vv = mem.view(t.variance);
    new Float64Array(view.buffer, view.byteOffset, 2 * c).fill(0);
    const mu = new Float32Array(view.buffer, view.byteOffset + 16 * c, c);
    for (let j = 0; j < c; j++) mu[j] = mv[group * c + j];
    const relu = o.relu ? 1 : 0;
    const at = 4 * start;
    let g = 0;
    for (; g + 16 <= c; g += 16) {
      k.gradSums4(dyo + at, xo + at, yo + at, n, 4 * c, 4 * g, muAt, s1At, s2At, relu);
    }
    for (; g < c; g += 4) {
      k.gradSums1(dyo + at, xo + at, yo + at, n, 4 * c, 4 * g, muAt, s1At, s2At, relu);
    }
    view = mem.view(scratch);
    const s1 = new Float64Array(view.buffer, view.byteOffset, c);
    const s2 = new Float64Array(view.buffer, view.byteOffset + 8 * c, c);
    const a = new Float32Array(view.buffer, view.byteOffset + 20 * c, c);
    const b = new Float32Array(view.buffer, view.byteOffset + 24 * c, c);
    const k0 = new Float32Array(view.buffer, view.byteOffset + 28 * c, c);
    const gv = mem.view(t.gamma);
    for (let j = 0; j < c; j++) {
      const rstd = 1 / Math.sqrt(vv[group * c + j] + o.epsilon);
      const sx = s2[j] * rstd; // sum dz * xhat
      totalB[j] += s1[j];
      totalG[j] += sx;
      a[j] = gv[j] * rstd;
      b[j] = -a[j] * rstd * sx / n;
      k0[j] = -a[j] * s1[j] / n - b[j] * mu[j];
    }
    k.gradApply(dyo + at, xo + at, yo + at, dxo + at, n, c / 4, aAt, bAt, kAt, relu);
    start += n * c;
  });
  const dgv = mem.view(t.dgamma), dbv = mem.view(t.dbeta);
  for (let j = 0; j < c; j++) {
    dgv[j] = totalG[j];
    dbv[j] = totalB[j];
  }
  (backend as { disposeData(id: unknown): void }).disposeData(scratch.dataId);
}
