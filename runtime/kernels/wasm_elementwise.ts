/**
 * Element-wise kernels of the losses for the wasm backend (`Exp`, `Log`, `Softmax`, `Maximum`
 * and `GreaterEqual` with a single element, `Sub` of a `[..., 1]` tensor, `Sum` over leading
 * axes), as the SIMD sweeps of `wasm_pointwise.ts` split between the threads; tfjs's kernels for
 * the other cases.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { type KernelCall, runCallLists } from "./wasm_conv.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, rowParts, sizeOf } from "./wasm_kernel_util.ts";

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
