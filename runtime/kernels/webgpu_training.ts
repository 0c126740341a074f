/**
 * Training kernels for `@tensorflow/tfjs-backend-webgpu` 4.22.0 where its own fail or crawl on a
 * GPU (measured on an NVIDIA H200, see docs/backends.md):
 *
 * - `Conv2DBackpropFilter`: tfjs runs one GPU thread per filter weight, each looping over every
 *   pixel of the batch, so the first U-Net levels (3x3x1x16 and 3x3x16x16 weights, up to a
 *   million pixels) keep a few warps busy, each waiting on memory, for the whole step. Here, for
 *   stride-1 convolutions (all of the U-Net's), the filter gradient of each tap (kh, kw) is
 *   `x[shifted by (kh, kw)]^T · dy` (`[C_in, pixels] x [pixels, C_out]`) computed as a batch of
 *   matrix products over chunks of at most 1,024 pixels, then summed over the chunks: many
 *   workgroups, no atomics (tfjs's split-K matrix product would have every workgroup add into
 *   the same few hundred outputs), and the same summation order on every run.
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

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

const BACKEND = "webgpu";
/** Pixels per matrix product of the filter gradient (below tfjs's split-K threshold, 2,000). */
const CHUNK = 1024;

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
// Conv2DBackpropFilter

/**
 * `dW[kh, kw, :, :] = x_padded[:, kh : kh + outH, kw : kw + outW, :]^T · dy` (pixels as the
 * inner dimension), for stride 1, dilation 1, NHWC.
 */
export function conv2dBackpropFilterWebgpu(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: number | [number, number];
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat?: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    filterShape: [number, number, number, number];
  };
  const strides = typeof attrs.strides === "number"
    ? [attrs.strides, attrs.strides]
    : attrs.strides;
  if (
    (attrs.dataFormat ?? "NHWC") !== "NHWC" || strides[0] !== 1 || strides[1] !== 1 ||
    x.dtype !== "float32"
  ) {
    return runOriginal("Conv2DBackpropFilter", args);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    1,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [fh, fw, ci, co] = attrs.filterShape;
  const { top, left } = info.padInfo;
  const [b, inH, inW] = x.shape;
  const { outHeight: outH, outWidth: outW } = info;
  const backend = args.backend;
  const temps: TensorInfo[] = [];
  const keep = <T extends TensorInfo>(t: T) => (temps.push(t), t);
  try {
    const bottom = Math.max(0, outH + fh - 1 - top - inH);
    const right = Math.max(0, outW + fw - 1 - left - inW);
    const padded = top || left || bottom || right
      ? keep(run("PadV2", backend, { x }, {
        paddings: [[0, 0], [top, bottom], [left, right], [0, 0]],
        constantValue: 0,
      }))
      : x;
    // chunks of whole output rows, at most CHUNK pixels each (one chunk when outW is wider)
    const rows = b * outH;
    let perChunk = Math.max(1, Math.min(rows, Math.floor(CHUNK / outW)));
    while (rows % perChunk !== 0) perChunk--;
    const chunks = rows / perChunk;
    const chunkPixels = perChunk * outW;
    const dy3 = keep(run("Reshape", backend, { x: dy }, { shape: [chunks, chunkPixels, co] }));
    const taps: TensorInfo[] = [];
    for (let i = 0; i < fh; i++) {
      for (let j = 0; j < fw; j++) {
        const whole = i === 0 && j === 0 && padded.shape[1] === outH && padded.shape[2] === outW;
        const shifted = whole ? padded : keep(run("Slice", backend, { x: padded }, {
          begin: [0, i, j, 0],
          size: [b, outH, outW, ci],
        }));
        const x3 = keep(run("Reshape", backend, { x: shifted }, {
          shape: [chunks, chunkPixels, ci],
        }));
        const partial = keep(run("BatchMatMul", backend, { a: x3, b: dy3 }, {
          transposeA: true,
          transposeB: false,
        }));
        taps.push(
          chunks === 1 ? partial : keep(run("Sum", backend, { x: partial }, {
            axis: [0],
            keepDims: true,
          })),
        );
      }
    }
    const stacked = taps.length === 1 ? taps[0] : keep(run("Concat", backend, taps, { axis: 0 }));
    return run("Reshape", backend, { x: stacked }, { shape: [fh, fw, ci, co] });
  } finally {
    // Reshape shares data: disposing a view only drops a reference
    dispose(backend, ...temps);
  }
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
 * Register the kernels above, and the fused Adam update (`webgpu_adam.ts`), for webgpu
 * (idempotent; tfjs's own stay as the fallbacks).
 */
export function registerWebgpuTrainingKernels(): void {
  registerWebgpuAdamKernel();
  registerWebgpuBatchNormRelu();
  replaceKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: BACKEND,
    kernelFunc: conv2dBackpropFilterWebgpu as unknown as tf.KernelFunc,
  });
  replaceKernel({
    kernelName: "UnsortedSegmentSum",
    backendName: BACKEND,
    kernelFunc: unsortedSegmentSumWebgpu as unknown as tf.KernelFunc,
  });
}
