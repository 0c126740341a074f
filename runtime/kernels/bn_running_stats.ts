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
 * A trainer that reads the loss back only every few steps (`trainer.readback: log`) cannot know
 * during the forward pass whether the step will be applied: between
 * {@linkcode deferRunningStatistics} and {@linkcode commitRunningStatistics} the updates are
 * queued (the batch statistics kept, the running statistics left as they are), and the commit
 * runs the same kernel per layer with the step's device-side flag `ok` as an extra input: where
 * it is 0 the running statistics keep their values. No program is added.
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
 * Kernel name: inputs `movingMean`, `movingVar` `[C]`, `mean`, `variance` `[G, C]` and
 * optionally `ok` (one element; 0: the outputs are the inputs' values), attrs `momentum`,
 * `count`; outputs the updated running mean and variance `[C]`.
 */
export const BN_RUNNING_STATS = "MiSslBnRunningStats";

type TensorInfo = tf.TensorInfo;

/** WGSL updating the running mean and variance, a thread per channel (gated: by `ok[0]`). */
function runningStatsShader(gated: boolean): string {
  return program(
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
      ...(gated ? [["ok", "u32", false] as [string, string, boolean]] : []),
    ],
    `
fn main() {
  let c = i32(workgroupId.x) * ${THREADS} + i32(localIndex);
  if (c < uniforms.channels) {${
      gated
        ? `
    if (ok[0] == 0u) {
      nextMean[c] = movingMean[c];
      nextVar[c] = movingVar[c];
      return;
    }`
        : ""
    }
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
}

function runningStatsWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo[] {
  const { movingMean, movingVar, mean, variance, ok } = args.inputs as Record<
    string,
    TensorInfo
  >;
  const { momentum, count } = args.attrs as Record<string, number>;
  const [groups, channels] = mean.shape;
  const fits = (t: TensorInfo, shape: number[]) =>
    t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (
    !fits(movingMean, [channels]) || !fits(movingVar, [channels]) ||
    !fits(mean, [groups, channels]) || !fits(variance, [groups, channels])
  ) {
    throw new Error(`${BN_RUNNING_STATS}: [C] and [G, C] inputs expected`);
  }
  if (ok !== undefined && ok.shape.reduce((a, d) => a * d, 1) !== 1) {
    throw new Error(`${BN_RUNNING_STATS}: the gate "ok" must have one element`);
  }
  const b = args.backend as unknown as WebgpuInternals;
  const nextMean = b.makeTensorInfo([channels], "float32");
  const nextVar = b.makeTensorInfo([channels], "float32");
  recordBn(
    b,
    ok !== undefined ? `${BN_RUNNING_STATS}_gated` : BN_RUNNING_STATS,
    () => runningStatsShader(ok !== undefined),
    [
      { type: "int32", data: [groups] },
      { type: "int32", data: [channels] },
      { type: "float32", data: [1 - momentum] },
      { type: "float32", data: [momentum] },
      { type: "float32", data: [count / Math.max(count - 1, 1)] },
    ],
    [movingMean, movingVar, mean, variance, nextMean, nextVar, ...(ok !== undefined ? [ok] : [])],
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
  if (deferred !== null && movingMean instanceof tf.Variable && movingVar instanceof tf.Variable) {
    // the update waits for the step's flag; the caller assigns the statistics' own values
    deferred.push({
      movingMean,
      movingVar,
      mean: tf.keep(mean),
      variance: tf.keep(variance),
      options,
    });
    return [tf.clone(movingMean) as tf.Tensor1D, tf.clone(movingVar) as tf.Tensor1D];
  }
  return runningStats(movingMean, movingVar, mean, variance, options);
}

function runningStats(
  movingMean: tf.Tensor,
  movingVar: tf.Tensor,
  mean: tf.Tensor,
  variance: tf.Tensor,
  options: { momentum: number; count: number },
  ok?: tf.Tensor,
): [tf.Tensor1D, tf.Tensor1D] {
  const inputs = ok === undefined
    ? { movingMean, movingVar, mean, variance }
    : { movingMean, movingVar, mean, variance, ok };
  const [nextMean, nextVar] = tf.engine().runKernel(
    BN_RUNNING_STATS,
    inputs as unknown as tf.NamedTensorMap,
    { momentum: options.momentum, count: options.count } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor1D[];
  return [nextMean, nextVar];
}

/** A running statistics' update waiting for its step's flag. */
interface Deferred {
  movingMean: tf.Variable;
  movingVar: tf.Variable;
  mean: tf.Tensor;
  variance: tf.Tensor;
  options: { momentum: number; count: number };
}

let deferred: Deferred[] | null = null;

/**
 * From now until {@linkcode commitRunningStatistics}, the fused updates of
 * {@linkcode bnRunningStatistics} wait (it returns the statistics' current values).
 */
export function deferRunningStatistics(): void {
  discardRunningStatistics();
  deferred = [];
}

/**
 * Run the waiting updates, each gated by `ok` (a one-element tensor: where it is 0 the running
 * statistics keep their values), and assign them; returns how many layers were updated.
 */
export function commitRunningStatistics(ok: tf.Tensor): number {
  const pending = deferred ?? [];
  deferred = null;
  try {
    for (const d of pending) {
      const [m, v] = runningStats(d.movingMean, d.movingVar, d.mean, d.variance, d.options, ok);
      d.movingMean.assign(m);
      d.movingVar.assign(v);
      tf.dispose([m, v]);
    }
  } finally {
    tf.dispose(pending.flatMap((d) => [d.mean, d.variance]));
  }
  return pending.length;
}

/** Drop the waiting updates (a failed step: the running statistics stay as they are). */
export function discardRunningStatistics(): void {
  if (deferred !== null) tf.dispose(deferred.flatMap((d) => [d.mean, d.variance]));
  deferred = null;
}
