/**
 * Convolution gradients for the wasm backend: `Conv2DBackpropFilter` (which wasm lacks) and
 * `Conv2DBackpropInput` (wasm's is a naive loop), on the SIMD GEMM kernels of `wasm_conv.ts`
 * where they apply, else composed from the backend's XNNPACK `Conv2D` and its data-movement
 * kernels, with a plain loop over the heap where nothing faster applies.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { gemmConvFilterGrad, gemmConvInputGrad } from "./wasm_conv.ts";
import { isPointwise } from "./wasm_conv_forward.ts";
import { MATMUL_MAX_SMALL, MATMUL_MIN_LONG, product } from "./wasm_matmul.ts";
import { originalKernel } from "../tfjs_internals.ts";
import type { Backend, Conv2DInfo, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { BACKEND, dispose, run, sizeOf } from "./wasm_kernel_util.ts";

type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

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
 * Exported for tests; it is what `registerWasmTrainingKernels` (`wasm_training.ts`) falls back to.
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

export function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
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

export function conv2DBackpropInput(args: KernelArgs): TensorInfo {
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
