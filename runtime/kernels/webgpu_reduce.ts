/**
 * The WGSL scaffolding of the fused loss kernels on webgpu (`webgpu_kl.ts`,
 * `webgpu_softmax_ce.ts`): a (mask-weighted) mean over pixels in two programs, and the
 * element-wise gradient programs that read the normaliser back, in the partial-sums form of
 * `fused_mean.ts`. No atomics; every sum is a fixed tree, so results are deterministic:
 *
 * - {@linkcode PartialSumsProgram}: `P = min(256, ceil(pixels / 256))` workgroups of 256
 *   threads; thread `t` of workgroup `k` takes pixels `k * 256 + t`, then every `P * 256`th,
 *   accumulating `m * loss_pixel` and `m`; the workgroup adds its threads' sums pairwise and
 *   writes row `k` of the `[P, 2]` partials;
 * - {@linkcode FinalSumProgram}: one workgroup adds the `P` rows pairwise and writes
 *   `sum(m loss) / max(sum m, floor)`;
 * - gradient programs start with {@linkcode GRADIENT_SCALE}'s `gradientScale()`: every workgroup
 *   adds the partials' second column itself (at most 256 values, one per thread) for
 *   `g / max(sum m, floor)`.
 *
 * @module
 */
import { FLAT_THREADS, FlatProgram } from "./webgpu_flat_program.ts";
import type { tf } from "../../deps.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";

type TensorInfo = tf.TensorInfo;

/** Threads per workgroup, and the most partial rows. */
export const THREADS = FLAT_THREADS;

/** Rows of the partials for `pixels` pixels. */
export function partsFor(pixels: number): number {
  return Math.max(1, Math.min(THREADS, Math.ceil(pixels / THREADS)));
}

/** Uniforms every loss program declares (values: {@linkcode lossUniforms}). */
export const LOSS_UNIFORMS = "pixels : i32, channels : i32, parts : i32, eps : f32, floor : f32," +
  " size : i32,";

/** The values of {@linkcode LOSS_UNIFORMS}; `size`: the threads that write (gradients). */
export function lossUniforms(
  pixels: number,
  channels: number,
  eps: number,
  floor: number,
  size = 0,
): { type: string; data: number[] }[] {
  return [
    { type: "int32", data: [pixels] },
    { type: "int32", data: [channels] },
    { type: "int32", data: [partsFor(pixels)] },
    { type: "float32", data: [eps] },
    { type: "float32", data: [floor] },
    { type: "int32", data: [size] },
  ];
}

/** Fields of tfjs-backend-webgpu's `WebGPUProgram` the loss programs share. */
export abstract class LossProgram extends FlatProgram {
  override readonly uniforms = LOSS_UNIFORMS;
}

/** WGSL: two workgroup arrays and a pairwise tree sum of them into slot 0. */
const TREE = `
  var<workgroup> sA : array<f32, ${THREADS}>;
  var<workgroup> sB : array<f32, ${THREADS}>;

  fn flatWorkgroup() -> i32 {
    return i32((workgroupId.z * numWorkgroups.y + workgroupId.y) * numWorkgroups.x +
      workgroupId.x);
  }

  // every thread's (sA, sB) into slot 0; all threads call it
  fn treeSum(t : i32) {
    var half = ${THREADS / 2};
    loop {
      workgroupBarrier();
      if (half < 1) { break; }
      if (t < half) {
        sA[t] = sA[t] + sA[t + half];
        sB[t] = sB[t] + sB[t + half];
      }
      half = half / 2;
    }
  }
`;

/**
 * First pass: `[P, 2]` partial sums of `m * pixelLoss(i)` and `m` (`m = 1` without a mask).
 * `pixelLoss` is the subclass's WGSL function `fn pixelLoss(i : i32) -> f32`.
 */
export abstract class PartialSumsProgram extends LossProgram {
  constructor(pixels: number, readonly masked: boolean) {
    super(2 * partsFor(pixels), partsFor(pixels));
  }

  /** WGSL defining `fn pixelLoss(i : i32) -> f32`. */
  abstract pixelLossCode(): string;

  getUserCode(): string {
    return `
      ${TREE}
      ${this.pixelLossCode()}
      fn main(unused : i32) {
        let t = i32(localIndex);
        let k = flatWorkgroup();
        var a = 0.0;
        var b = 0.0;
        for (var i = k * ${THREADS} + t; i < uniforms.pixels; i = i + uniforms.parts * ${THREADS}) {
          let m = ${this.masked ? "mask[i]" : "1.0"};
          a = a + m * pixelLoss(i);
          b = b + m;
        }
        sA[t] = a;
        sB[t] = b;
        treeSum(t);
        if (t == 0) {
          result[2 * k] = sA[0];
          result[2 * k + 1] = sB[0];
        }
      }
    `;
  }
}

/** Second pass: the loss, `sum(m loss) / max(sum m, floor)`, from the partials. */
export class FinalSumProgram extends LossProgram {
  readonly variableNames = ["partials"];
  readonly shaderKey = "miSslLossFinalSum";

  constructor() {
    super(1, 1);
  }

  getUserCode(): string {
    return `
      ${TREE}
      fn main(unused : i32) {
        let t = i32(localIndex);
        var a = 0.0;
        var b = 0.0;
        if (t < uniforms.parts) {
          a = partials[2 * t];
          b = partials[2 * t + 1];
        }
        sA[t] = a;
        sB[t] = b;
        treeSum(t);
        if (t == 0) {
          result[0] = sA[0] / max(sB[0], uniforms.floor);
        }
      }
    `;
  }
}

/**
 * WGSL for gradient programs (inputs `dy` and `partials`): {@linkcode TREE} and
 * `gradientScale(t)`, `dy / max(sum m, floor)`, which every thread must call (it synchronises
 * the workgroup), and `flatIndex(t)`, the thread's index in a flat dispatch.
 */
export const GRADIENT_SCALE = `
  ${TREE}
  fn gradientScale(t : i32) -> f32 {
    var b = 0.0;
    if (t < uniforms.parts) {
      b = partials[2 * t + 1];
    }
    sA[t] = 0.0;
    sB[t] = b;
    treeSum(t);
    return dy[0] / max(sB[0], uniforms.floor);
  }
  fn flatIndex(t : i32) -> i32 {
    return flatWorkgroup() * ${THREADS} + t;
  }
`;

/** The same data under another shape (nothing copied or dispatched). */
export function reshaped(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/** The data bound flat, as the programs index it. */
export const flat = (t: TensorInfo) => reshaped(t, [t.shape.reduce((a, d) => a * d, 1)]);

/**
 * Run a forward pass: the partial sums, then the final pass; returns `[loss, partials]` (the
 * outputs of the fused loss kernels).
 */
export function runMeanLoss(
  backend: WebgpuBackendLike,
  partial: PartialSumsProgram,
  inputs: TensorInfo[],
  uniforms: { type: string; data: number[] }[],
): TensorInfo[] {
  const partials = backend.runWebGPUProgram(partial, inputs.map(flat), "float32", uniforms);
  const loss = backend.runWebGPUProgram(new FinalSumProgram(), [partials], "float32", uniforms);
  return [reshaped(loss, []), reshaped(partials, [partials.shape[0] / 2, 2])];
}

/** Run a gradient program over `inputs` (bound flat); its output gets `shape`. */
export function runLossGradient(
  backend: WebgpuBackendLike,
  program: LossProgram,
  inputs: TensorInfo[],
  uniforms: { type: string; data: number[] }[],
  shape: number[],
): TensorInfo {
  return reshaped(backend.runWebGPUProgram(program, inputs.map(flat), "float32", uniforms), shape);
}
