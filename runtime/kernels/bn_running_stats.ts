/**
 * The running statistics' update of a training batch norm as one kernel per statistic
 * (`MiSslBnRunningStats`), where a backend has it (webgpu with `kernels: custom`):
 *
 * `moving' = moving (1 - momentum) + mean_g(stat) * scale * momentum`
 *
 * for the running mean (`scale` 1) and variance (`scale` `count / (count - 1)`, the unbiased
 * estimate), from the per-group statistics `[G, C]` of `batchNormRelu`. Composed, the update is
 * a `Mean` (two programs on webgpu), up to three `Multiply` and an `Add` per statistic: 11 GPU
 * programs per layer; fused, 2. Elsewhere the U-Net composes it (`bnRunningStatistics` returns
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
import type { WebgpuBackendLike } from "./webgpu_training.ts";

/** Kernel name: inputs `moving` `[C]`, `stats` `[G, C]`; output the updated `[C]`. */
export const BN_RUNNING_STATS = "MiSslBnRunningStats";

type TensorInfo = tf.TensorInfo;

/** One updated running statistic per channel (webgpu). */
class RunningStatsProgram {
  readonly variableNames = ["moving", "stats"];
  readonly uniforms = "groups : i32, keep : f32, momentum : f32, scale : f32,";
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly size = true;
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly shaderKey = "miSslBnRunningStats";

  constructor(channels: number) {
    this.outputShape = [channels];
    this.dispatch = [Math.ceil(channels / 64), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var total = 0.0;
          for (var k = 0; k < uniforms.groups; k = k + 1) {
            total = total + stats[k * uniforms.size + index];
          }
          let mean = total / f32(uniforms.groups);
          setOutputAtIndex(index,
            moving[index] * uniforms.keep + mean * uniforms.scale * uniforms.momentum);
        }
      }
    `;
  }
}

function runningStatsWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo {
  const { moving, stats } = args.inputs as Record<string, TensorInfo>;
  const { momentum, scale } = args.attrs as Record<string, number>;
  const [groups, channels] = stats.shape;
  if (moving.shape.length !== 1 || moving.shape[0] !== channels || stats.shape.length !== 2) {
    throw new Error(`${BN_RUNNING_STATS}: [C] and [G, C] inputs expected`);
  }
  const backend = args.backend as unknown as WebgpuBackendLike;
  return backend.runWebGPUProgram(new RunningStatsProgram(channels), [moving, stats], "float32", [
    { type: "int32", data: [groups] },
    { type: "float32", data: [1 - momentum] },
    { type: "float32", data: [momentum] },
    { type: "float32", data: [scale] },
  ]);
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
  const run = (moving: tf.Tensor, stats: tf.Tensor2D, scale: number) =>
    tf.engine().runKernel(
      BN_RUNNING_STATS,
      { moving, stats } as unknown as tf.NamedTensorMap,
      { momentum: options.momentum, scale } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor1D;
  const { count } = options;
  return [run(movingMean, mean, 1), run(movingVar, variance, count / Math.max(count - 1, 1))];
}
