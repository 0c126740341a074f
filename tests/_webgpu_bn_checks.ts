/**
 * The numbers `webgpu_bn_test.ts` checks, computed in a child process on the WebGPU adapter:
 * the fused batch norm + ReLU (`runtime/kernels/webgpu_bn.ts`) on `webgpu` against the `cpu`
 * backend's kernel (`batch_norm_relu.ts`, float64 sums), forward (`y`, mean, variance) and the
 * three gradients, on odd shapes and one large batch; the GPU programs each pass runs; and
 * whether the U-Net would take the fused kernel with `kernels: custom` and `builtin`. Prints
 * one JSON object. Runs apart for the reason `_webgpu_checks.ts` does (the lockfile).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";
import {
  BATCH_NORM_RELU,
  BATCH_NORM_RELU_GRAD,
  batchNormRelu,
  batchNormReluAvailable,
} from "../runtime/kernels/batch_norm_relu.ts";
import { setBnBackwardPrograms } from "../runtime/kernels/webgpu_bn.ts";
import { unetModel, unetOptions } from "../plugins/models/unet.ts";
import { relativeError } from "./_webgpu_checks.ts";

/** One comparison: the shape of `x`, the groups, the ReLU and the values' offset. */
export interface BnCase {
  name: string;
  shape: [number, number, number, number];
  groups: number[];
  relu: boolean;
  /** Added to every value of `x` (a mean far from zero tests the variance's accumulation). */
  offset?: number;
}

export const BN_CASES: BnCase[] = [
  { name: "3x7x5x3, groups [1, 2], relu", shape: [3, 7, 5, 3], groups: [1, 2], relu: true },
  { name: "3x7x5x3, groups [1, 2], no relu", shape: [3, 7, 5, 3], groups: [1, 2], relu: false },
  { name: "3x7x5x3, one group, relu", shape: [3, 7, 5, 3], groups: [3], relu: true },
  {
    name: "2x13x11x70 (two channel tiles, two blocks per image), groups [1, 1]",
    shape: [2, 13, 11, 70],
    groups: [1, 1],
    relu: true,
  },
  {
    name: "8x128x128x16, groups [4, 4], values 10 +- 1",
    shape: [8, 128, 128, 16],
    groups: [4, 4],
    relu: true,
    offset: 10,
  },
];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function uniform(n: number, r: () => number, offset = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = offset + 2 * r() - 1;
  return a;
}

/** `[y, mean, variance, dx, dgamma, dbeta]` of `c` on `backend`, from the same seeded data. */
async function evaluate(backend: "cpu" | "webgpu", c: BnCase, seed: number) {
  await initBackend(backend);
  const r = rng(seed);
  const [, , , ch] = c.shape;
  const size = c.shape.reduce((a, b) => a * b, 1);
  const x = tf.tensor4d(uniform(size, r, c.offset), c.shape);
  const gamma = tf.tensor1d(uniform(ch, r, 1));
  const beta = tf.tensor1d(uniform(ch, r));
  const dy = tf.tensor4d(uniform(size, r), c.shape);
  const options = { groups: c.groups, relu: c.relu };
  const out = batchNormRelu(x, gamma, beta, options);
  const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
    batchNormRelu(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, options).y
  )([x, gamma, beta], dy);
  const values: Float32Array[] = [];
  for (const t of [out.y, out.mean, out.variance, ...grads]) {
    values.push(Float32Array.from(await t.data()));
  }
  tf.dispose([x, gamma, beta, dy, out.y, out.mean, out.variance, ...grads]);
  return values;
}

/** GPU programs per kernel name of one forward and backward pass on webgpu. */
async function programs(): Promise<Record<string, number>> {
  await initBackend("webgpu");
  const x = tf.randomUniform([2, 6, 6, 4], -1, 1, "float32", 1) as tf.Tensor4D;
  const gamma = tf.ones([4]) as tf.Tensor1D, beta = tf.zeros([4]) as tf.Tensor1D;
  const info = await tf.profile(async () => {
    const grads = tf.grads((a: tf.Tensor) =>
      batchNormRelu(a as tf.Tensor4D, gamma, beta, { groups: [1, 1] }).y
    )([x]);
    await grads[0].data();
    tf.dispose(grads);
  });
  tf.dispose([x, gamma, beta]);
  const counts: Record<string, number> = {};
  for (const k of info.kernels) {
    if (k.name !== BATCH_NORM_RELU && k.name !== BATCH_NORM_RELU_GRAD) continue;
    const extra = typeof k.extraInfo === "string" ? k.extraInfo.trim() : "";
    counts[k.name] = (counts[k.name] ?? 0) + (extra === "" ? 0 : extra.split(", ").length);
  }
  return counts;
}

/**
 * A U-Net's training forward pass (3 images, groups [1, 2], momentum 0.3) on `backend` from the
 * same weights: the logits, then every running statistic after it, by name; and the kernels run.
 */
async function unetStep(
  backend: "cpu" | "webgpu",
  weights: Map<string, Float32Array> | null,
): Promise<
  { weights: Map<string, Float32Array>; out: Map<string, Float32Array>; kernels: string[] }
> {
  await initBackend(backend);
  const model = unetModel.create(unetOptions.parse({ base: 4, depth: 2, bnMomentum: 0.3 }), {
    inChannels: 1,
    numClasses: 3,
    seed: 7,
  });
  try {
    let seed = 40;
    const before = new Map<string, Float32Array>();
    for (const [name, v] of [...model.trainable, ...model.state]) {
      const saved = weights?.get(name);
      if (saved !== undefined) v.assign(tf.tensor(saved, v.shape));
      else if (name.endsWith("Var")) v.assign(tf.randomUniform(v.shape, 0.5, 2, "float32", seed++));
      else v.assign(tf.randomUniform(v.shape, -0.5, 0.5, "float32", seed++));
      before.set(name, Float32Array.from(await v.data()));
    }
    const x = tf.randomUniform([3, 8, 8, 1], -1, 1, "float32", 9) as tf.Tensor4D;
    let logits: tf.Tensor | undefined;
    const info = await tf.profile(() => {
      logits = model.apply(x, { training: true, groups: [1, 2] });
    });
    const out = new Map([["logits", Float32Array.from(await logits!.data())]]);
    for (const [name, v] of model.state) out.set(name, Float32Array.from(await v.data()));
    tf.dispose([x, logits!]);
    return { weights: before, out, kernels: info.kernels.map((k) => k.name) };
  } finally {
    model.dispose();
  }
}

/** What `webgpu_bn_test.ts` asserts. */
export interface WebgpuBnChecks {
  adapter: string;
  /**
   * Per case: relative errors of y, mean, variance, dx, dgamma, dbeta; each case twice, with the
   * device's backward (2 programs on lavapipe) and with the 3-program one (name ending in "3").
   */
  cases: { name: string; errors: number[]; ms: number }[];
  /** GPU programs of one forward (`MiSslBatchNormRelu`) and backward pass. */
  programs: Record<string, number>;
  /** The same with the 3-program backward forced. */
  programs3: Record<string, number>;
  /** The device's `maxStorageBuffersPerShaderStage` (the 2-program backward needs 11). */
  storageBuffers: number;
  /** U-Net forward on webgpu vs cpu: relative error of the logits and each running statistic. */
  unet: { errors: Record<string, number>; kernels: Record<string, number>; moved: number };
  /** Whether the U-Net takes the fused kernel on webgpu with `custom` and `builtin`. */
  available: { custom: boolean; builtin: boolean };
  seconds: number;
}

if (import.meta.main) {
  const t0 = performance.now();
  const adapter = await probeAdapter();
  if (adapter === null) throw new Error("no WebGPU adapter");
  const cases: WebgpuBnChecks["cases"] = [];
  for (const [i, c] of BN_CASES.entries()) {
    const t = performance.now();
    const ref = await evaluate("cpu", c, 300 + i);
    const got = await evaluate("webgpu", c, 300 + i);
    cases.push({
      name: c.name,
      errors: ref.map((v, k) => relativeError(got[k], v)),
      ms: Math.round(performance.now() - t),
    });
    setBnBackwardPrograms(3);
    const got3 = await evaluate("webgpu", c, 300 + i);
    setBnBackwardPrograms(null);
    cases.push({
      name: `${c.name}, backward 3`,
      errors: ref.map((v, k) => relativeError(got3[k], v)),
      ms: 0,
    });
  }
  const counts = await programs();
  setBnBackwardPrograms(3);
  const counts3 = await programs();
  setBnBackwardPrograms(null);
  const storageBuffers = (tf.backend() as unknown as {
    device: { limits: { maxStorageBuffersPerShaderStage: number } };
  }).device.limits.maxStorageBuffersPerShaderStage;
  const ref = await unetStep("cpu", null);
  const got = await unetStep("webgpu", ref.weights);
  const unetErrors: Record<string, number> = {};
  for (const [name, v] of got.out) unetErrors[name] = relativeError(v, ref.out.get(name)!);
  // how far the step moved the running statistics (on cpu): the comparison is not vacuous
  let moved = Infinity;
  for (const [name, v] of ref.out) {
    if (name !== "logits") moved = Math.min(moved, relativeError(v, ref.weights.get(name)!));
  }
  const unetKernels: Record<string, number> = {};
  for (const k of got.kernels) unetKernels[k] = (unetKernels[k] ?? 0) + 1;
  const custom = batchNormReluAvailable();
  // last: `builtin` puts back tfjs's kernels for the rest of the process
  await initBackend("webgpu", { kernels: "builtin" });
  const builtin = batchNormReluAvailable();
  const result: WebgpuBnChecks = {
    adapter: describeAdapter(adapter),
    cases,
    programs: counts,
    programs3: counts3,
    storageBuffers,
    unet: { errors: unetErrors, kernels: unetKernels, moved },
    available: { custom, builtin },
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
