/**
 * Row copies on the wasm heap, split between the kernel pool's threads when they are large
 * ({@linkcode copyRows}, {@linkcode splitByRows}: the building blocks of the data-movement
 * kernels), and `Concat` and `SplitV` as strided row copies.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { gemmKernels, kernelThreads } from "./wasm_conv.ts";
import { type MiscKernels, miscKernelsFor } from "./wasm_misc.ts";
import { parallelFor } from "./wasm_pool.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, sizeOf } from "./wasm_kernel_util.ts";

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
export function copyRows(
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
export function splitByRows(
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
export function concat(args: KernelArgs): TensorInfo {
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
export function splitV(args: KernelArgs): TensorInfo[] {
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
