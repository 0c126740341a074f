/**
 * `Identity` and same-type `Cast` for the wasm backend: a new tensor on the same data.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback } from "./wasm_kernel_util.ts";

/**
 * A new tensor on the same data (reference counted), as the cpu backend does. The wasm backend
 * copies instead, and the engine clones every tensor it saves for the backward pass through
 * `Identity`, which doubled the memory of the forward pass and cost a copy each.
 */
export function identity(args: KernelArgs): TensorInfo {
  const backend = args.backend as Backend;
  const { x } = args.inputs as { x: TensorInfo };
  if (x.dtype === "string") return fallback(tf.Identity, args);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** `Cast` to the type the tensor already has shares its data like {@linkcode identity}. */
export function cast(args: KernelArgs): TensorInfo {
  const { x } = args.inputs as { x: TensorInfo };
  const { dtype } = args.attrs as unknown as tf.CastAttrs;
  return dtype === x.dtype ? identity(args) : fallback(tf.Cast, args);
}
