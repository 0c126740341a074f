/**
 * The fused training batch norm + ReLU (`MiSslBatchNormRelu`, `MiSslBatchNormReluGrad`: the
 * interface of `batch_norm_relu.ts`) for `@tensorflow/tfjs-backend-webgpu`, in WGSL
 * (`webgpu_bn_programs.ts`, `webgpu_bn_apply.ts`). Composed from tfjs ops, a training batch norm and its gradient
 * are some 40 GPU programs per layer; here the forward pass is 4 and the backward pass 5
 * (tfjs's programs have one output each):
 *
 * - forward: per-block partial statistics, the mean and the variance (each combining the
 *   partials of its group, two programs because they are two outputs), then
 *   normalise + scale + shift + ReLU;
 * - backward: per-block partial sums of `dz` and `dz (x - mean)`, their group totals, `dgamma`,
 *   `dbeta`, then `dx`.
 *
 * With these registered (`kernels: custom`), the U-Net's training batch norm
 * (`plugins/models/unet.ts`, through `batchNormReluAvailable`) uses them on webgpu; the
 * registration also adds the fused running-statistics update (`bn_running_stats.ts`).
 *
 * ```ts
 * import { registerWebgpuBatchNormRelu } from "./webgpu_bn.ts";
 * registerWebgpuBatchNormRelu(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernel } from "../tfjs_internals.ts";
import {
  BATCH_NORM_RELU,
  BATCH_NORM_RELU_GRAD,
  type BatchNormReluAttrs,
  registerBatchNormRelu,
} from "./batch_norm_relu.ts";
import {
  BnCombineProgram,
  type BnGeometry,
  bnGeometry,
  BnPartialProgram,
  bnUniforms,
} from "./webgpu_bn_programs.ts";
import { BnApplyProgram, BnGradApplyProgram, BnParamGradProgram } from "./webgpu_bn_apply.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";
import { registerWebgpuBnRunningStats } from "./bn_running_stats.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** The webgpu backend's calls these kernels make. */
interface Backend extends WebgpuBackendLike {
  makeTensorInfo(shape: number[], dtype: string, values?: Int32Array): TensorInfo;
}

/** Checks shared by both kernels: float32 `[B, H, W, C]` data, groups adding up to `B`. */
function validate(name: string, x: TensorInfo, attrs: BatchNormReluAttrs, ...more: TensorInfo[]) {
  if (x.shape.length !== 4) throw new Error(`${name}: [B, H, W, C] input expected`);
  for (const t of [x, ...more]) {
    if (t.dtype !== "float32") throw new Error(`${name}: float32 tensors only`);
  }
  const { groups } = attrs;
  if (groups.length === 0 || groups.reduce((a, b) => a + b, 0) !== x.shape[0]) {
    throw new Error(`batchNormRelu: groups ${groups} do not add up to the batch ${x.shape[0]}`);
  }
}

/** A view of the same data with another shape (nothing copied or dispatched). */
function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

const flat = (t: TensorInfo) => view(t, [t.shape.reduce((a, d) => a * d, 1)]);

/** What both kernels set up: the backend, geometry, uniforms and the groups' image offsets. */
function setUp(args: KernelArgs, x: TensorInfo) {
  const attrs = args.attrs as unknown as BatchNormReluAttrs;
  const backend = args.backend as unknown as Backend;
  const geometry: BnGeometry = bnGeometry(x.shape, attrs.groups.length);
  const starts = new Int32Array(attrs.groups.length + 1);
  attrs.groups.forEach((g, i) => starts[i + 1] = starts[i] + g);
  const spans = backend.makeTensorInfo([starts.length], "int32", starts);
  const uniforms = bnUniforms(geometry, attrs.epsilon, attrs.relu);
  const sized = (n: number) => [...uniforms, { type: "int32", data: [n] }];
  const run = (program: unknown, inputs: TensorInfo[], extra = uniforms) =>
    backend.runWebGPUProgram(program, inputs.map(flat), "float32", extra);
  return { attrs, backend, geometry, spans, uniforms, sized, run };
}

/** Forward: `[x, gamma, beta]` to `[y, mean, variance]` in 4 programs. */
export function batchNormReluWebgpu(args: KernelArgs): TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, TensorInfo>;
  validate(BATCH_NORM_RELU, x, args.attrs as unknown as BatchNormReluAttrs, gamma, beta);
  const { backend, geometry: g, spans, sized, run } = setUp(args, x);
  const size = x.shape.reduce((a, d) => a * d, 1);
  const partial = run(new BnPartialProgram(g, "stats"), [x]);
  const mean = run(new BnCombineProgram(g, "mean"), [partial, spans]);
  const variance = run(new BnCombineProgram(g, "variance"), [partial, spans]);
  const y = run(
    new BnApplyProgram(size),
    [x, gamma, beta, mean, variance, spans],
    sized(size),
  );
  backend.disposeData(partial.dataId);
  backend.disposeData(spans.dataId);
  const stats = [g.groups, g.channels];
  return [view(y, x.shape), view(mean, stats), view(variance, stats)];
}

/** Backward: `[dy, x, gamma, y, mean, variance]` to `[dx, dgamma, dbeta]` in 5 programs. */
export function batchNormReluGradWebgpu(args: KernelArgs): TensorInfo[] {
  const { dy, x, gamma, y, mean, variance } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as BatchNormReluAttrs;
  validate(BATCH_NORM_RELU_GRAD, x, attrs, dy, gamma, y, mean, variance);
  const { backend, geometry: g, spans, sized, run } = setUp(args, x);
  const size = x.shape.reduce((a, d) => a * d, 1);
  const partial = run(new BnPartialProgram(g, "grad"), [dy, x, y, mean, spans]);
  const table = run(new BnCombineProgram(g, "grad"), [partial, spans, gamma, mean, variance]);
  const c = g.channels;
  const dgamma = run(new BnParamGradProgram(c, "gamma"), [table], sized(c));
  const dbeta = run(new BnParamGradProgram(c, "beta"), [table], sized(c));
  const dx = run(new BnGradApplyProgram(size), [dy, x, y, table, spans], sized(size));
  for (const t of [partial, table, spans]) backend.disposeData(t.dataId);
  return [view(dx, x.shape), view(dgamma, [c]), view(dbeta, [c])];
}

/**
 * Register both kernels for webgpu (idempotent), and the gradient (`batch_norm_relu.ts`).
 * `registerWebgpuTrainingKernels` does with `kernels: custom`; `builtin` takes them out again,
 * and the U-Net then composes tfjs's kernels.
 */
export function registerWebgpuBatchNormRelu(): void {
  registerBatchNormRelu();
  registerWebgpuBnRunningStats();
  addKernel({
    kernelName: BATCH_NORM_RELU,
    backendName: "webgpu",
    kernelFunc: batchNormReluWebgpu as unknown as tf.KernelFunc,
  });
  addKernel({
    kernelName: BATCH_NORM_RELU_GRAD,
    backendName: "webgpu",
    kernelFunc: batchNormReluGradWebgpu as unknown as tf.KernelFunc,
  });
}
