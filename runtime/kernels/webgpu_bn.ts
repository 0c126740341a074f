/**
 * The fused training batch norm + ReLU (`MiSslBatchNormRelu`, `MiSslBatchNormReluGrad`: the
 * interface of `batch_norm_relu.ts`) for `@tensorflow/tfjs-backend-webgpu`, in WGSL
 * (`webgpu_bn_programs.ts`, `webgpu_bn_apply.ts`). Composed from tfjs ops, a training batch norm and its gradient
 * are some 40 GPU programs per layer; here the forward pass is 2 and the backward pass 2 (or 3):
 *
 * - forward: per-block partial statistics, then one program (recorded by `webgpu_bn_record.ts`,
 *   since tfjs's programs have one output each) in which every block combines its group's
 *   partials and normalises + scales + shifts + ReLUs its pixels, writing `y`, the mean and the
 *   variance;
 * - backward: per-block partial sums of `dz` and `dz (x - mean)`, then one recorded program in
 *   which every block combines its group's sums and writes its `dx`, the first block of each
 *   channel tile `dgamma` and `dbeta` (it binds 11 storage buffers: where the device allows
 *   fewer, one program writes the groups' table, `dgamma` and `dbeta`, and a third `dx`).
 *
 * Where the backend lacks what recording uses (`webgpu_record.ts`), the kernels are not
 * registered (saying so once) and the U-Net composes tfjs's ops.
 *
 * With these registered (`kernels: custom`), the U-Net's training batch norm
 * (`plugins/models/unet.ts`, through `batchNormReluAvailable`) uses them on webgpu; the
 * registration also adds the fused running-statistics update (`bn_running_stats.ts`, one program
 * for both statistics).
 *
 * ```ts
 * import { registerWebgpuBatchNormRelu } from "./webgpu_bn.ts";
 * registerWebgpuBatchNormRelu(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernels, warnFallback } from "../tfjs_internals.ts";
import {
  BATCH_NORM_RELU,
  BATCH_NORM_RELU_GRAD,
  type BatchNormReluAttrs,
  registerBatchNormRelu,
} from "./batch_norm_relu.ts";
import {
  type BnGeometry,
  bnGeometry,
  BnPartialProgram,
  bnUniforms,
  GRAD_ROWS,
} from "./webgpu_bn_programs.ts";
import { BnGradApplyProgram } from "./webgpu_bn_apply.ts";
import { combineShader, recordBn } from "./webgpu_bn_record.ts";
import { type WebgpuInternals, webgpuInternalsMissing } from "./webgpu_record.ts";
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
  const record = (
    mode: "apply" | "grad" | "dx",
    tensors: TensorInfo[],
    workgroups: number,
  ) =>
    recordBn(
      backend as unknown as WebgpuInternals,
      `MiSslBnCombine_${mode}_${geometry.tile}`,
      () => combineShader(geometry, mode),
      uniforms,
      tensors,
      workgroups,
    );
  return { attrs, backend, geometry, spans, uniforms, sized, run, record };
}

/** Forward: `[x, gamma, beta]` to `[y, mean, variance]` in 2 programs. */
export function batchNormReluWebgpu(args: KernelArgs): TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, TensorInfo>;
  validate(BATCH_NORM_RELU, x, args.attrs as unknown as BatchNormReluAttrs, gamma, beta);
  const { backend, geometry: g, spans, run, record } = setUp(args, x);
  const stats = [g.groups, g.channels];
  const partial = run(new BnPartialProgram(g, "stats"), [x]);
  const y = backend.makeTensorInfo(x.shape, "float32");
  const mean = backend.makeTensorInfo(stats, "float32");
  const variance = backend.makeTensorInfo(stats, "float32");
  record(
    "apply",
    [partial, spans, x, gamma, beta, y, mean, variance],
    g.images * g.blocks * g.tiles,
  );
  backend.disposeData(partial.dataId);
  backend.disposeData(spans.dataId);
  return [y, mean, variance];
}

/** Storage buffers the backward's one-program `dx` binds (WebGPU's default limit is 8). */
const DX_BUFFERS = 11;

let backwardOverride: 2 | 3 | null = null;

/**
 * Tests only: force the backward's 2-program form (which needs a device allowing 11 storage
 * buffers a program) or its 3-program form; `null` (the default) picks by the device's
 * `maxStorageBuffersPerShaderStage`.
 */
export function setBnBackwardPrograms(programs: 2 | 3 | null): void {
  backwardOverride = programs;
}

/**
 * Backward: `[dy, x, gamma, y, mean, variance]` to `[dx, dgamma, dbeta]` in 2 programs where the
 * device allows 11 storage buffers a program (block sums, then `dx` with the blocks combined and
 * `dgamma`, `dbeta`), else 3 (block sums, the groups' table with `dgamma` and `dbeta`, `dx`).
 */
export function batchNormReluGradWebgpu(args: KernelArgs): TensorInfo[] {
  const { dy, x, gamma, y, mean, variance } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as BatchNormReluAttrs;
  validate(BATCH_NORM_RELU_GRAD, x, attrs, dy, gamma, y, mean, variance);
  const { backend, geometry: g, spans, sized, run, record } = setUp(args, x);
  const size = x.shape.reduce((a, d) => a * d, 1);
  const c = g.channels;
  const partial = run(new BnPartialProgram(g, "grad"), [dy, x, y, mean, spans]);
  const limit = (backend as unknown as WebgpuInternals).device.limits
    ?.maxStorageBuffersPerShaderStage ?? 8;
  if (backwardOverride === 2 || (backwardOverride === null && limit >= DX_BUFFERS)) {
    const dx = backend.makeTensorInfo(x.shape, "float32");
    const dgamma = backend.makeTensorInfo([c], "float32");
    const dbeta = backend.makeTensorInfo([c], "float32");
    record(
      "dx",
      [partial, spans, gamma, mean, variance, dy, x, y, dx, dgamma, dbeta],
      g.images * g.blocks * g.tiles,
    );
    for (const t of [partial, spans]) backend.disposeData(t.dataId);
    return [dx, dgamma, dbeta];
  }
  const table = backend.makeTensorInfo([g.groups * GRAD_ROWS * c], "float32");
  const dgamma = backend.makeTensorInfo([c], "float32");
  const dbeta = backend.makeTensorInfo([c], "float32");
  record("grad", [partial, spans, gamma, mean, variance, table, dgamma, dbeta], g.tiles);
  const dx = run(new BnGradApplyProgram(size), [dy, x, y, table, spans], sized(size));
  for (const t of [partial, table, spans]) backend.disposeData(t.dataId);
  return [view(dx, x.shape), dgamma, dbeta];
}

/**
 * Register both kernels for webgpu (idempotent), and the gradient (`batch_norm_relu.ts`).
 * `registerWebgpuTrainingKernels` does with `kernels: custom`; `builtin` takes them out again,
 * and the U-Net then composes tfjs's kernels.
 */
export function registerWebgpuBatchNormRelu(): void {
  registerBatchNormRelu();
  const missing = webgpuInternalsMissing(tf.findBackend("webgpu"));
  if (missing !== null) {
    warnFallback(
      "webgpu-bn",
      `tfjs-backend-webgpu's ${missing}`,
      "the batch norm composes tfjs's kernels (some 40 GPU programs a layer)",
    );
    return;
  }
  registerWebgpuBnRunningStats();
  addKernels("webgpu", {
    [BATCH_NORM_RELU]: batchNormReluWebgpu,
    [BATCH_NORM_RELU_GRAD]: batchNormReluGradWebgpu,
  });
}
