/**
 * The numbers `webgpu_adam_test.ts` checks, computed in a child process on the WebGPU adapter
 * (lavapipe in CI): `Adam` (core/optimizer.ts) over 3 steps on `webgpu` (`kernels: custom`, i.e.
 * `MiSslAdamMany`, runtime/kernels/webgpu_adam.ts) and on `cpu`, weight decay on and off; the
 * kernel calls and GPU programs of one step; and what the in-place update must leave alone.
 * Prints one JSON object. It runs apart for the reason `_webgpu_checks.ts` does (deno.lock).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";
import { Adam } from "../core/optimizer.ts";

/**
 * Odd sizes: one value, within a workgroup of 128, across several, more than 65,535 workgroups
 * (8,388,617 values: the dispatch's second dimension), one past a workgroup, and none; five
 * non-empty variables, so the last of the two-variable programs updates one.
 */
export const SHAPES = [[1], [3, 3, 5, 7], [13, 131], [8_388_617], [129], [0]];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function values(shape: number[], r: () => number): Float32Array {
  const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < a.length; i++) a[i] = 2 * r() - 1;
  return a;
}

/** Largest absolute difference over the largest reference value. */
function relativeError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return m === 0 ? d : d / m;
}

/** One backend's run: weights and moments per variable, and what the aliasing checks saw. */
interface Run {
  state: Float32Array[][];
  /** Largest change of the tensor variable 0 was made from (kept alive: must stay as it was). */
  keptChanged: number;
  /** Largest change of the tensor a moment was assigned from after step 1 (kept alive). */
  restoredChanged: number;
  /** Tensors and backend data ids more after the run than before (both 0 without a leak). */
  leaked: { tensors: number; dataIds: number };
}

/**
 * 3 Adam steps on `backend`. Variable 0 is made from a tensor that stays alive, and after step 1
 * variable 2's first moment is assigned from a tensor that stays alive (as a checkpoint restore
 * does): an in-place update must copy both first.
 */
async function run(backend: "cpu" | "webgpu", weightDecay: number): Promise<Run> {
  await initBackend(backend);
  const before = { tensors: tf.memory().numTensors, dataIds: tf.engine().backend.numDataIds() };
  const r = rng(7);
  const kept = tf.tensor(values(SHAPES[0], r), SHAPES[0]);
  const keptValues = await kept.data();
  const vars = new Map(SHAPES.map((shape, i) => [
    `w${i}`,
    i === 0
      ? tf.variable(kept, true, `adam-${backend}-${i}`)
      : tf.tidy(() =>
        tf.variable(tf.tensor(values(shape, r), shape), true, `adam-${backend}-${i}`)
      ),
  ]));
  const adam = new Adam(vars, { weightDecay });
  const restored = tf.tensor(values(SHAPES[2], r), SHAPES[2]);
  const restoredValues = await restored.data();
  const state = adam.stateVariables();
  const out: Float32Array[][] = [];
  let keptChanged: number, restoredChanged: number;
  try {
    for (let s = 0; s < 3; s++) {
      const grads = Object.fromEntries(
        SHAPES.map((shape, i) => [`w${i}`, tf.tensor(values(shape, r), shape)]),
      );
      adam.apply(grads, 1e-2);
      tf.dispose(grads);
      if (s === 0) state.get("adam/m/w2")!.assign(restored);
    }
    for (const [name, v] of vars) {
      out.push([
        Float32Array.from(await v.data()),
        Float32Array.from(await state.get(`adam/m/${name}`)!.data()),
        Float32Array.from(await state.get(`adam/v/${name}`)!.data()),
      ]);
    }
    const change = async (t: tf.Tensor, was: ArrayLike<number>) =>
      Float32Array.from(await t.data()).reduce((d, x, i) => Math.max(d, Math.abs(x - was[i])), 0);
    keptChanged = await change(kept, keptValues);
    restoredChanged = await change(restored, restoredValues);
  } finally {
    adam.dispose();
    for (const v of vars.values()) v.dispose();
    tf.dispose([kept, restored]);
  }
  return {
    state: out,
    keptChanged,
    restoredChanged,
    leaked: {
      tensors: tf.memory().numTensors - before.tensors,
      dataIds: tf.engine().backend.numDataIds() - before.dataIds,
    },
  };
}

/** Kernel calls and GPU programs (tfjs's profile names each program) of one step of `count`. */
async function profileStep(count: number): Promise<{ kernels: string[]; programs: number }> {
  const vars = new Map(
    Array.from({ length: count }, (_, i) => [`v${i}`, tf.variable(tf.ones([i + 1]))] as const),
  );
  const adam = new Adam(vars, { weightDecay: 1e-4 });
  const grads = Object.fromEntries([...vars.keys()].map((k, i) => [k, tf.ones([i + 1])]));
  try {
    adam.apply(grads, 1e-3); // the first step copies the weights the ones tensors still share
    const info = await tf.profile(() => adam.apply(grads, 1e-3));
    const programs = info.kernels.reduce(
      (s, k) =>
        s +
        (typeof k.extraInfo === "string" && k.extraInfo.trim() !== ""
          ? k.extraInfo.split(", ").length
          : 0),
      0,
    );
    return { kernels: info.kernels.map((k) => k.name), programs };
  } finally {
    tf.dispose(grads);
    adam.dispose();
    for (const v of vars.values()) v.dispose();
  }
}

/**
 * `MiSslAdamMany` called directly with the same data twice: `x` as the weights and the gradient,
 * one zeros tensor as both moments. Returns the largest relative error of `[w', m', v']` against
 * the update computed here in double precision, and the largest change of `x` and of the zeros.
 */
async function duplicates(): Promise<{ error: number; inputsChanged: number }> {
  const xs = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i) + 0.1);
  const x = tf.tensor(xs), z = tf.zeros([300]);
  const [b1, b2, eps, lr, c2] = [0.9, 0.999, 1e-8, 1e-2, 1 - 0.999];
  const outs = tf.engine().runKernel(
    "MiSslAdamMany",
    { w0: x, g0: x, m0: z, v0: z } as unknown as tf.NamedTensorMap,
    { stepSize: lr / (1 - b1), beta1: b1, beta2: b2, epsilon: eps, c2, weightDecay: 0 },
  ) as tf.Tensor[];
  try {
    const m = Array.from(xs, (g) => (1 - b1) * g);
    const v = Array.from(xs, (g) => (1 - b2) * g * g);
    const w = Array.from(xs, (x, i) => x - m[i] / (Math.sqrt(v[i] / c2) + eps) * lr / (1 - b1));
    let error = 0;
    for (const [k, want] of [w, m, v].entries()) {
      error = Math.max(
        error,
        relativeError(await outs[k].data() as Float32Array, Float32Array.from(want)),
      );
    }
    const xNow = await x.data(), zNow = await z.data();
    let inputsChanged = 0;
    for (let i = 0; i < 300; i++) {
      inputsChanged = Math.max(inputsChanged, Math.abs(xNow[i] - xs[i]), Math.abs(zNow[i]));
    }
    return { error, inputsChanged };
  } finally {
    tf.dispose([x, z, ...outs]);
  }
}

/** What `webgpu_adam_test.ts` checks. */
export interface WebgpuAdamChecks {
  adapter: string;
  /** The device's storage buffers per shader stage (tfjs asks for the default, 8). */
  maxStorageBuffers: number;
  /** The adapter's `maxStorageBuffersPerShaderStage` (runtime/webgpu.ts asks the device for it). */
  adapterMaxStorageBuffers: number;
  /** Per weight decay: largest relative error of weights, first and second moments vs cpu. */
  errors: Record<string, { w: number; m: number; v: number }>;
  /** Per weight decay and backend: the aliasing checks and leaks. */
  aliasing: Record<string, Omit<Run, "state">>;
  /** `MiSslAdamMany` given the same data twice (see `duplicates`). */
  duplicates: { error: number; inputsChanged: number };
  /** One profiled step of 5 variables and of 68 (the U-Net 16x5's count). */
  step5: { kernels: string[]; programs: number };
  step68: { kernels: string[]; programs: number };
  seconds: number;
}

if (import.meta.main) {
  const t0 = performance.now();
  const adapter = await probeAdapter();
  if (adapter === null) throw new Error("no WebGPU adapter");
  const errors: WebgpuAdamChecks["errors"] = {};
  const aliasing: WebgpuAdamChecks["aliasing"] = {};
  for (const wd of [0, 1e-2]) {
    const { state: got, ...gpuRest } = await run("webgpu", wd);
    const { state: ref, ...cpuRest } = await run("cpu", wd);
    const e = (k: number) => Math.max(...got.map((g, i) => relativeError(g[k], ref[i][k])));
    errors[`wd=${wd}`] = { w: e(0), m: e(1), v: e(2) };
    aliasing[`wd=${wd} webgpu`] = gpuRest;
    aliasing[`wd=${wd} cpu`] = cpuRest;
  }
  await initBackend("webgpu");
  const device = (tf.backend() as unknown as {
    device: { limits: { maxStorageBuffersPerShaderStage: number } };
  }).device;
  const result: WebgpuAdamChecks = {
    adapter: describeAdapter(adapter),
    maxStorageBuffers: device.limits.maxStorageBuffersPerShaderStage,
    adapterMaxStorageBuffers: (await (navigator as unknown as {
      gpu: { requestAdapter(): Promise<{ limits: { maxStorageBuffersPerShaderStage: number } }> };
    }).gpu.requestAdapter()).limits.maxStorageBuffersPerShaderStage,
    errors,
    aliasing,
    duplicates: await duplicates(),
    step5: await profileStep(5),
    step68: await profileStep(68),
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
