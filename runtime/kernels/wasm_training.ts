/**
 * Training kernels for the TensorFlow.js wasm backend.
 *
 * `@tensorflow/tfjs-backend-wasm` ships the forward kernels only: convolution training needs
 * `Conv2DBackpropFilter` (missing), `Conv2DBackpropInput` (present, but a naive loop), and the
 * gradient of `tf.gather` needs `UnsortedSegmentSum` (missing). This module registers them,
 * composed from the backend's own XNNPACK `Conv2D` and its data-movement kernels, with plain
 * loops over the wasm heap where nothing faster applies, along with faster replacements of
 * wasm's own kernels. The kernels live by family in their own modules: `wasm_conv_grad.ts`
 * (convolution gradients), `wasm_conv_forward.ts` (`Conv2D`, `FusedConv2D`), `wasm_gather.ts`
 * (`GatherV2`, `UnsortedSegmentSum`), `wasm_row_copies.ts` (`Concat`, `SplitV`),
 * `wasm_resample.ts` (nearest x2 upsampling, its gradient, `MaxPoolGrad`), `wasm_slice_pad.ts`
 * (`Slice`, `PadV2`), `wasm_broadcast.ts` (`Multiply`, `Add`), `wasm_elementwise.ts` (the
 * losses' element-wise kernels), `wasm_matmul.ts` (`BatchMatMul`), `wasm_adam.ts` (Adam) and
 * `wasm_identity.ts` (`Identity`, `Cast`), over the helpers of `wasm_kernel_util.ts`. This module
 * re-exports what tests use of them.
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
import { tf } from "../../deps.ts";
import { addKernel, replaceKernel } from "../tfjs_internals.ts";
import { ADAM_KERNEL } from "./adam.ts";
import { wasmAdam } from "./wasm_adam.ts";
import { wasmAdd, wasmMultiply } from "./wasm_broadcast.ts";
import { conv2D, fusedConv2D } from "./wasm_conv_forward.ts";
import {
  conv2DBackpropFilter,
  conv2DBackpropFilterLoop,
  conv2DBackpropInput,
} from "./wasm_conv_grad.ts";
import * as elementwise from "./wasm_elementwise.ts";
import { unsortedSegmentSum, wasmGatherV2 } from "./wasm_gather.ts";
import { cast, identity } from "./wasm_identity.ts";
import { BACKEND } from "./wasm_kernel_util.ts";
import { wasmBatchMatMul } from "./wasm_matmul.ts";
import { maxPoolGrad, resizeNearestNeighbor, resizeNearestNeighborGrad } from "./wasm_resample.ts";
import { concat, splitV } from "./wasm_row_copies.ts";
import { wasmPadV2, wasmSlice } from "./wasm_slice_pad.ts";

export { conv2DBackpropFilterLoop } from "./wasm_conv_grad.ts";
export { wasmAdd, wasmMultiply } from "./wasm_broadcast.ts";
export * from "./wasm_elementwise.ts";
export { wasmGatherV2 } from "./wasm_gather.ts";
export { tnTileProductCount, wasmBatchMatMul } from "./wasm_matmul.ts";
export { splitCopyCount } from "./wasm_row_copies.ts";
export { fillOutside, wasmPadV2, wasmSlice } from "./wasm_slice_pad.ts";

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
  [tf.Sub, elementwise.wasmSub as tf.KernelFunc],
  [tf.Maximum, elementwise.wasmMaximum as tf.KernelFunc],
  [tf.GreaterEqual, elementwise.wasmGreaterEqual as tf.KernelFunc],
  [tf.Exp, elementwise.wasmExp as tf.KernelFunc],
  [tf.Log, elementwise.wasmLog as tf.KernelFunc],
  [tf.Softmax, elementwise.wasmSoftmax as tf.KernelFunc],
  [tf.Sum, elementwise.wasmSum as tf.KernelFunc],
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
