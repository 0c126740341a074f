/**
 * Training kernels for the TensorFlow.js wasm backend.
 *
 * `@tensorflow/tfjs-backend-wasm` ships the forward kernels only: convolution training needs
 * `Conv2DBackpropFilter` (missing), `Conv2DBackpropInput` (present, but a naive loop), and the
 * gradient of `tf.gather` needs `UnsortedSegmentSum` (missing). This module supplies them,
 * composed from the backend's own XNNPACK `Conv2D` and its data-movement kernels, with plain
 * loops over the wasm heap where nothing faster applies.
 *
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { registerWasmTrainingKernels } from "./wasm_training.ts";
 *
 * await tf.setBackend("wasm");
 * await tf.ready();
 * registerWasmTrainingKernels();
 * ```
 *
 * @module
 */
import { tf, type tfWasm } from "../../deps.ts";
import {
  gemmConv2D,
  gemmConvFilterGrad,
  gemmConvInputGrad,
  gemmGather,
  gemmKernels,
  type KernelCall,
  kernelThreads,
  runCallLists,
} from "./wasm_conv.ts";
import { MM_TN_TILES } from "./wasm_gemm.ts";
import { type MiscKernels, miscKernelsFor } from "./wasm_misc.ts";
import { parallelFor } from "./wasm_pool.ts";
import { addKernel, originalKernel, replaceKernel, wasmOffset } from "../tfjs_internals.ts";
import { ADAM_KERNEL, adamKernel } from "./adam.ts";

type Backend = tfWasm.BackendWasm;
type TensorInfo = tf.TensorInfo;
type Conv2DInfo = tf.backend_util.Conv2DInfo;
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];
type KernelArgs = Parameters<tf.KernelFunc>[0];

const BACKEND = "wasm";

/** Runs the kernel currently registered for wasm under `name`. */
function run(
  name: string,
  backend: Backend,
  inputs: Record<string, TensorInfo>,
  attrs: Record<string, unknown> = {},
): TensorInfo {
  const config = tf.getKernel(name, BACKEND);
  if (config === undefined) throw new Error(`wasm training kernels: no wasm kernel ${name}`);
  return config.kernelFunc({ inputs, backend, attrs: attrs as tf.NamedAttrMap }) as TensorInfo;
}

function dispose(backend: Backend, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Forward NHWC `Conv2D` with stride 1 and explicit padding on the XNNPACK kernel. */
function conv(
  backend: Backend,
  x: TensorInfo,
  filter: TensorInfo,
  pads: [number, number, number, number],
  dilations: [number, number],
): TensorInfo {
  const [top, bottom, left, right] = pads;
  const pad: ExplicitPadding = [[0, 0], [top, bottom], [left, right], [0, 0]];
  return run("Conv2D", backend, { x, filter }, {
    strides: [1, 1],
    pad,
    dataFormat: "NHWC",
    dilations,
    dimRoundingMode: undefined,
  });
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter

/**
 * dW[r, c, i, o] = sum over (b, y, x) of xPadded[b, r + y sh, c + x sw, i] dy[b, y, x, o]:
 * a forward convolution with the batch and channel axes swapped. The "images" are the input
 * channels of `x` (`[ci, H, W, n]`), the "filter" is `dy` (`[Ho, Wo, n, co]`) dilated by the
 * forward stride, and the result `[ci, kh, kw, co]` is transposed back to `[kh, kw, ci, co]`.
 */
function filterGradByConv(
  backend: Backend,
  x: TensorInfo,
  dy: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const { inHeight: h, inWidth: w, filterHeight: kh, filterWidth: kw } = info;
  const { strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo } = info;
  const { top, left } = info.padInfo;
  // Pad (or not) the far side so that exactly the rows the windows read are covered. Windows that
  // end short of the input leave rows unused: pad 0 there and crop the surplus output instead.
  const bottom = kh + (ho - 1) * sh - h - top;
  const right = kw + (wo - 1) * sw - w - left;
  const xT = run("Transpose", backend, { x }, { perm: [3, 1, 2, 0] });
  const dyT = run("Transpose", backend, { x: dy }, { perm: [1, 2, 0, 3] });
  const pads: [number, number, number, number] = [
    top,
    Math.max(bottom, 0),
    left,
    Math.max(right, 0),
  ];
  let grad = conv(backend, xT, dyT, pads, [sh, sw]);
  dispose(backend, xT, dyT);
  if (grad.shape[1] !== kh || grad.shape[2] !== kw) {
    const cropped = run("Slice", backend, { x: grad }, {
      begin: [0, 0, 0, 0],
      size: [grad.shape[0], kh, kw, grad.shape[3]],
    });
    dispose(backend, grad);
    grad = cropped;
  }
  const out = run("Transpose", backend, { x: grad }, { perm: [1, 2, 0, 3] });
  dispose(backend, grad);
  return out;
}

/**
 * The filter gradient as a plain loop over the wasm heap, for any layout, stride and padding.
 * Exported for tests; it is what {@linkcode registerWasmTrainingKernels} falls back to.
 */
export function conv2DBackpropFilterLoop(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as Backend;
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const info = conv2DBackpropFilterInfo(x, attrs);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { outHeight: ho, outWidth: wo, filterHeight: kh, filterWidth: kw } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  const last = info.dataFormat === "channelsLast";
  // Strides of (batch, row, column, channel) in x and dy.
  const [xB, xR, xC, xD] = last ? [h * w * ci, w * ci, ci, 1] : [ci * h * w, w, 1, h * w];
  const [yB, yR, yC, yD] = last ? [ho * wo * co, wo * co, co, 1] : [co * ho * wo, wo, 1, ho * wo];

  const out = backend.makeOutput(info.filterShape, "float32");
  // Views on the heap only after the allocation above: it may grow (and detach) the heap.
  const xv = backend.typedArrayFromHeap(x);
  const dyv = backend.typedArrayFromHeap(dy);
  const acc = new Float64Array(kh * kw * ci * co);
  for (let b = 0; b < n; b++) {
    for (let yr = 0; yr < ho; yr++) {
      for (let yc = 0; yc < wo; yc++) {
        const dyBase = b * yB + yr * yR + yc * yC;
        for (let wr = 0; wr < kh; wr++) {
          const xr = yr * sh + wr - top;
          if (xr < 0 || xr >= h) continue;
          for (let wc = 0; wc < kw; wc++) {
            const xc = yc * sw + wc - left;
            if (xc < 0 || xc >= w) continue;
            const xBase = b * xB + xr * xR + xc * xC;
            for (let d1 = 0; d1 < ci; d1++) {
              const xval = xv[xBase + d1 * xD];
              if (xval === 0) continue;
              const accBase = ((wr * kw + wc) * ci + d1) * co;
              for (let d2 = 0; d2 < co; d2++) acc[accBase + d2] += xval * dyv[dyBase + d2 * yD];
            }
          }
        }
      }
    }
  }
  backend.typedArrayFromHeap(out).set(acc);
  return out;
}

function conv2DBackpropFilterInfo(x: TensorInfo, attrs: tf.Conv2DBackpropFilterAttrs): Conv2DInfo {
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  return tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
}

function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const info = conv2DBackpropFilterInfo(x, args.attrs as unknown as tf.Conv2DBackpropFilterAttrs);
  const fast = info.dataFormat === "channelsLast" && x.dtype === "float32" &&
    dy.dtype === "float32" && sizeOf(x.shape) > 0 && sizeOf(dy.shape) > 0 &&
    dy.shape[0] === info.batchSize && dy.shape[1] === info.outHeight &&
    dy.shape[2] === info.outWidth && dy.shape[3] === info.outChannels &&
    x.shape[3] === info.filterShape[2] && info.padInfo.top >= 0 && info.padInfo.left >= 0;
  if (fast) {
    const out = gemmConvFilterGrad(backend, x, dy, info) ??
      filterGradPointwise(backend, x, dy, info);
    if (out !== null) return out;
  }
  return fast ? filterGradByConv(backend, x, dy, info) : conv2DBackpropFilterLoop(args);
}

/**
 * The filter gradient of a 1x1 stride-1 convolution without padding (the U-Net's head) is one
 * product `x^T dy` (`[pixels, ci]^T [pixels, co]`): the long `BatchMatMul`, split over the pixels
 * between the threads. Null for other convolutions. (`filterGradByConv` transposed both tensors
 * for it, ~10 ms of a 128 px step with 4 classes, whatever the thread count.)
 */
function filterGradPointwise(
  backend: Backend,
  x: TensorInfo,
  dy: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  if (!isPointwise(info) || n * h * w < MATMUL_MIN_LONG || ci * co > MATMUL_MAX_SMALL) {
    return null;
  }
  return product(backend, [x, [n * h * w, ci]], [dy, [n * h * w, co]], true, [1, 1, ci, co]);
}

/**
 * The `BatchMatMul` (this file's, `wasmBatchMatMul`) of `a` and `b` viewed as the matrices of
 * the given shapes (`transposeA`: `a^T b`), as a tensor of shape `out`.
 */
function product(
  backend: Backend,
  [a, aShape]: [TensorInfo, number[]],
  [b, bShape]: [TensorInfo, number[]],
  transposeA: boolean,
  out: number[],
): TensorInfo {
  const a2 = run("Reshape", backend, { x: a }, { shape: aShape });
  const b2 = run("Reshape", backend, { x: b }, { shape: bShape });
  try {
    const p = run("BatchMatMul", backend, { a: a2, b: b2 }, { transposeA, transposeB: false });
    // Reshape shares data: disposing the product only drops a reference
    const result = run("Reshape", backend, { x: p }, { shape: out });
    dispose(backend, p);
    return result;
  } finally {
    dispose(backend, a2, b2);
  }
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropInput

/**
 * For stride 1, dx is the forward convolution of dy, padded by (k - 1 - pad) in front, with the
 * filter flipped spatially and its channel axes swapped.
 */
function inputGradByConv(
  backend: Backend,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { inHeight: h, inWidth: w, filterHeight: kh, filterWidth: kw } = info;
  const ho = dy.shape[1], wo = dy.shape[2];
  const top = kh - 1 - info.padInfo.top;
  const left = kw - 1 - info.padInfo.left;
  const bottom = h + kh - 1 - ho - top;
  const right = w + kw - 1 - wo - left;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) return null;
  const flipped = run("Reverse", backend, { x: filter }, { dims: [0, 1] });
  const swapped = run("Transpose", backend, { x: flipped }, { perm: [0, 1, 3, 2] });
  dispose(backend, flipped);
  const out = conv(backend, dy, swapped, [top, bottom, left, right], [1, 1]);
  dispose(backend, swapped);
  return out;
}

/**
 * Filter size equal to the stride, no padding (the 2x2 stride-2 "deconvolution" of a U-Net):
 * the windows tile the input without overlap, so dx is one 1x1 convolution (a GEMM) of dy with
 * the filter as `[co, kh kw ci]`, followed by a shuffle of the (kh, kw) blocks into place.
 */
function inputGradByBlocks(
  backend: Backend,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const { filterHeight: kh, filterWidth: kw } = info;
  const ho = dy.shape[1], wo = dy.shape[2];
  const moved = run("Transpose", backend, { x: filter }, { perm: [3, 0, 1, 2] });
  const weights = run("Reshape", backend, { x: moved }, { shape: [1, 1, co, kh * kw * ci] });
  const blocks = conv(backend, dy, weights, [0, 0, 0, 0], [1, 1]);
  dispose(backend, moved, weights);
  // [n, ho, wo, kh, kw, ci] viewed as [n ho, wo, kh, kw ci]; swap wo and kh.
  const rows = run("Reshape", backend, { x: blocks }, { shape: [n * ho, wo, kh, kw * ci] });
  const shuffled = run("Transpose", backend, { x: rows }, { perm: [0, 2, 1, 3] });
  const out = run("Reshape", backend, { x: shuffled }, { shape: [n, h, w, ci] });
  dispose(backend, blocks, rows, shuffled);
  return out;
}

function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  const usable = info.dataFormat === "channelsLast" && dy.dtype === "float32" &&
    filter.dtype === "float32" && sizeOf(dy.shape) > 0 && sizeOf(filter.shape) > 0 &&
    sizeOf(inputShape) > 0;
  const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const { top, bottom, left, right } = info.padInfo;
  if (usable && sh === 1 && sw === 1) {
    const out = gemmConvInputGrad(backend, dy, filter, info) ??
      inputGradByConv(backend, dy, filter, info);
    if (out !== null) return out;
  }
  if (
    usable && kh === sh && kw === sw && top === 0 && bottom === 0 && left === 0 && right === 0 &&
    info.inHeight === dy.shape[1] * sh && info.inWidth === dy.shape[2] * sw
  ) {
    return inputGradByBlocks(backend, dy, filter, info);
  }
  const original = originalKernel(tf.Conv2DBackpropInput, BACKEND);
  if (original === undefined) throw new Error("wasm training kernels: no Conv2DBackpropInput");
  return original.kernelFunc(args) as TensorInfo;
}

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum

/**
 * out[s, ...] = sum of x[i, ...] over the i with segmentIds[i] = s. `segmentIds` may have the
 * shape of any leading part of `x`'s shape; ids outside [0, numSegments) are dropped (as on cpu).
 */
function unsortedSegmentSum(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  const ids = sizeOf(segmentIds.shape);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = sizeOf(innerShape);
  if (ids * inner !== sizeOf(x.shape)) {
    throw new Error(
      `UnsortedSegmentSum: segmentIds shape ${segmentIds.shape} is no prefix of x shape ${x.shape}`,
    );
  }
  if (x.dtype === "float32" && segmentIds.dtype === "int32" && inner > 0 && numSegments > 0) {
    const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
    (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
    // Threads take disjoint ranges of segments (each scans every id): the additions into each
    // output row are the same, in the same order, whatever the split.
    const parts = Math.max(1, Math.min(kernelThreads(backend), Math.floor(ids / 16384)));
    const xo = heapOffset(backend, x), io = heapOffset(backend, segmentIds);
    const oo = heapOffset(backend, out);
    if (
      runCallLists(
        backend,
        Array.from({ length: parts }, (_, k): KernelCall[] => [[
          "segment_sum",
          xo,
          io,
          oo,
          ids,
          4 * inner,
          Math.round((k * numSegments) / parts),
          Math.round(((k + 1) * numSegments) / parts),
        ]]),
      )
    ) return out;
    backend.disposeData(out.dataId);
  }
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  const xv = backend.typedArrayFromHeap(x);
  const sv = backend.typedArrayFromHeap(segmentIds);
  const acc = new Float64Array(numSegments * inner);
  for (let i = 0; i < ids; i++) {
    const s = sv[i];
    if (!(s >= 0 && s < numSegments)) continue;
    const o = s * inner, p = i * inner;
    for (let j = 0; j < inner; j++) acc[o + j] += xv[p + j];
  }
  backend.typedArrayFromHeap(out).set(acc);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conv2D

/** Forward convolution: the SIMD GEMM kernels where they apply, else XNNPACK. */
function conv2D(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = args
    .attrs as unknown as tf.Conv2DAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    strides,
    dilations,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  return gemmConv2D(backend, x, filter, info) ?? pointwiseConv(backend, x, filter, info) ??
    fallback(tf.Conv2D, args);
}

/**
 * A 1x1 stride-1 convolution without padding that the GEMM kernels do not take (their output
 * channels go by 8: the U-Net's head, with 4 or 2 classes) is the tall product `[pixels, ci]
 * [ci, co]` of `wasmBatchMatMul`, split by rows between the threads; XNNPACK ran it on one
 * (~1 ms of a 128 px step at width 8 with 4 classes, at any thread count). (Its input gradient,
 * 8 output channels, is the GEMM kernels'.) Null for other convolutions.
 */
function pointwiseConv(
  backend: Backend,
  x: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo | null {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  if (
    !isPointwise(info) || x.dtype !== "float32" || filter.dtype !== "float32" ||
    n * h * w < MATMUL_MIN_LONG || ci * co > MATMUL_MAX_SMALL
  ) return null;
  return product(backend, [x, [n * h * w, ci]], [filter, [ci, co]], false, [n, h, w, co]);
}

/** A 1x1 convolution with stride and dilation 1, without padding, in NHWC. */
function isPointwise(info: Conv2DInfo): boolean {
  return info.dataFormat === "channelsLast" && info.filterHeight === 1 &&
    info.filterWidth === 1 && info.strideHeight === 1 && info.strideWidth === 1 &&
    info.dilationHeight === 1 && info.dilationWidth === 1 && info.padInfo.top === 0 &&
    info.padInfo.left === 0 && info.outHeight === info.inHeight &&
    info.outWidth === info.inWidth;
}

/** Conv2D + bias + ReLU (or linear) on the GEMM kernels where they apply, else XNNPACK. */
function fusedConv2D(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as tf.FusedConv2DAttrs;
  if (preluActivationWeights != null || !["linear", "relu"].includes(attrs.activation)) {
    return fallback(tf.FusedConv2D, args);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat),
  );
  return gemmConv2D(backend, x, filter, info, {
    bias: bias ?? undefined,
    relu: attrs.activation === "relu",
  }) ?? fallback(tf.FusedConv2D, args);
}

// ---------------------------------------------------------------------------------------------
// Data movement: Concat, SplitV, nearest x2 upsampling and its gradient, MaxPoolGrad 2x2

function heapOffset(backend: Backend, info: TensorInfo): number {
  return wasmOffset(backend, info);
}

/**
 * Bytes per thread below which a row copy stays on the calling thread. Copies are memory-bound
 * and a pool job costs a wake-up and a wait: at 128 KiB the split copies of the ACDC-CPU step
 * took more CPU in all than they saved on the main thread.
 */
const COPY_BYTES_PER_PART = 512 * 1024;
/** Output bytes per thread below which a row-wise kernel of `wasm_misc.ts` stays on one thread. */
const ROW_BYTES_PER_PART = 256 * 1024;

let splitCopies = 0;

/** Row copies split between the threads so far (tests check that concat, split, ... use them). */
export function splitCopyCount(): number {
  return splitCopies;
}

/**
 * `copy_rows(src, dst, rows, bytes, ss, ds)`, split between the kernel pool's threads when it
 * moves at least {@linkcode COPY_BYTES_PER_PART} bytes per thread: by rows, or a single row by
 * 16-byte-aligned byte ranges. The parts write disjoint bytes, so the result is the same copy.
 */
function copyRows(
  backend: Backend,
  k: MiscKernels,
  src: number,
  dst: number,
  rows: number,
  bytes: number,
  ss: number,
  ds: number,
): void {
  const threads = kernelThreads(backend);
  const parts = Math.min(threads, Math.floor((rows * bytes) / COPY_BYTES_PER_PART));
  const gemm = parts > 1 ? gemmKernels(backend) : null;
  if (gemm === null) {
    k.copyRows(src, dst, rows, bytes, ss, ds);
    return;
  }
  const args: number[][] = [];
  if (rows === 1) {
    for (let p = 0; p < parts; p++) {
      const b0 = 16 * Math.round((p * bytes) / parts / 16);
      const b1 = p === parts - 1 ? bytes : 16 * Math.round(((p + 1) * bytes) / parts / 16);
      if (b1 > b0) args.push([src + b0, dst + b0, 1, b1 - b0, 0, 0]);
    }
  } else {
    const n = Math.min(parts, rows);
    for (let p = 0; p < n; p++) {
      const r0 = Math.round((p * rows) / n), r1 = Math.round(((p + 1) * rows) / n);
      args.push([src + r0 * ss, dst + r0 * ds, r1 - r0, bytes, ss, ds]);
    }
  }
  splitCopies++;
  parallelFor(gemm, "copy", args);
}

/**
 * Runs a row-wise kernel of `wasm_misc.ts` over `rows` rows of `rowBytes` bytes of output,
 * split by rows between the kernel pool's threads when there are at least
 * {@linkcode ROW_BYTES_PER_PART} bytes per thread; `args(r0, r1)` gives the call for rows
 * `[r0, r1)`. Rows write disjoint outputs, so the result does not depend on the split.
 */
function splitByRows(
  backend: Backend,
  kind: "up2" | "maxPool2Grad" | "addBias" | "mulBias",
  rows: number,
  rowBytes: number,
  args: (r0: number, r1: number) => number[],
): void {
  const parts = Math.min(
    kernelThreads(backend),
    rows,
    Math.floor((rows * rowBytes) / ROW_BYTES_PER_PART),
  );
  const gemm = parts > 1 ? gemmKernels(backend) : null;
  const k = miscKernelsFor(backend)!;
  if (gemm === null) {
    const a = args(0, rows);
    if (kind === "up2") k.up2(a[0], a[1], a[2], a[3], a[4], a[5]);
    else if (kind === "addBias") k.addBias(a[0], a[1], a[2], a[3], a[4]);
    else if (kind === "mulBias") k.mulBias(a[0], a[1], a[2], a[3], a[4]);
    else k.maxPool2Grad(a[0], a[1], a[2], a[3], a[4], a[5]);
    return;
  }
  splitCopies++;
  parallelFor(
    gemm,
    kind,
    Array.from(
      { length: parts },
      (_, p) => args(Math.round((p * rows) / parts), Math.round(((p + 1) * rows) / parts)),
    ),
  );
}

/** Concat of float32 tensors along any axis as strided row copies. */
function concat(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const inputs = Object.values(args.inputs) as TensorInfo[];
  const k = miscKernelsFor(backend);
  const rank = inputs[0]?.shape.length ?? 0;
  if (
    k === null || inputs.length < 2 || rank === 0 ||
    inputs.some((t) => t.dtype !== "float32" || t.shape.length !== rank || sizeOf(t.shape) === 0)
  ) return fallback(tf.Concat, args);
  const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, inputs[0].shape)[0];
  const outShape = tf.backend_util.computeOutShape(inputs.map((t) => t.shape), axis);
  const outer = sizeOf(outShape.slice(0, axis));
  const inner = sizeOf(outShape.slice(axis + 1));
  const out = backend.makeOutput(outShape, "float32");
  const dst = heapOffset(backend, out);
  const rowBytes = 4 * outShape[axis] * inner;
  let at = 0;
  for (const t of inputs) {
    const bytes = 4 * t.shape[axis] * inner;
    copyRows(backend, k, heapOffset(backend, t), dst + at, outer, bytes, bytes, rowBytes);
    at += bytes;
  }
  return out;
}

/** SplitV of a float32 tensor along any axis as strided row copies. */
function splitV(args: KernelArgs): TensorInfo[] {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
  const k = miscKernelsFor(backend);
  if (k === null || x.dtype !== "float32" || sizeOf(x.shape) === 0) {
    return fallback(tf.SplitV, args) as unknown as TensorInfo[];
  }
  const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
  const outer = sizeOf(x.shape.slice(0, $axis));
  const inner = sizeOf(x.shape.slice($axis + 1));
  const outs = sizes.map((size) => {
    const shape = [...x.shape];
    shape[$axis] = size;
    return backend.makeOutput(shape, "float32");
  });
  const src = heapOffset(backend, x);
  const rowBytes = 4 * x.shape[$axis] * inner;
  let at = 0;
  outs.forEach((out, i) => {
    const bytes = 4 * sizes[i] * inner;
    if (bytes > 0) {
      copyRows(backend, k, src + at, heapOffset(backend, out), outer, bytes, rowBytes, bytes);
    }
    at += bytes;
  });
  return outs;
}

/** Nearest x2 upsampling (no corner alignment, no half-pixel centres), channels % 4 == 0. */
function resizeNearestNeighbor(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { images } = args.inputs as { images: TensorInfo };
  const { alignCorners, halfPixelCenters, size } = args
    .attrs as unknown as tf.ResizeNearestNeighborAttrs;
  const k = miscKernelsFor(backend);
  const [b, h, w, c] = images.shape;
  if (
    k === null || images.dtype !== "float32" || alignCorners || halfPixelCenters ||
    images.shape.length !== 4 || size[0] !== 2 * h || size[1] !== 2 * w || c % 4 !== 0 ||
    sizeOf(images.shape) === 0
  ) return fallback(tf.ResizeNearestNeighbor, args);
  const out = backend.makeOutput([b, 2 * h, 2 * w, c], "float32");
  const x = heapOffset(backend, images), o = heapOffset(backend, out), cb = 4 * c;
  // Row r of the input (w pixels) makes rows 2r and 2r + 1 of the output (2w pixels each).
  splitByRows(backend, "up2", b * h, 4 * w * cb, (r0, r1) => [
    x + r0 * w * cb,
    o + r0 * 4 * w * cb,
    r1 - r0,
    w,
    cb,
    0,
  ]);
  return out;
}

/** The gradient of {@linkcode resizeNearestNeighbor}: sums of 2x2 blocks. */
function resizeNearestNeighborGrad(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { images, dy } = args.inputs as { images: TensorInfo; dy: TensorInfo };
  const { alignCorners, halfPixelCenters } = args
    .attrs as unknown as tf.ResizeNearestNeighborGradAttrs;
  const k = miscKernelsFor(backend);
  const [b, h, w, c] = images.shape;
  if (
    k === null || dy.dtype !== "float32" || alignCorners || halfPixelCenters ||
    images.shape.length !== 4 || dy.shape[1] !== 2 * h || dy.shape[2] !== 2 * w ||
    dy.shape[3] !== c || c % 4 !== 0 || sizeOf(images.shape) === 0
  ) return fallback(tf.ResizeNearestNeighborGrad, args);
  const out = backend.makeOutput([b, h, w, c], "float32");
  const d = heapOffset(backend, dy), o = heapOffset(backend, out), cb = 4 * c;
  splitByRows(backend, "up2", b * h, 4 * w * cb, (r0, r1) => [
    d + r0 * 4 * w * cb,
    o + r0 * w * cb,
    r1 - r0,
    w,
    cb,
    1,
  ]);
  return out;
}

/** The gradient of 2x2 stride-2 valid max pooling (first maximum of each window). */
function maxPoolGrad(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = args
    .attrs as unknown as tf.MaxPoolGradAttrs;
  const k = miscKernelsFor(backend);
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const [b, h, w, c] = input.shape;
  if (
    k === null || input.dtype !== "float32" || dy.dtype !== "float32" ||
    info.filterHeight !== 2 || info.filterWidth !== 2 || info.strideHeight !== 2 ||
    info.strideWidth !== 2 || info.padInfo.top !== 0 || info.padInfo.left !== 0 || h % 2 !== 0 ||
    w % 2 !== 0 || c % 4 !== 0 || dy.shape[1] !== h / 2 || dy.shape[2] !== w / 2 ||
    sizeOf(input.shape) === 0
  ) return fallback(tf.MaxPoolGrad, args);
  const out = backend.makeOutput(input.shape, "float32");
  const x = heapOffset(backend, input), g = heapOffset(backend, dy), o = heapOffset(backend, out);
  const cb = 4 * c, pw = w / 2;
  // Pooled row r reads and writes rows 2r and 2r + 1 of the input (w = 2 pw pixels each).
  splitByRows(backend, "maxPool2Grad", (b * h) / 2, 4 * pw * cb, (r0, r1) => [
    x + r0 * 4 * pw * cb,
    g + r0 * pw * cb,
    o + r0 * 4 * pw * cb,
    r1 - r0,
    pw,
    cb,
  ]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Slice and constant PadV2 (the MI's shifted windows and their gradient)

/** Row-major strides (in elements) of `shape`. */
function stridesOf(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) out[i] = out[i + 1] * shape[i + 1];
  return out;
}

/**
 * Copies between the block `[begin, begin + shape)` of a dense tensor of shape `bigShape` at
 * `bigAt` and a dense tensor of shape `shape` at `smallAt` (into the block when `toBig`), as
 * strided row copies: a row is the innermost run that is contiguous on both sides, the copies go
 * along the axis before it, and the axes before that are looped over here. 4-byte elements.
 */
function copyBlock(
  backend: Backend,
  bigAt: number,
  bigShape: readonly number[],
  begin: readonly number[],
  smallAt: number,
  shape: readonly number[],
  toBig: boolean,
): void {
  const k = miscKernelsFor(backend)!;
  const bs = stridesOf(bigShape), ss = stridesOf(shape);
  let a = shape.length - 1;
  while (a >= 0 && begin[a] === 0 && shape[a] === bigShape[a]) a--;
  if (a < 0) {
    const bytes = 4 * sizeOf(shape);
    if (toBig) copyRows(backend, k, smallAt, bigAt, 1, bytes, 0, 0);
    else copyRows(backend, k, bigAt, smallAt, 1, bytes, 0, 0);
    return;
  }
  const rowBytes = 4 * shape[a] * bs[a];
  const rowAxis = a - 1;
  const rows = rowAxis >= 0 ? shape[rowAxis] : 1;
  const bigStride = rowAxis >= 0 ? 4 * bs[rowAxis] : 0;
  const smallStride = rowAxis >= 0 ? 4 * ss[rowAxis] : 0;
  let base = bigAt + 4 * begin[a] * bs[a];
  if (rowAxis >= 0) base += 4 * begin[rowAxis] * bs[rowAxis];
  const outer = shape.slice(0, Math.max(rowAxis, 0));
  const count = sizeOf(outer);
  const idx = new Array<number>(outer.length).fill(0);
  for (let n = 0; n < count; n++) {
    let big = base, small = smallAt;
    for (let j = 0; j < outer.length; j++) {
      big += 4 * (begin[j] + idx[j]) * bs[j];
      small += 4 * idx[j] * ss[j];
    }
    if (toBig) copyRows(backend, k, small, big, rows, rowBytes, smallStride, bigStride);
    else copyRows(backend, k, big, small, rows, rowBytes, bigStride, smallStride);
    for (let j = outer.length - 1; j >= 0; j--) {
      if (++idx[j] < outer[j]) break;
      idx[j] = 0;
    }
  }
}

/** `Slice` of a float32 or int32 tensor as strided row copies (tfjs's is an element loop). */
export function wasmSlice(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
  if (
    miscKernelsFor(backend) === null || (x.dtype !== "float32" && x.dtype !== "int32") ||
    x.shape.length === 0 || sizeOf(x.shape) === 0
  ) return fallback(tf.Slice, args);
  const [b, s] = tf.slice_util.parseSliceParams(x, begin, size);
  if (sizeOf(s) === 0) return fallback(tf.Slice, args);
  const out = backend.makeOutput(s, x.dtype);
  copyBlock(backend, heapOffset(backend, x), x.shape, b, heapOffset(backend, out), s, false);
  return out;
}

/**
 * Fill the elements of a dense `shape` array outside the block `[begin, begin + size)` with
 * `value` (the block itself is left as it is): whole slabs before and after the block along each
 * axis, and inside it the same one axis further down. A pad then writes each element once.
 */
export function fillOutside(
  data: { fill(value: number, start: number, end: number): unknown },
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  value: number,
): void {
  const strides = stridesOf(shape);
  // The last axis where the block does not span the whole array: below it, a block row is dense.
  let last = shape.length - 1;
  while (last >= 0 && begin[last] === 0 && size[last] === shape[last]) last--;
  const walk = (axis: number, at: number): void => {
    const st = strides[axis];
    data.fill(value, at, at + begin[axis] * st);
    data.fill(value, at + (begin[axis] + size[axis]) * st, at + shape[axis] * st);
    if (axis === last) return;
    for (let i = begin[axis]; i < begin[axis] + size[axis]; i++) walk(axis + 1, at + i * st);
  };
  if (last >= 0) walk(0, 0);
}

/** Constant `PadV2` of a float32 or int32 tensor: the border filled, then strided row copies. */
export function wasmPadV2(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  const { paddings, constantValue } = args.attrs as unknown as tf.PadV2Attrs;
  if (
    miscKernelsFor(backend) === null || (x.dtype !== "float32" && x.dtype !== "int32") ||
    x.shape.length === 0 || sizeOf(x.shape) === 0 || paddings.length !== x.shape.length ||
    paddings.some(([before, after]) => before < 0 || after < 0)
  ) return fallback(tf.PadV2, args);
  const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
  const out = backend.makeOutput(shape, x.dtype);
  const begin = paddings.map(([before]) => before);
  fillOutside(backend.typedArrayFromHeap(out), shape, begin, x.shape, constantValue);
  copyBlock(backend, heapOffset(backend, out), shape, begin, heapOffset(backend, x), x.shape, true);
  return out;
}

// ---------------------------------------------------------------------------------------------
// GatherV2

/**
 * `GatherV2` along axis 0 (the warp's bilinear gathers) as row copies on the heap, split between
 * the threads; tfjs's kernel (an element-by-element loop) for everything else.
 */
export function wasmGatherV2(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
  const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
  const $axis = x.shape.length > 0 ? tf.util.parseAxisParam(axis, x.shape)[0] : -1;
  if ($axis !== 0 || (batchDims ?? 0) !== 0) return fallback(tf.GatherV2, args);
  return gemmGather(backend, x, indices) ?? fallback(tf.GatherV2, args);
}

// ---------------------------------------------------------------------------------------------
// Multiply by a [..., 1] factor

/** Rows per thread below which a row-wise kernel stays on the calling thread. */
const ROWS_PER_PART = 8192;

/** Row bounds `[r0, r1)` of each part of `rows` split between the kernel pool's threads. */
function rowParts(backend: Backend, rows: number, perPart = ROWS_PER_PART): [number, number][] {
  const parts = Math.max(1, Math.min(kernelThreads(backend), Math.floor(rows / perPart)));
  return Array.from(
    { length: parts },
    (_, k) => [Math.round((k * rows) / parts), Math.round(((k + 1) * rows) / parts)],
  );
}

/**
 * float32 `Multiply` of `[..., C]` by a vector of `C` values (`byLastAxisVector`), or by `[..., 1]`
 * of the same leading shape (either order: the warp's bilinear weights, masks, ...), as one sweep
 * split between the threads; tfjs's broadcasting loop, which indexes element by element, for
 * everything else.
 */
export function wasmMultiply(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const byVector = byLastAxisVector(backend, "mulBias", a, b);
  if (byVector !== null) return byVector;
  const r = a.shape.length;
  if (
    a.dtype !== "float32" || b.dtype !== "float32" || r === 0 || b.shape.length !== r ||
    a.shape.slice(0, -1).some((d, i) => d !== b.shape[i]) || sizeOf(a.shape) === 0 ||
    sizeOf(b.shape) === 0 || a.shape[r - 1] === b.shape[r - 1] ||
    (a.shape[r - 1] !== 1 && b.shape[r - 1] !== 1)
  ) return fallback(tf.Multiply, args);
  const [wide, narrow] = b.shape[r - 1] === 1 ? [a, b] : [b, a];
  const rows = sizeOf(wide.shape.slice(0, -1)), c = wide.shape[r - 1];
  const out = backend.makeOutput(wide.shape, "float32");
  const wo = heapOffset(backend, wide), no = heapOffset(backend, narrow);
  const oo = heapOffset(backend, out);
  const ok = runCallLists(
    backend,
    rowParts(backend, rows, Math.ceil(ROWS_PER_PART * 4 / c)).map((
      [r0, r1],
    ): KernelCall[] => [["mul_rows", wo, no, oo, r0, r1, 4 * c]]),
  );
  if (ok) return out;
  backend.disposeData(out.dataId);
  return fallback(tf.Multiply, args);
}

/**
 * float32 `[..., C]` plus (`addBias`) or times (`mulBias`) a vector of `C` values (`[C]` or `[1,
 * ..., 1, C]` of no higher rank, either order; `C % 4 == 0`): one SIMD sweep by rows, split
 * between the threads on large tensors; null for other operands. For `Add`, the head's bias; for
 * `Multiply`, batch norm's scale folded into each filter at inference (`[3, 3, ci, co]` times
 * `[co]`, 22 calls a forward pass), which went through tfjs's broadcasting loop: ~0.1-0.7 ms a
 * call, more at two threads.
 */
function byLastAxisVector(
  backend: Backend,
  kind: "addBias" | "mulBias",
  a: TensorInfo,
  b: TensorInfo,
): TensorInfo | null {
  if (a.dtype !== "float32" || b.dtype !== "float32" || miscKernelsFor(backend) === null) {
    return null;
  }
  const [x, v] = sizeOf(b.shape) < sizeOf(a.shape) && isLastAxisVector(b, a)
    ? [a, b]
    : sizeOf(a.shape) < sizeOf(b.shape) && isLastAxisVector(a, b)
    ? [b, a]
    : [null, null];
  if (x === null || v === null) return null;
  const c = x.shape[x.shape.length - 1];
  if (c % 4 !== 0 || sizeOf(x.shape) === 0) return null;
  const rows = sizeOf(x.shape) / c, cb = 4 * c;
  const out = backend.makeOutput(x.shape, "float32");
  const xo = heapOffset(backend, x), vo = heapOffset(backend, v), oo = heapOffset(backend, out);
  splitByRows(backend, kind, rows, cb, (r0, r1) => [xo + r0 * cb, vo, oo + r0 * cb, r1 - r0, cb]);
  return out;
}

/** Whether `t` is `[C]` or `[1, ..., 1, C]` of no higher rank than `x`, `C` the last axis of `x`. */
function isLastAxisVector(t: TensorInfo, x: TensorInfo): boolean {
  return t.shape.length >= 1 && t.shape.length <= x.shape.length &&
    t.shape.slice(0, -1).every((d) => d === 1) &&
    t.shape[t.shape.length - 1] === x.shape[x.shape.length - 1];
}

// ---------------------------------------------------------------------------------------------
// Add of a [C] bias

/**
 * float32 `Add` of a `[..., C]` tensor and a bias of `C` values (shape `[C]` or `[1, ..., 1, C]`
 * of no higher rank, either order; `C % 4 == 0`: the network head's bias) as one SIMD sweep split
 * by rows between the threads; tfjs's broadcasting loop (its `Add` with a broadcast operand
 * indexes element by element) for everything else. The same additions, so the same values.
 */
export function wasmAdd(args: KernelArgs): TensorInfo {
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  return byLastAxisVector(args.backend as Backend, "addBias", a, b) ?? fallback(tf.Add, args);
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels of the losses (the SIMD sweeps of wasm_pointwise.ts)

/** Elements per thread below which a sweep stays on one thread. */
const POINTWISE_PER_PART = 1 << 15;

/** Runs one call per range on the pool; disposes `out` and returns null where it cannot. */
function sweep(
  backend: Backend,
  out: TensorInfo,
  parts: [number, number][],
  call: (lo: number, hi: number) => KernelCall,
): TensorInfo | null {
  if (runCallLists(backend, parts.map(([lo, hi]) => [call(lo, hi)]))) return out;
  backend.disposeData(out.dataId);
  return null;
}

function unary(name: string, fn: "pw_exp" | "pw_log", args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  const n = sizeOf(x.shape);
  if (x.dtype !== "float32" || n === 0) return fallback(name, args);
  const out = backend.makeOutput(x.shape, "float32");
  const xo = heapOffset(backend, x), oo = heapOffset(backend, out);
  return sweep(backend, out, rowParts(backend, n, POINTWISE_PER_PART), (lo, hi) => [
    fn,
    xo,
    oo,
    lo,
    hi,
  ]) ?? fallback(name, args);
}

/** float32 `Exp` as a SIMD sweep (`pw_exp` of `wasm_pointwise.ts`). */
export function wasmExp(args: KernelArgs): TensorInfo {
  return unary(tf.Exp, "pw_exp", args);
}

/** float32 `Log` as a SIMD sweep (`pw_log` of `wasm_pointwise.ts`). */
export function wasmLog(args: KernelArgs): TensorInfo {
  return unary(tf.Log, "pw_log", args);
}

/** float32 `Softmax` over a last axis of 4 classes, or of 2 with an even pixel count. */
export function wasmSoftmax(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { logits } = args.inputs as { logits: TensorInfo };
  const dim = (args.attrs as { dim: number }).dim;
  const r = logits.shape.length, c = logits.shape[r - 1], n = sizeOf(logits.shape);
  const vectors = n / 4;
  if (
    logits.dtype !== "float32" || n === 0 || (dim !== -1 && dim !== r - 1) ||
    (c !== 4 && c !== 2) || n % 4 !== 0
  ) return fallback(tf.Softmax, args);
  const out = backend.makeOutput(logits.shape, "float32");
  const xo = heapOffset(backend, logits), oo = heapOffset(backend, out);
  const fn = c === 4 ? "pw_softmax4" : "pw_softmax2";
  return sweep(
    backend,
    out,
    rowParts(backend, vectors, POINTWISE_PER_PART / 4),
    (lo, hi) => [
      fn,
      xo,
      oo,
      lo,
      hi,
    ],
  ) ?? fallback(tf.Softmax, args);
}

/** `[a, b]` when both are float32 and `b` is a single element of no higher rank than `a`, else null. */
function withScalar(a: TensorInfo, b: TensorInfo): [TensorInfo, TensorInfo] | null {
  if (a.dtype !== "float32" || b.dtype !== "float32") return null;
  if (sizeOf(b.shape) !== 1 || sizeOf(a.shape) === 0) return null;
  // the output takes the higher rank: `b` may not add axes to `a`
  if (b.shape.length > a.shape.length) return null;
  return [a, b];
}

/**
 * `name` of a float32 tensor and a single element as the sweep `fn` (its output `dtype`); with
 * `commutes`, the single element may come first.
 */
function byScalar(
  args: KernelArgs,
  name: string,
  fn: "pw_max_s" | "pw_ge_s",
  dtype: "float32" | "bool",
  commutes: boolean,
): TensorInfo {
  const backend = args.backend as Backend;
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const pair = withScalar(a, b) ?? (commutes ? withScalar(b, a) : null);
  if (pair === null) return fallback(name, args);
  const [x, s] = pair;
  const out = backend.makeOutput(x.shape, dtype);
  const xo = heapOffset(backend, x), so = heapOffset(backend, s), oo = heapOffset(backend, out);
  const parts = rowParts(backend, sizeOf(x.shape), POINTWISE_PER_PART);
  return sweep(backend, out, parts, (lo, hi) => [fn, xo, so, oo, lo, hi]) ??
    fallback(name, args);
}

/** float32 `Maximum` of a tensor and a single element (either order). */
export function wasmMaximum(args: KernelArgs): TensorInfo {
  return byScalar(args, tf.Maximum, "pw_max_s", "float32", true);
}

/** float32 `GreaterEqual` of a tensor and a single element (in that order). */
export function wasmGreaterEqual(args: KernelArgs): TensorInfo {
  return byScalar(args, tf.GreaterEqual, "pw_ge_s", "bool", false);
}

/** float32 `Sub` of a `[..., 1]` tensor from a `[..., C]` one of the same leading shape. */
export function wasmSub(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const r = a.shape.length;
  if (
    a.dtype !== "float32" || b.dtype !== "float32" || r === 0 || b.shape.length !== r ||
    b.shape[r - 1] !== 1 || a.shape[r - 1] === 1 || sizeOf(a.shape) === 0 ||
    a.shape.slice(0, -1).some((d, i) => d !== b.shape[i])
  ) return fallback(tf.Sub, args);
  const c = a.shape[r - 1], rows = sizeOf(a.shape) / c;
  const out = backend.makeOutput(a.shape, "float32");
  const ao = heapOffset(backend, a), bo = heapOffset(backend, b), oo = heapOffset(backend, out);
  const perPart = Math.max(1, Math.ceil(POINTWISE_PER_PART / c));
  return sweep(backend, out, rowParts(backend, rows, perPart), (lo, hi) => [
    "pw_sub_rows",
    ao,
    bo,
    oo,
    lo,
    hi,
    4 * c,
  ]) ?? fallback(tf.Sub, args);
}

/** Floats per output row below which a `Sum` over leading axes goes to tfjs's kernel. */
const SUM_LEADING_MIN = 4096;

/**
 * float32 `Sum` over leading axes (`[0, k)`) of a tensor whose other axes hold at least
 * {@linkcode SUM_LEADING_MIN} floats (the warp's sum over its four bilinear corners, `[4, N, C]`):
 * one sweep split between the threads, each sum in row order in float32. tfjs transposes the
 * summed axes to the end first.
 */
export function wasmSum(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
  const axes = [...tf.util.parseAxisParam(axis, x.shape)].sort((a, b) => a - b);
  const k = axes.length, rank = x.shape.length;
  const r = sizeOf(x.shape.slice(k)), m = sizeOf(x.shape.slice(0, k));
  if (
    x.dtype !== "float32" || k === 0 || k >= rank || axes.some((a, i) => a !== i) ||
    r < SUM_LEADING_MIN || m === 0
  ) return fallback(tf.Sum, args);
  const shape = keepDims ? x.shape.map((d, i) => (i < k ? 1 : d)) : x.shape.slice(k);
  const out = backend.makeOutput(shape, "float32");
  const xo = heapOffset(backend, x), oo = heapOffset(backend, out);
  const parts = rowParts(backend, r, Math.max(4, Math.ceil(POINTWISE_PER_PART / m)));
  return sweep(backend, out, parts, (lo, hi) => ["pw_sum_lead", xo, oo, m, r, lo, hi]) ??
    fallback(tf.Sum, args);
}

// ---------------------------------------------------------------------------------------------
// Adam

/** Floats per thread below which the Adam sweep stays on one thread. */
const ADAM_PER_PART = 1 << 16;

/**
 * The fused Adam update (`core/optimizer.ts`) as a float32 SIMD sweep of the kernel module
 * (`adam` / `adam_wd`), split between the threads; the last `n % 4` floats in JavaScript with
 * float32 rounding. Where the module does not run, the float64 JavaScript kernel. (That one took
 * ~9 ms of a 128 px base-16 step, 2.2 M parameters, on the main thread.)
 */
function wasmAdam(args: KernelArgs): TensorInfo[] {
  const backend = args.backend as Backend;
  const { w, g, m, v } = args.inputs as Record<string, TensorInfo>;
  if (gemmKernels(backend) === null || [w, g, m, v].some((t) => t.dtype !== "float32")) {
    return adamKernel(args);
  }
  const a = args.attrs as Record<string, number>;
  const n = sizeOf(w.shape), n4 = n - (n % 4);
  const outs = [0, 1, 2].map(() => backend.makeOutput(w.shape, "float32"));
  const coef = backend.makeOutput([8], "float32");
  const c = [
    a.stepSize,
    a.beta1,
    1 - a.beta1,
    a.beta2,
    1 - a.beta2,
    a.c2,
    a.epsilon,
    a.weightDecay,
  ];
  (backend.typedArrayFromHeap(coef) as Float32Array).set(c);
  const offsets = [w, g, m, v, ...outs].map((t) => heapOffset(backend, t));
  const name = a.weightDecay > 0 ? "adam_wd" : "adam", co = heapOffset(backend, coef);
  runCallLists(
    backend,
    rowParts(backend, n4 / 4, ADAM_PER_PART / 4).map((
      [q0, q1],
    ): KernelCall[] => [[name, ...offsets, 4 * q0, 4 * q1, co]]),
  );
  backend.disposeData(coef.dataId);
  if (n4 < n) {
    // the tail, float32 operation by operation as the sweep
    const f = Math.fround, [step, b1, a1, b2, a2, c2, eps, wd] = c.map(f);
    const [wv, gv, mv, vv, w1, m1, v1] = [w, g, m, v, ...outs].map((t) =>
      backend.typedArrayFromHeap(t) as Float32Array
    );
    for (let i = n4; i < n; i++) {
      const gi = a.weightDecay > 0 ? f(gv[i] + f(wd * wv[i])) : gv[i];
      const mi = f(f(b1 * mv[i]) + f(a1 * gi));
      const vi = f(f(b2 * vv[i]) + f(f(a2 * gi) * gi));
      m1[i] = mi;
      v1[i] = vi;
      w1[i] = f(wv[i] - f(f(mi / f(f(Math.sqrt(f(vi / c2))) + eps)) * step));
    }
  }
  return outs;
}

// ---------------------------------------------------------------------------------------------
// BatchMatMul with a long dimension

/** The long dimension from which {@linkcode wasmBatchMatMul} takes a product. */
const MATMUL_MIN_LONG = 4096;
/** The largest small matrix (output of `A^T B`, or the right factor) it takes. */
const MATMUL_MAX_SMALL = 16384;

let tnTileProducts = 0;

/** `A^T B` products run on the register tiles so far (tests check the dispatch). */
export function tnTileProductCount(): number {
  return tnTileProducts;
}

/** The most vectors of columns a register tile of `MM_TN_TILES` holds. */
const TILE_VECTORS = Math.max(...MM_TN_TILES.map(([, v]) => v));

/**
 * The register tiles (`[rows, vectors, row, vector]`) that cover an `m x 4 nv` output of
 * `A^T B`: the widest columns first, then for those the tallest tile of `MM_TN_TILES` (listed
 * tallest first) that fits the rows left.
 */
function tnTiles(m: number, nv: number): [number, number, number, number][] {
  const tiles: [number, number, number, number][] = [];
  for (let j0 = 0; j0 < nv; j0 += TILE_VECTORS) {
    const v = Math.min(TILE_VECTORS, nv - j0);
    for (let i0 = 0; i0 < m;) {
      const [r] = MM_TN_TILES.find(([r, tv]) => tv === v && r <= m - i0)!;
      tiles.push([r, v, i0, j0]);
      i0 += r;
    }
  }
  return tiles;
}

/**
 * float32 `BatchMatMul` of one matrix pair where one dimension is long and the rest small: the
 * MI's joint distributions `A^T B` (`[K, m]^T [K, n]`, K = pixels) split over `K` between the
 * threads (each accumulates its own `[m, n]`, added in part order), and their gradients, tall
 * products `[R, m] [m, n]` split by rows. tfjs's kernel for every other case.
 */
export function wasmBatchMatMul(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const ra = a.shape.length, rb = b.shape.length;
  if (a.dtype !== "float32" || b.dtype !== "float32" || ra < 2 || rb < 2) {
    return fallback(tf.BatchMatMul, args);
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  if (sizeOf(batchA) !== 1 || sizeOf(batchB) !== 1) return fallback(tf.BatchMatMul, args);
  const [a0, a1] = a.shape.slice(-2), [b0, b1] = b.shape.slice(-2);
  const [m, ka] = transposeA ? [a1, a0] : [a0, a1];
  const [kb, n] = transposeB ? [b1, b0] : [b0, b1];
  if (ka !== kb || m === 0 || n === 0 || ka === 0) return fallback(tf.BatchMatMul, args);
  const batch = (batchA.length >= batchB.length ? batchA : batchB).map(() => 1);
  const ao = heapOffset(backend, a), bo = heapOffset(backend, b);
  if (transposeA && !transposeB && ka >= MATMUL_MIN_LONG && m * n <= MATMUL_MAX_SMALL) {
    // out = A^T B, split over the inner dimension
    const parts = rowParts(backend, ka);
    const partial = backend.makeOutput([parts.length, m, n], "float32");
    const tiles = n % 4 === 0 ? tnTiles(m, n / 4) : null;
    // mm_tn adds to its part's sums; the tiles store every element of theirs
    if (tiles === null) (backend.typedArrayFromHeap(partial) as Float32Array).fill(0);
    else tnTileProducts++;
    const po = heapOffset(backend, partial);
    const ok = runCallLists(
      backend,
      parts.map(([k0, k1], p): KernelCall[] =>
        tiles === null
          ? [["mm_tn", ao, bo, po + 4 * p * m * n, k0, k1, m, n]]
          : tiles.map(([mr, nv, i0, j0]): KernelCall => [
            `mm_tn_${mr}x${nv}`,
            ao,
            bo,
            po + 4 * p * m * n,
            k0,
            k1,
            m,
            n,
            i0,
            j0,
          ])
      ),
    );
    if (!ok) {
      backend.disposeData(partial.dataId);
      return fallback(tf.BatchMatMul, args);
    }
    const out = backend.makeOutput([...batch, m, n], "float32");
    const ov = backend.typedArrayFromHeap(out) as Float32Array;
    const pv = backend.typedArrayFromHeap(partial) as Float32Array;
    for (let i = 0; i < m * n; i++) {
      let sum = 0;
      for (let p = 0; p < parts.length; p++) sum += pv[p * m * n + i];
      ov[i] = sum;
    }
    backend.disposeData(partial.dataId);
    return out;
  }
  if (!transposeA && m >= MATMUL_MIN_LONG && ka * n <= MATMUL_MAX_SMALL) {
    // out = A W with W = B or B^T, [ka, n], split by rows
    let w = b, transposed: TensorInfo | null = null;
    if (transposeB) {
      transposed = backend.makeOutput([ka, n], "float32");
      const tv = backend.typedArrayFromHeap(transposed) as Float32Array;
      const bv = backend.typedArrayFromHeap(b) as Float32Array;
      for (let i = 0; i < ka; i++) {
        for (let j = 0; j < n; j++) tv[i * n + j] = bv[j * ka + i];
      }
      w = transposed;
    }
    const out = backend.makeOutput([...batch, m, n], "float32");
    const wo = heapOffset(backend, w), oo = heapOffset(backend, out);
    const ok = runCallLists(
      backend,
      rowParts(backend, m).map(([r0, r1]): KernelCall[] => [[
        "mm_rows",
        ao,
        wo,
        oo,
        r0,
        r1,
        ka,
        n,
      ]]),
    );
    if (transposed !== null) backend.disposeData(transposed.dataId);
    if (ok) return out;
    backend.disposeData(out.dataId);
  }
  return fallback(tf.BatchMatMul, args);
}

// ---------------------------------------------------------------------------------------------
// Identity and same-type Cast

/**
 * A new tensor on the same data (reference counted), as the cpu backend does. The wasm backend
 * copies instead, and the engine clones every tensor it saves for the backward pass through
 * `Identity`, which doubled the memory of the forward pass and cost a copy each.
 */
function identity(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  if (x.dtype === "string") return fallback(tf.Identity, args);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** `Cast` to the type the tensor already has shares its data like {@linkcode identity}. */
function cast(args: KernelArgs): TensorInfo {
  const { x } = args.inputs as { x: TensorInfo };
  const { dtype } = args.attrs as unknown as tf.CastAttrs;
  return dtype === x.dtype ? identity(args) : fallback(tf.Cast, args);
}

function fallback(name: string, args: KernelArgs): TensorInfo {
  const original = originalKernel(name, BACKEND);
  if (original === undefined) throw new Error(`wasm training kernels: no ${name}`);
  return original.kernelFunc(args) as TensorInfo;
}

// ---------------------------------------------------------------------------------------------

const kernels: ReadonlyArray<[string, tf.KernelFunc]> = [
  [tf.Conv2DBackpropFilter, conv2DBackpropFilter as tf.KernelFunc],
  [tf.Conv2DBackpropInput, conv2DBackpropInput as tf.KernelFunc],
  [tf.UnsortedSegmentSum, unsortedSegmentSum as tf.KernelFunc],
  [tf.Conv2D, conv2D as tf.KernelFunc],
  [tf.FusedConv2D, fusedConv2D as tf.KernelFunc],
  [tf.Concat, concat as tf.KernelFunc],
  [tf.SplitV, splitV as unknown as tf.KernelFunc],
  [tf.ResizeNearestNeighbor, resizeNearestNeighbor as tf.KernelFunc],
  [tf.ResizeNearestNeighborGrad, resizeNearestNeighborGrad as tf.KernelFunc],
  [tf.MaxPoolGrad, maxPoolGrad as tf.KernelFunc],
  [tf.Identity, identity as tf.KernelFunc],
  [tf.Cast, cast as tf.KernelFunc],
  [tf.GatherV2, wasmGatherV2 as tf.KernelFunc],
  [tf.Slice, wasmSlice as tf.KernelFunc],
  [tf.PadV2, wasmPadV2 as tf.KernelFunc],
  [tf.Multiply, wasmMultiply as tf.KernelFunc],
  [tf.Add, wasmAdd as tf.KernelFunc],
  [tf.Sub, wasmSub as tf.KernelFunc],
  [tf.Maximum, wasmMaximum as tf.KernelFunc],
  [tf.GreaterEqual, wasmGreaterEqual as tf.KernelFunc],
  [tf.Exp, wasmExp as tf.KernelFunc],
  [tf.Log, wasmLog as tf.KernelFunc],
  [tf.Softmax, wasmSoftmax as tf.KernelFunc],
  [tf.Sum, wasmSum as tf.KernelFunc],
  [tf.BatchMatMul, wasmBatchMatMul as tf.KernelFunc],
  [ADAM_KERNEL, wasmAdam as unknown as tf.KernelFunc],
];

/**
 * Registers `Conv2DBackpropFilter`, `Conv2DBackpropInput` and `UnsortedSegmentSum` for the
 * "wasm" backend (NHWC, float32), and replaces its `Conv2D`, `FusedConv2D`, data-movement,
 * element-wise (`Multiply`, `Add`, `Sub`, `Maximum`, `GreaterEqual`, `Exp`, `Log`, `Softmax`,
 * `Sum`), `BatchMatMul`, `Identity` and `Cast` kernels for the cases they speed up (through
 * `tfjs_internals.ts`, which can restore them; tfjs's kernel for the other cases). Safe to
 * call more than once. Call it after `await tf.setBackend("wasm")`; a kernel wasm already had is
 * kept and used for the cases this module does not accelerate (`Conv2DBackpropInput` with
 * strides other than 1, except a filter the size of the stride without padding, as in a 2x2
 * stride-2 `conv2dTranspose`).
 *
 * With `replace: false` (`kernels: builtin`) only the two kernels wasm lacks for training are
 * added, as plain loops: `Conv2DBackpropFilter` and `UnsortedSegmentSum`.
 */
export function registerWasmTrainingKernels(options: { replace?: boolean } = {}): void {
  if (options.replace === false) {
    addKernel({
      kernelName: tf.Conv2DBackpropFilter,
      backendName: BACKEND,
      kernelFunc: conv2DBackpropFilterLoop as tf.KernelFunc,
    });
    addKernel({
      kernelName: tf.UnsortedSegmentSum,
      backendName: BACKEND,
      kernelFunc: unsortedSegmentSum as tf.KernelFunc,
    });
    return;
  }
  for (const [kernelName, kernelFunc] of kernels) {
    replaceKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
}
