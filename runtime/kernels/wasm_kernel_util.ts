/**
 * What the wasm training kernels (`wasm_training.ts` and the modules it registers) share: the
 * backend's types, running the kernel registered under a name, freeing intermediates, sizes and
 * heap offsets, tfjs's original kernel as the fallback, and the split of rows between the kernel
 * pool's threads.
 *
 * @module
 */
import { tf, type tfWasm } from "../../deps.ts";
import { kernelThreads } from "./wasm_conv.ts";
import { originalKernel, wasmOffset } from "../tfjs_internals.ts";

/** The wasm backend. */
export type Backend = tfWasm.BackendWasm;
/** A tensor as kernels see it. */
export type TensorInfo = tf.TensorInfo;
/** tfjs's description of a 2D convolution. */
export type Conv2DInfo = tf.backend_util.Conv2DInfo;
/** The argument of a kernel function. */
export type KernelArgs = Parameters<tf.KernelFunc>[0];

/** The backend these kernels are for. */
export const BACKEND = "wasm";

/** Runs the kernel currently registered for wasm under `name`. */
export function run(
  name: string,
  backend: Backend,
  inputs: Record<string, TensorInfo>,
  attrs: Record<string, unknown> = {},
): TensorInfo {
  const config = tf.getKernel(name, BACKEND);
  if (config === undefined) throw new Error(`wasm training kernels: no wasm kernel ${name}`);
  return config.kernelFunc({ inputs, backend, attrs: attrs as tf.NamedAttrMap }) as TensorInfo;
}

/** Frees the data of intermediate tensors. */
export function dispose(backend: Backend, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

/** Number of elements of a tensor of `shape`. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Byte offset of a tensor's data on the wasm heap. */
export function heapOffset(backend: Backend, info: TensorInfo): number {
  return wasmOffset(backend, info);
}

/** Runs tfjs's own wasm kernel `name` (the one replaced) on `args`: the cases not accelerated. */
export function fallback(name: string, args: KernelArgs): TensorInfo {
  const original = originalKernel(name, BACKEND);
  if (original === undefined) throw new Error(`wasm training kernels: no ${name}`);
  return original.kernelFunc(args) as TensorInfo;
}

/** Rows per thread below which a row-wise kernel stays on the calling thread. */
export const ROWS_PER_PART = 8192;

/** Row bounds `[r0, r1)` of each part of `rows` split between the kernel pool's threads. */
export function rowParts(
  backend: Backend,
  rows: number,
  perPart = ROWS_PER_PART,
): [number, number][] {
  const parts = Math.max(1, Math.min(kernelThreads(backend), Math.floor(rows / perPart)));
  return Array.from(
    { length: parts },
    (_, k) => [Math.round((k * rows) / parts), Math.round(((k + 1) * rows) / parts)],
  );
}
