/**
 * `Slice` and constant `PadV2` for the wasm backend (the MI's shifted windows and their
 * gradient) as strided block copies on the heap ({@linkcode copyBlock} over the row copies of
 * `wasm_row_copies.ts`), with {@linkcode fillOutside} for a pad's border.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { miscKernelsFor } from "./wasm_misc.ts";
import { copyRows } from "./wasm_row_copies.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, sizeOf } from "./wasm_kernel_util.ts";

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
