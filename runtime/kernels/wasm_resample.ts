/**
 * The U-Net's resampling for the wasm backend: nearest x2 upsampling
 * (`ResizeNearestNeighbor`), its gradient, and the gradient of 2x2 max pooling (`MaxPoolGrad`),
 * as row-wise SIMD kernels of `wasm_misc.ts` split between the threads.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { miscKernelsFor } from "./wasm_misc.ts";
import { splitByRows } from "./wasm_row_copies.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, sizeOf } from "./wasm_kernel_util.ts";

/** Nearest x2 upsampling (no corner alignment, no half-pixel centres), channels % 4 == 0. */
export function resizeNearestNeighbor(args: KernelArgs): TensorInfo {
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
export function resizeNearestNeighborGrad(args: KernelArgs): TensorInfo {
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
export function maxPoolGrad(args: KernelArgs): TensorInfo {
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
