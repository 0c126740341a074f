/**
 * Training kernels for `@tensorflow/tfjs-backend-webgpu` 4.22.0 where its own fail or crawl on a
 * GPU (measured on an NVIDIA H200, see docs/backends.md):
 *
 * - The stride-1 convolutions and both their gradients (`webgpu_conv.ts`): tfjs's filter
 *   gradient runs one GPU thread per filter weight, each looping over every pixel of the batch,
 *   and its input gradient a thread per input value; ours are tiled implicit matrix products.
 * - `UnsortedSegmentSum` (the gradient of `gather`, i.e. of the affine warp): tfjs transposes its
 *   `[rows, channels]` input with a tiled transpose whose dispatch exceeds WebGPU's 65,535
 *   workgroups per dimension beyond ~1M rows (a 256x256 batch of 8 images), which throws. Here
 *   it is one pass, a thread per input value adding it to its segment's row (atomically, as
 *   tfjs's own program does).
 *
 * Other cases go to the kernels tfjs registered (kept as the fallbacks).
 *
 * ```ts
 * import { registerWebgpuTrainingKernels } from "./webgpu_training.ts";
 * registerWebgpuTrainingKernels(); // after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { originalKernel, replaceKernel } from "../tfjs_internals.ts";
import { registerWebgpuAdamKernel } from "./webgpu_adam.ts";
import { registerWebgpuBatchNormRelu } from "./webgpu_bn.ts";
import { registerWebgpuConvKernels } from "./webgpu_conv.ts";
import { registerWebgpuMiKernels } from "./webgpu_mi.ts";
import { registerWebgpuKl } from "./webgpu_kl.ts";
import { registerWebgpuSoftmaxCe } from "./webgpu_softmax_ce.ts";
import { registerWebgpuSoftmax } from "./webgpu_softmax.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

const BACKEND = "webgpu";

/** The part of tfjs-backend-webgpu's backend object these kernels use. */
export interface WebgpuBackendLike {
  runWebGPUProgram(
    program: unknown,
    inputs: TensorInfo[],
    outputDtype: string,
    uniforms?: { type: string; data: number[] }[],
    output?: TensorInfo,
  ): TensorInfo;
  disposeData(dataId: unknown): void;
}

/** Run the kernel tfjs registered for webgpu under `name` (ours where we replaced it). */
function run(
  name: string,
  backend: unknown,
  inputs: Record<string, TensorInfo> | TensorInfo[],
  attrs: Record<string, unknown> = {},
): TensorInfo {
  const config = tf.getKernel(name, BACKEND);
  if (config === undefined) throw new Error(`webgpu training kernels: no webgpu kernel ${name}`);
  return config.kernelFunc({
    inputs: inputs as tf.NamedTensorInfoMap,
    backend: backend as tf.KernelBackend,
    attrs: attrs as tf.NamedAttrMap,
  }) as TensorInfo;
}

/** Run the kernel tfjs itself registered for webgpu under `name` (the fallback). */
function runOriginal(name: string, args: KernelArgs): TensorInfo {
  const config = originalKernel(name, BACKEND) ?? tf.getKernel(name, BACKEND);
  if (config === undefined) throw new Error(`webgpu training kernels: no webgpu kernel ${name}`);
  return config.kernelFunc(args) as TensorInfo;
}

function dispose(backend: unknown, ...infos: TensorInfo[]): void {
  for (const info of infos) (backend as WebgpuBackendLike).disposeData(info.dataId);
}

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum

/** A thread per input value, added (atomically) to its segment's row of the zeroed output. */
class SegmentSumRowsProgram {
  readonly variableNames = ["x", "segmentIds"];
  readonly uniforms = "numSegments : i32, rowSize : i32, xSize : i32,";
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly atomic = true;
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly shaderKey = "miSslSegmentSumRows";
  readonly size = false;

  constructor(rows: number, rowSize: number, numSegments: number) {
    this.outputShape = [numSegments, rowSize];
    // flat over the input: tfjs spreads more than 65,535 workgroups over y and z
    this.dispatchLayout = { x: [0] };
    this.dispatch = [Math.ceil((rows * rowSize) / 64), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.xSize) {
          let row = index / uniforms.rowSize;
          let col = index - row * uniforms.rowSize;
          let segment = i32(segmentIds[row]);
          if (segment >= 0 && segment < uniforms.numSegments) {
            let flatIndex = segment * uniforms.rowSize + col;
            let value = x[index];
            var oldValue = 0;
            loop {
              let newValue = bitcast<i32>(bitcast<f32>(oldValue) + value);
              let res = atomicCompareExchangeWeak(&result[flatIndex], oldValue, newValue);
              if (res.exchanged) {
                break;
              }
              oldValue = res.old_value;
            }
          }
        }
      }
    `;
  }
}

/** `UnsortedSegmentSum` along axis 0 without a transpose, for float32 data. */
export function unsortedSegmentSumWebgpu(args: KernelArgs): TensorInfo {
  const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = args.attrs as unknown as { numSegments: number };
  if (x.dtype !== "float32" || segmentIds.shape.length !== 1 || x.shape.length < 1) {
    return runOriginal("UnsortedSegmentSum", args);
  }
  const rows = x.shape[0];
  const rowSize = x.shape.slice(1).reduce((a, d) => a * d, 1);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const zeros = run("Fill", backend, {}, {
    shape: [numSegments, rowSize],
    value: 0,
    dtype: "float32",
  });
  const program = new SegmentSumRowsProgram(rows, rowSize, numSegments);
  const summed = backend.runWebGPUProgram(program, [x, segmentIds], "float32", [
    { type: "int32", data: [numSegments] },
    { type: "int32", data: [rowSize] },
    { type: "int32", data: [rows * rowSize] },
  ], zeros);
  const out = run("Reshape", backend, { x: summed }, {
    shape: [numSegments, ...x.shape.slice(1)],
  });
  dispose(backend, summed);
  return out;
}

/**
 * Register the kernels above, the fused Adam update (`webgpu_adam.ts`), the fused batch norm +
 * ReLU (`webgpu_bn.ts`), the tiled convolutions (`webgpu_conv.ts`), the mutual information's
 * fused tail (`webgpu_mi.ts`) and the fused losses (KL consistency, `webgpu_kl.ts`; softmax
 * cross-entropy, `webgpu_softmax_ce.ts`; the softmax with a one-program gradient,
 * `webgpu_softmax.ts`) for webgpu (idempotent; tfjs's own stay as the fallbacks).
 */
export function registerWebgpuTrainingKernels(): void {
  registerWebgpuAdamKernel();
  registerWebgpuBatchNormRelu();
  registerWebgpuConvKernels();
  registerWebgpuMiKernels();
  registerWebgpuKl();
  registerWebgpuSoftmaxCe();
  registerWebgpuSoftmax();
  replaceKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: BACKEND,
    kernelFunc: unsortedSegmentSumWebgpu as unknown as tf.KernelFunc,
  });
}
