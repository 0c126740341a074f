/**
 * Broadcasting `Multiply` and `Add` for the wasm backend: a `[..., C]` tensor times a `[..., 1]`
 * factor or a vector of `C` values, and plus a bias of `C` values, as SIMD sweeps by rows split
 * between the threads (tfjs's broadcasting loops index element by element).
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { type KernelCall, runCallLists } from "./wasm_conv.ts";
import { miscKernelsFor } from "./wasm_misc.ts";
import { splitByRows } from "./wasm_row_copies.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, rowParts, ROWS_PER_PART, sizeOf } from "./wasm_kernel_util.ts";

// ---------------------------------------------------------------------------------------------
// Multiply by a [..., 1] factor

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
