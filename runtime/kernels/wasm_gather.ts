/**
 * `GatherV2` along axis 0 for the wasm backend (the warp's bilinear gathers, on the row-copy
 * kernel of `wasm_conv.ts`) and its gradient's `UnsortedSegmentSum`, which wasm lacks.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { gemmGather, type KernelCall, kernelThreads, runCallLists } from "./wasm_conv.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { fallback, heapOffset, sizeOf } from "./wasm_kernel_util.ts";

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
// UnsortedSegmentSum

/**
 * out[s, ...] = sum of x[i, ...] over the i with segmentIds[i] = s. `segmentIds` may have the
 * shape of any leading part of `x`'s shape; ids outside [0, numSegments) are dropped (as on cpu).
 */
export function unsortedSegmentSum(args: KernelArgs): TensorInfo {
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
