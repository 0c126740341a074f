/**
 * The fused batch norm + ReLU and its gradient as the SIMD sweeps of `wasm_bn.ts` split by pixels
 * between the kernel pool's threads, with partial sums added in part order.
 *
 * @module
 */
import { type KernelMemory as Memory, wasmOffset as heapOffset } from "../tfjs_internals.ts";
import { type KernelCall, kernelThreads, runCallLists } from "./wasm_conv.ts";
import type { BackwardTensors, ForwardTensors, SweepOptions } from "./batch_norm_relu_simd.ts";

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
export function forwardThreaded(
  backend: unknown,
  mem: Memory,
  t: ForwardTensors,
  pixels: number[],
  c: number,
  o: SweepOptions,
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
export function backwardThreaded(
  backend: unknown,
  mem: Memory,
  t: BackwardTensors,
  pixels: number[],
  c: number,
  o: SweepOptions,
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
