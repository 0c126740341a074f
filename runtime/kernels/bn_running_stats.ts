/**
 * The running statistics' update of a training batch norm as one kernel (`MiSslBnRunningStats`),
 * where a backend has it (webgpu with `kernels: custom`):
 *
 * `moving' = moving (1 - momentum) + mean_g(stat) * scale * momentum`
 *
 * for the running mean (`scale` 1) and variance (`scale` `count / (count - 1)`, the unbiased
 * estimate), from the per-group statistics `[G, C]` of `batchNormRelu`. Composed, the update is
 * a `Mean` (two programs on webgpu), up to three `Multiply` and an `Add` per statistic: 11 GPU
 * programs per layer; fused, 1 (both statistics, recorded by `webgpu_record.ts` since tfjs's
 * programs have one output). Elsewhere the U-Net composes it (`bnRunningStatistics` returns
 * null).
 *
 * ```ts
 * import { bnRunningStatistics } from "./bn_running_stats.ts";
 * const next = bnRunningStatistics(movingMean, movingVar, mean, variance, { momentum, count });
 * ```
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { addKernel, kernelMode } from "../tfjs_internals.ts";
import { program, recordBn } from "./webgpu_bn_record.ts";
import { THREADS } from "./webgpu_bn_programs.ts";
import type { WebgpuInternals } from "./webgpu_record.ts";

/**
 * Kernel name: inputs `movingMean`, `movingVar` `[C]`, `mean`, `variance` `[G, C]`, attrs
 * `momentum`, `count`; outputs the updated running mean and variance `[C]`.
 */
export const BN_RUNNING_STATS = "MiSslBnRunningStats";

type TensorInfo = tf.TensorInfo;

/** WGSL updating the running mean and variance, a thread per channel. */
const RUNNING_STATS_SHADER = program(
  `struct Uniforms {
  groups : i32, channels : i32, keep : f32, momentum : f32, scaleVar : f32,
};`,
  [
    ["movingMean", "f32", false],
    ["movingVar", "f32", false],
    ["mean", "f32", false],
    ["variance", "f32", false],
    ["nextMean", "f32", true],
    ["nextVar", "f32", true],
  ],
  `
fn main() {
  let c = i32(workgroupId.x) * ${THREADS} + i32(localIndex);
  if (c < uniforms.channels) {
    var totalMean = 0.0;
    var totalVar = 0.0;
    for (var k = 0; k < uniforms.groups; k = k + 1) {
      totalMean = totalMean + mean[k * uniforms.channels + c];
      totalVar = totalVar + variance[k * uniforms.channels + c];
    }
    let g = f32(uniforms.groups);
    nextMean[c] = movingMean[c] * uniforms.keep + totalMean / g * 1.0 * uniforms.momentum;
    nextVar[c] = movingVar[c] * uniforms.keep + totalVar / g * uniforms.scaleVar * uniforms.momentum;
  }
}`,
);

function runningStatsWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo[] {
  const { movingMean, movingVar, mean, variance } = args.inputs as Record<string, TensorInfo>;
  const { momentum, count } = args.attrs as Record<string, number>;
  const [groups, channels] = mean.shape;
  const ok = (t: TensorInfo, shape: number[]) =>
    t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (
    !ok(movingMean, [channels]) || !ok(movingVar, [channels]) || !ok(mean, [groups, channels]) ||
    !ok(variance, [groups, channels])
  ) {
    throw new Error(`${BN_RUNNING_STATS}: [C] and [G, C] inputs expected`);
  }
  const b = args.backend as unknown as WebgpuInternals;
  const nextMean = b.makeTensorInfo([channels], "float32");
  const nextVar = b.makeTensorInfo([channels], "float32");
  recordBn(
    b,
    BN_RUNNING_STATS,
    () => RUNNING_STATS_SHADER,
    [
      { type: "int32", data: [groups] },
      { type: "int32", data: [channels] },
      { type: "float32", data: [1 - momentum] },
      { type: "float32", data: [momentum] },
      { type: "float32", data: [count / Math.max(count - 1, 1)] },
    ],
    [movingMean, movingVar, mean, variance, nextMean, nextVar],
    Math.ceil(channels / THREADS),
  );
  return [nextMean, nextVar];
}

/** Register the kernel for webgpu (idempotent; `webgpu_bn.ts` does with the batch norm). */
export function registerWebgpuBnRunningStats(): void {
  addKernel({
    kernelName: BN_RUNNING_STATS,
    backendName: "webgpu",
    kernelFunc: runningStatsWebgpu as unknown as tf.KernelFunc,
  });
}

/**
 * The updated running mean and variance from a batch's per-group `mean` and biased `variance`
 * (`[G, C]`, over `count` values per group), or null where the active backend has no fused
 * update (then compose it) or with `kernels: builtin`.
 */
export function bnRunningStatistics(
  movingMean: tf.Tensor,
  movingVar: tf.Tensor,
  mean: tf.Tensor2D,
  variance: tf.Tensor2D,
  options: { momentum: number; count: number },
): [tf.Tensor1D, tf.Tensor1D] | null {
  if (kernelMode() === "builtin" || tf.getKernel(BN_RUNNING_STATS, tf.getBackend()) === undefined) {
    return null;
  }
  const [nextMean, nextVar] = tf.engine().runKernel(
    BN_RUNNING_STATS,
    { movingMean, movingVar, mean, variance } as unknown as tf.NamedTensorMap,
    { momentum: options.momentum, count: options.count } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor1D[];
  return [nextMean, nextVar];
}
