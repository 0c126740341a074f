/**
 * Stride-1 NHWC float32 convolutions for `@tensorflow/tfjs-backend-webgpu` as tiled implicit
 * matrix products (`webgpu_gemm.ts`: workgroup-shared tiles, 4 x 4 outputs per thread), the
 * U-Net's 3x3 'same' and 1x1 convolutions, registered with `kernels: custom`:
 *
 * - `Conv2DBackpropFilter`: `dW[kh, kw, ci, co] = Σ_{n,y,x} x[n, y+kh-top, x+kw-left, ci] ·
 *   dy[n, y, x, co]`, the pixel axis split into chunks that each write a partial `dW`, then one
 *   program sums the chunks in order (deterministic, no atomics): 2 programs (1 when one chunk).
 *   tfjs's runs a thread per weight over every pixel; our previous version ran pad, per-tap
 *   slices, batched products, chunk sums and a concat (~37 programs a call).
 * - `Conv2DBackpropInput`: `dx[n, i, j, ci] = Σ_{kh,kw,co} dy[n, i-kh+top, j-kw+left, co] ·
 *   W[kh, kw, ci, co]`, the filter read flipped in place: 1 program (tfjs runs its naive
 *   `Conv2DDerInputProgram`, a thread per input value, unless a flag is set).
 * - `Conv2D`: `y[n, i, j, co] = Σ_{kh,kw,ci} x[n, i+kh-top, j+kw-left, ci] · W[kh, kw, ci, co]`:
 *   1 program, only where tfjs's forward is not already a vectorised tiled implicit GEMM
 *   (`Conv2DMMProgram`) or matrix product ({@linkcode tfjsForwardIsTiled}).
 *
 * Strides, dilations other than 1, NCHW or other dtypes go to tfjs's kernels.
 *
 * ```ts
 * import { registerWebgpuConvKernels } from "./webgpu_conv.ts";
 * registerWebgpuConvKernels(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { originalKernel, replaceKernel } from "../tfjs_internals.ts";
import { ChunkSumProgram, gemmFits, GemmProgram, gemmUniforms, TILE_K } from "./webgpu_gemm.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";
import { CONV_UNIFORMS, FILTER_GRAD, FORWARD, INPUT_GRAD } from "./webgpu_conv_wgsl.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];
type Pad = "valid" | "same" | number | tf.backend_util.ExplicitPadding;

const BACKEND = "webgpu";
/** The filter gradient's chunks have at least this many pixels... */
export const MIN_CHUNK_PIXELS = 256;
/** ...and there are at most this many (enough workgroups on a large GPU). */
export const MAX_CHUNKS = 256;
/** The partial results hold at most this many floats (16 MiB). */
const MAX_PARTIAL = 1 << 22;

/** The geometry of a stride-1 convolution, or null where tfjs's kernel should run. */
interface Geometry {
  b: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  cIn: number;
  cOut: number;
  fh: number;
  fw: number;
  top: number;
  left: number;
}

function geometry(
  xShape: number[],
  filterShape: number[],
  attrs: {
    strides: number | number[];
    pad: Pad;
    dataFormat?: string;
    dilations?: number | number[];
    dimRoundingMode?: "floor" | "round" | "ceil";
  },
  dtypes: string[],
): Geometry | null {
  const pair = (v: number | number[] | undefined) =>
    v === undefined ? [1, 1] : typeof v === "number" ? [v, v] : v;
  const [sh, sw] = pair(attrs.strides);
  const [dh, dw] = pair(attrs.dilations);
  if (
    (attrs.dataFormat ?? "NHWC") !== "NHWC" || sh !== 1 || sw !== 1 || dh !== 1 || dw !== 1 ||
    dtypes.some((d) => d !== "float32") || xShape.length !== 4 || filterShape.length !== 4
  ) {
    return null;
  }
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    1,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  return {
    b: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    outH: info.outHeight,
    outW: info.outWidth,
    cIn: info.inChannels,
    cOut: info.outChannels,
    fh: info.filterHeight,
    fw: info.filterWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
  };
}

const convUniforms = (g: Geometry) => [
  g.inH,
  g.inW,
  g.outH,
  g.outW,
  g.cIn,
  g.cOut,
  g.fh,
  g.fw,
  g.top,
  g.left,
];

/**
 * Run one of the convolution's tiled products: `spec` (sizes, split), the WGSL `body` (one of
 * `webgpu_conv_wgsl.ts`'s), its named inputs and output shape, with the geometry's uniforms.
 */
function runConvGemm(
  args: KernelArgs,
  g: Geometry,
  spec: { m: number; n: number; k: number; chunks?: number },
  program: {
    key: string;
    body: typeof FORWARD;
    inputs: [string, TensorInfo][];
    outputShape: number[];
  },
): TensorInfo {
  const gemm = new GemmProgram({
    ...spec,
    key: program.key,
    inputs: program.inputs.map(([name]) => name),
    outputShape: program.outputShape,
    ...program.body,
    uniforms: CONV_UNIFORMS,
  });
  const backend = args.backend as unknown as WebgpuBackendLike;
  return backend.runWebGPUProgram(
    gemm,
    program.inputs.map(([, t]) => t),
    "float32",
    gemmUniforms(spec, convUniforms(g)),
  );
}

function runOriginal(name: string, args: KernelArgs): TensorInfo {
  const config = originalKernel(name, BACKEND);
  if (config === undefined) throw new Error(`webgpu conv kernels: no webgpu kernel ${name}`);
  return config.kernelFunc(args) as TensorInfo;
}

/**
 * Whether tfjs's own forward is already a vectorised tiled product for this convolution: a
 * matrix product for 1x1 filters, `Conv2DMMProgram` with vec4 loads when the channels allow
 * (`cIn` a multiple of 4 or 3, `cOut` of 4). It is as fast as ours there (on lavapipe, faster
 * at 8-32 px, see docs/backends.md), so it keeps those; ours takes the rest (the U-Net's first
 * layer, `cIn = 1`, where tfjs falls back to scalar loads: 5x slower than ours on lavapipe).
 */
export function tfjsForwardIsTiled(filterShape: number[]): boolean {
  const [fh, fw, cIn, cOut] = filterShape;
  return (fh === 1 && fw === 1) || ((cIn % 4 === 0 || cIn % 3 === 0) && cOut % 4 === 0);
}

/** `Conv2D` (stride 1, NHWC): one tiled implicit-GEMM program where tfjs has none. */
export function conv2dWebgpu(args: KernelArgs): TensorInfo {
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as Parameters<typeof geometry>[2];
  const g = geometry(x.shape, filter.shape, attrs, [x.dtype, filter.dtype]);
  const m = g === null ? 0 : g.b * g.outH * g.outW;
  if (g === null || !gemmFits(m, g.cOut) || m === 0 || tfjsForwardIsTiled(filter.shape)) {
    return runOriginal("Conv2D", args);
  }
  const spec = { m, n: g.cOut, k: g.fh * g.fw * g.cIn };
  return runConvGemm(args, g, spec, {
    key: "conv2d",
    body: FORWARD,
    inputs: [["x", x], ["W", filter]],
    outputShape: [g.b, g.outH, g.outW, g.cOut],
  });
}

/** `Conv2DBackpropInput` (stride 1, NHWC): one program, the filter read flipped. */
export function conv2dBackpropInputWebgpu(args: KernelArgs): TensorInfo {
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as Parameters<typeof geometry>[2] & {
    inputShape: number[];
  };
  const g = geometry(attrs.inputShape, filter.shape, attrs, [dy.dtype, filter.dtype]);
  const m = g === null ? 0 : g.b * g.inH * g.inW;
  if (g === null || !gemmFits(m, g.cIn) || m === 0) {
    return runOriginal("Conv2DBackpropInput", args);
  }
  const spec = { m, n: g.cIn, k: g.fh * g.fw * g.cOut };
  return runConvGemm(args, g, spec, {
    key: "conv2dInputGrad",
    body: INPUT_GRAD,
    inputs: [["dy", dy], ["W", filter]],
    outputShape: [g.b, g.inH, g.inW, g.cIn],
  });
}

/**
 * How many chunks the filter gradient splits `pixels` into for a `weights`-value filter: at
 * least {@linkcode MIN_CHUNK_PIXELS} pixels each, at most {@linkcode MAX_CHUNKS} chunks, and
 * partial results of at most 4M floats. (Exported for the tests.)
 */
export function filterGradChunks(pixels: number, weights: number): number {
  const byPixels = Math.ceil(pixels / MIN_CHUNK_PIXELS);
  const byMemory = Math.max(1, Math.floor(MAX_PARTIAL / weights));
  const wanted = Math.min(byPixels, MAX_CHUNKS, byMemory);
  // whole tiles per chunk, then as few chunks as that needs
  const perChunk = Math.ceil(Math.ceil(pixels / wanted) / TILE_K) * TILE_K;
  return Math.ceil(pixels / perChunk);
}

/** `Conv2DBackpropFilter` (stride 1, NHWC): a split implicit GEMM, then one chunk sum. */
export function conv2dBackpropFilterWebgpu(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as Parameters<typeof geometry>[2] & {
    filterShape: number[];
  };
  const g = geometry(x.shape, attrs.filterShape, attrs, [x.dtype, dy.dtype]);
  const pixels = g === null ? 0 : g.b * g.outH * g.outW;
  const m = g === null ? 0 : g.fh * g.fw * g.cIn;
  const chunks = g === null ? 1 : filterGradChunks(pixels, m * g.cOut);
  if (g === null || pixels === 0 || !gemmFits(m, g.cOut, chunks)) {
    return runOriginal("Conv2DBackpropFilter", args);
  }
  const spec = { m, n: g.cOut, k: pixels, chunks };
  const partial = runConvGemm(args, g, spec, {
    key: "conv2dFilterGrad",
    body: FILTER_GRAD,
    inputs: [["x", x], ["dy", dy]],
    outputShape: chunks === 1 ? attrs.filterShape : [chunks, m, g.cOut],
  });
  const backend = args.backend as unknown as WebgpuBackendLike;
  if (chunks === 1) return partial;
  const values = m * g.cOut;
  const summed = backend.runWebGPUProgram(new ChunkSumProgram(values), [partial], "float32", [
    { type: "int32", data: [chunks] },
  ]);
  backend.disposeData(partial.dataId);
  // the program's output is this tensor's only owner: hand it back in the filter's shape
  return { dataId: summed.dataId, shape: attrs.filterShape, dtype: "float32" };
}

/**
 * Register the three convolution kernels for webgpu (idempotent; tfjs's stay as the fallbacks).
 * `registerWebgpuTrainingKernels` does, with `kernels: custom`.
 */
export function registerWebgpuConvKernels(): void {
  for (
    const [kernelName, kernelFunc] of [
      ["Conv2D", conv2dWebgpu],
      ["Conv2DBackpropInput", conv2dBackpropInputWebgpu],
      ["Conv2DBackpropFilter", conv2dBackpropFilterWebgpu],
    ] as const
  ) {
    replaceKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
}
