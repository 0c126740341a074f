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
 * ```ts
 * import { batchNormRelu } from "./batch_norm_relu.ts";
 * const { y, mean, variance } = batchNormRelu(x, gamma, beta, { groups: [4, 4, 4] });
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernel, type KernelMemory, kernelMemory, kernelMode } from "../tfjs_internals.ts";
import { type BnKernels, bnKernelsFor } from "./wasm_bn.ts";
import { type KernelCall, kernelThreads, runCallLists } from "./wasm_conv.ts";

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

function forwardKernel(args: KernelArgs): TensorInfo[] {
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

function backwardKernel(args: KernelArgs): TensorInfo[] {
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

/** Byte offset of a tensor's data on the wasm heap. */
function heapOffset(backend: unknown, info: TensorInfo): number {
  return (backend as { dataIdMap: { get(id: unknown): { memoryOffset: number } } }).dataIdMap
    .get(info.dataId).memoryOffset;
}

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

function forwardSimd(
  k: BnKernels,
  backend: unknown,
  mem: Memory,
  t: Record<"x" | "out" | "meanInfo" | "varInfo" | "gamma" | "beta", TensorInfo>,
  pixels: number[],
  c: number,
  o: { epsilon: number; relu: boolean },
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

function backwardSimd(
  k: BnKernels,
  backend: unknown,
  mem: Memory,
  t: Record<
    "dy" | "x" | "gamma" | "y" | "mean" | "variance" | "dx" | "dgamma" | "dbeta",
    TensorInfo
  >,
  pixels: number[],
  c: number,
  o: { epsilon: number; relu: boolean },
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

/** Elements per thread below which the sweeps stay on one thread. */
const ELEMENTS_PER_PART = 32768;

/**
 * Parts to split each group's pixels into: one per thread of the kernel pool, fewer for small
 * tensors (the split depends on the thread count and the shape only).
 */
function partsOf(backend: unknown, pixels: number[], c: number): number {
  const total = pixels.reduce((a, b) => a + b, 0) * c;
  const threads = kernelThreads(backend as never);
  return Math.max(1, Math.min(threads, Math.floor(total / ELEMENTS_PER_PART)));
}

/** Pixel range `[lo, hi)` of part `k` of `parts` of `n` pixels. */
function range(n: number, k: number, parts: number): [number, number] {
  return [Math.round((k * n) / parts), Math.round(((k + 1) * n) / parts)];
}

/** Calls of a per-channel-block sweep over `c` channels: blocks of 16, then of 4. */
function blockCalls(
  name4: string,
  name1: string,
  args: (gBytes: number) => number[],
  c: number,
): KernelCall[] {
  const calls: KernelCall[] = [];
  let g = 0;
  for (; g + 16 <= c; g += 16) calls.push([name4, ...args(4 * g)]);
  for (; g < c; g += 4) calls.push([name1, ...args(4 * g)]);
  return calls;
}

/**
 * The forward sweeps of every group split by pixels between the kernel pool's threads, each
 * thread summing into its own float64 partial sums, which are then added in part order (the
 * result depends on the thread count, not on which thread ran which part). False where the
 * kernel module does not run on `backend` (nothing done).
 */
function forwardThreaded(
  backend: unknown,
  mem: Memory,
  t: Record<"x" | "out" | "meanInfo" | "varInfo" | "gamma" | "beta", TensorInfo>,
  pixels: number[],
  c: number,
  o: { epsilon: number; relu: boolean },
): boolean {
  if (!runCallLists(backend as never, [])) return false;
  const g = pixels.length;
  const parts = partsOf(backend, pixels, c);
  // scratch: parts x g x c float64 sums, then g x c mean, scale, shift (float32)
  const scratch = mem.alloc([2 * parts * g * c + 3 * g * c]);
  const base = heapOffset(backend, scratch);
  const sumsAt = (k: number, group: number) => base + 8 * (k * g + group) * c;
  const meanAt = base + 8 * parts * g * c;
  const scaleAt = meanAt + 4 * g * c, shiftAt = scaleAt + 4 * g * c;
  const xo = heapOffset(backend, t.x), oo = heapOffset(backend, t.out);
  const starts = pixels.map((_, i) => pixels.slice(0, i).reduce((a, b) => a + b, 0));
  const sweep = (name: "sum" | "sq" | "apply") =>
    Array.from({ length: parts }, (_, k) =>
      pixels.flatMap((n, group): KernelCall[] => {
        const [lo, hi] = range(n, k, parts);
        if (hi <= lo) return [];
        const at = 4 * c * (starts[group] + lo);
        if (name === "apply") {
          return [[
            "bn_apply",
            xo + at,
            oo + at,
            hi - lo,
            c / 4,
            scaleAt + 4 * group * c,
            shiftAt + 4 * group * c,
            o.relu ? 1 : 0,
          ]];
        }
        return blockCalls(
          `bn_${name}4`,
          `bn_${name}1`,
          (gb) => [xo + at, hi - lo, 4 * c, gb, meanAt + 4 * group * c, sumsAt(k, group)],
          c,
        );
      }));
  const f64 = () => {
    const view = mem.view(scratch);
    return new Float64Array(view.buffer, view.byteOffset, parts * g * c);
  };
  const f32 = (at: number) => {
    const view = mem.view(scratch);
    return new Float32Array(view.buffer, view.byteOffset + (at - base), g * c);
  };
  /** Sum of the parts' float64 sums of (group, channel) `i`, in part order. */
  const total = (sums: Float64Array, i: number) => {
    let s = 0;
    for (let k = 0; k < parts; k++) s += sums[k * g * c + i];
    return s;
  };
  f64().fill(0);
  runCallLists(backend as never, sweep("sum"));
  let sums = f64();
  const mean = f32(meanAt);
  pixels.forEach((n, group) => {
    for (let j = 0; j < c; j++) mean[group * c + j] = total(sums, group * c + j) / n;
  });
  f64().fill(0);
  runCallLists(backend as never, sweep("sq"));
  sums = f64();
  const scale = f32(scaleAt), shift = f32(shiftAt), mean2 = f32(meanAt);
  const gv = mem.view(t.gamma), bv = mem.view(t.beta);
  const mv = mem.view(t.meanInfo), vv = mem.view(t.varInfo);
  pixels.forEach((n, group) => {
    for (let j = 0; j < c; j++) {
      const i = group * c + j;
      const variance = total(sums, i) / n;
      const rstd = 1 / Math.sqrt(variance + o.epsilon);
      mv[i] = mean2[i];
      vv[i] = variance;
      scale[i] = gv[j] * rstd;
      shift[i] = bv[j] - mean2[i] * gv[j] * rstd;
    }
  });
  runCallLists(backend as never, sweep("apply"));
  (backend as { disposeData(id: unknown): void }).disposeData(scratch.dataId);
  return true;
}

/** The backward sweeps split between the threads as in {@linkcode forwardThreaded}. */
function backwardThreaded(
  backend: unknown,
  mem: Memory,
  t: Record<
    "dy" | "x" | "gamma" | "y" | "mean" | "variance" | "dx" | "dgamma" | "dbeta",
    TensorInfo
  >,
  pixels: number[],
  c: number,
  o: { epsilon: number; relu: boolean },
): boolean {
  if (!runCallLists(backend as never, [])) return false;
  const g = pixels.length;
  const parts = partsOf(backend, pixels, c);
  // scratch: parts x g x c float64 s1, the same for s2, then g x c mean, a, b, k (float32)
  const scratch = mem.alloc([4 * parts * g * c + 4 * g * c]);
  const base = heapOffset(backend, scratch);
  const s1At = (k: number, group: number) => base + 8 * (k * g + group) * c;
  const s2At = (k: number, group: number) => base + 8 * ((parts + k) * g + group) * c;
  const muAt = base + 16 * parts * g * c;
  const aAt = muAt + 4 * g * c, bAt = aAt + 4 * g * c, kAt = bAt + 4 * g * c;
  const dyo = heapOffset(backend, t.dy), xo = heapOffset(backend, t.x);
  const yo = heapOffset(backend, t.y), dxo = heapOffset(backend, t.dx);
  const relu = o.relu ? 1 : 0;
  const starts = pixels.map((_, i) => pixels.slice(0, i).reduce((a, b) => a + b, 0));
  const sweep = (name: "sums" | "apply") =>
    Array.from({ length: parts }, (_, k) =>
      pixels.flatMap((n, group): KernelCall[] => {
        const [lo, hi] = range(n, k, parts);
        if (hi <= lo) return [];
        const at = 4 * c * (starts[group] + lo);
        const gc = 4 * group * c;
        if (name === "apply") {
          return [[
            "bn_grad_apply",
            dyo + at,
            xo + at,
            yo + at,
            dxo + at,
            hi - lo,
            c / 4,
            aAt + gc,
            bAt + gc,
            kAt + gc,
            relu,
          ]];
        }
        return blockCalls("bn_grad_sums4", "bn_grad_sums1", (gb) => [
          dyo + at,
          xo + at,
          yo + at,
          hi - lo,
          4 * c,
          gb,
          muAt + gc,
          s1At(k, group),
          s2At(k, group),
          relu,
        ], c);
      }));
  let view = mem.view(scratch);
  new Float64Array(view.buffer, view.byteOffset, 2 * parts * g * c).fill(0);
  const mu = new Float32Array(view.buffer, view.byteOffset + 16 * parts * g * c, g * c);
  mu.set(mem.view(t.mean).subarray(0, g * c));
  runCallLists(backend as never, sweep("sums"));
  view = mem.view(scratch);
  const sums = new Float64Array(view.buffer, view.byteOffset, 2 * parts * g * c);
  const f32 = (at: number) => new Float32Array(view.buffer, view.byteOffset + (at - base), g * c);
  const a = f32(aAt), b = f32(bAt), k0 = f32(kAt), mu2 = f32(muAt);
  const vv = mem.view(t.variance), gv = mem.view(t.gamma);
  const totalG = new Float64Array(c), totalB = new Float64Array(c);
  pixels.forEach((n, group) => {
    for (let j = 0; j < c; j++) {
      const i = group * c + j;
      let s1 = 0, s2 = 0;
      for (let k = 0; k < parts; k++) {
        s1 += sums[k * g * c + i];
        s2 += sums[(parts + k) * g * c + i];
      }
      const rstd = 1 / Math.sqrt(vv[i] + o.epsilon);
      const sx = s2 * rstd; // sum dz * xhat
      totalB[j] += s1;
      totalG[j] += sx;
      a[i] = gv[j] * rstd;
      b[i] = -a[i] * rstd * sx / n;
      k0[i] = -a[i] * s1 / n - b[i] * mu2[i];
    }
  });
  runCallLists(backend as never, sweep("apply"));
  const dgv = mem.view(t.dgamma), dbv = mem.view(t.dbeta);
  for (let j = 0; j < c; j++) {
    dgv[j] = totalG[j];
    dbv[j] = totalB[j];
  }
  (backend as { disposeData(id: unknown): void }).disposeData(scratch.dataId);
  return true;
}

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
