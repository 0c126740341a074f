/**
 * The numbers `webgpu_test.ts` checks, computed in a child process on the WebGPU adapter (Mesa's
 * lavapipe in CI): every training kernel's forward and gradient on `webgpu` and on `cpu`, an
 * Ours (KL) phantom run on `wasm` and on `webgpu`, checkpoints written on one backend and
 * resumed on the other, and a tensor over the adapter's buffer limit. Prints one JSON object.
 *
 * It runs apart (`deno run --unstable-webgpu --lock=<a copy of deno.lock>`) because importing
 * tfjs-backend-webgpu would otherwise add it to the project's deno.lock, which leaves it out
 * (see runtime/webgpu.ts).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";
import { warpAffine } from "../core/warp.ts";
import { mutualInformation } from "../plugins/regularizers/mutual_information.ts";
import { klConsistency } from "../plugins/regularizers/kl_consistency.ts";
import { mseConsistency } from "../plugins/regularizers/mse_consistency.ts";
import { meanEntropy } from "../plugins/regularizers/entropy_minimization.ts";
import { crossEntropy } from "../plugins/losses/cross_entropy.ts";
import { Adam } from "../core/optimizer.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { tinyRecipe } from "./_tiny.ts";

type T = tf.Tensor;
interface Input {
  shape: number[];
  kind?: "float" | "positive" | "prob" | "label";
}
/** One kernel (or a small composition of them) and which inputs it is differentiated in. */
export interface KernelCase {
  name: string;
  inputs: Input[];
  f: (...x: T[]) => T;
  /** Compare the gradient too (all float inputs). @default {true} */
  grad?: boolean;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function values(inp: Input, r: () => number): Float32Array {
  const n = size(inp.shape);
  const a = new Float32Array(n);
  if (inp.kind === "label") {
    for (let i = 0; i < n; i++) a[i] = Math.floor(r() * 3);
  } else if (inp.kind === "prob") {
    const c = inp.shape[inp.shape.length - 1];
    for (let i = 0; i < n; i += c) {
      let s = 0;
      for (let j = 0; j < c; j++) s += a[i + j] = r() + 0.05;
      for (let j = 0; j < c; j++) a[i + j] /= s;
    }
  } else {
    for (let i = 0; i < n; i++) a[i] = inp.kind === "positive" ? r() + 0.1 : 2 * r() - 1;
  }
  return a;
}

/** Sampling maps: rotation, anisotropic scale and a shift, different per image. */
function affine(b: number, degrees: number): Float64Array {
  const m = new Float64Array(6 * b);
  for (let i = 0; i < b; i++) {
    const t = (degrees + 7 * i) * Math.PI / 180;
    m.set([Math.cos(t) * 1.1, -Math.sin(t), 0.05, Math.sin(t), Math.cos(t) * 0.9, -0.03], 6 * i);
  }
  return m;
}

const X = [2, 6, 6, 3];
const t4 = (x: T) => x as tf.Tensor4D;

/** Every kernel a training step of a recipe runs (and those of evaluation), on small shapes. */
export const KERNEL_CASES: KernelCase[] = [
  {
    name: "conv2d 3x3 same (Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter)",
    inputs: [{ shape: X }, { shape: [3, 3, 3, 4] }],
    f: (x, w) => tf.conv2d(t4(x), t4(w), 1, "same"),
  },
  {
    name: "conv2d 3x3 same on 2048 pixels (the filter gradient in 8 chunks of 256 pixels)",
    inputs: [{ shape: [2, 32, 32, 8] }, { shape: [3, 3, 8, 8] }],
    f: (x, w) => tf.conv2d(t4(x), t4(w), 1, "same"),
  },
  {
    name: "conv2d 3x3 valid, stride 2 (tfjs's own filter gradient)",
    inputs: [{ shape: [2, 7, 7, 3] }, { shape: [3, 3, 3, 4] }],
    f: (x, w) => tf.conv2d(t4(x), t4(w), 2, "valid"),
  },
  {
    name: "conv2d 1x1 + bias (the head)",
    inputs: [{ shape: [2, 6, 6, 4] }, { shape: [1, 1, 4, 3] }, { shape: [3] }],
    f: (x, w, b) => tf.add(tf.conv2d(t4(x), t4(w), 1, "same"), b),
  },
  {
    name: "conv2dTranspose stride 2 (upsampling: transpose)",
    inputs: [{ shape: [2, 3, 3, 4] }, { shape: [2, 2, 3, 4] }],
    f: (x, w) => tf.conv2dTranspose(t4(x), t4(w), [2, 6, 6, 3], 2, "valid"),
  },
  {
    name: "maxPool 2x2 (MaxPool, MaxPoolGrad)",
    inputs: [{ shape: X }],
    f: (x) => tf.maxPool(t4(x), 2, 2, "valid"),
  },
  { name: "relu (Relu, Step)", inputs: [{ shape: X }], f: (x) => tf.relu(x) },
  {
    name: "batch norm, training (moments, Rsqrt, affine)",
    inputs: [{ shape: X }, { shape: [3] }, { shape: [3] }],
    f: (x, g, b) => {
      const { mean, variance } = tf.moments(x, [0, 1, 2]);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
    },
  },
  {
    name: "batch norm per group (5-D moments)",
    inputs: [{ shape: [4, 4, 4, 3] }],
    f: (x) => {
      const y5 = tf.reshape(x, [2, 2, 4, 4, 3]);
      const { mean, variance } = tf.moments(y5, [1, 2, 3], true);
      return tf.mul(tf.sub(y5, mean), tf.rsqrt(tf.add(variance, 1e-5)));
    },
  },
  {
    name: "batchNorm, inference (FusedBatchNorm)",
    inputs: [{ shape: X }, { shape: [3] }, { shape: [3], kind: "positive" }, { shape: [3] }, {
      shape: [3],
    }],
    f: (x, m, v, b, g) => tf.batchNorm(x, m, v, b, g, 1e-5),
    grad: false,
  },
  {
    name: "fused conv2d + bias + relu, inference (FusedConv2D)",
    inputs: [{ shape: X }, { shape: [3, 3, 3, 4] }, { shape: [4] }],
    f: (x, w, b) =>
      tf.fused.conv2d({
        x: t4(x),
        filter: t4(w),
        strides: 1,
        pad: "same",
        bias: b,
        activation: "relu",
      }),
    grad: false,
  },
  {
    name: "resizeNearestNeighbor x2 (upsampling: nearest)",
    inputs: [{ shape: [2, 3, 3, 3] }],
    f: (x) => tf.image.resizeNearestNeighbor(t4(x), [6, 6]),
  },
  {
    name: "resizeBilinear x2 (upsampling: bilinear)",
    inputs: [{ shape: [2, 3, 3, 3] }],
    f: (x) => tf.image.resizeBilinear(t4(x), [6, 6]),
  },
  {
    name: "concat and split (channels, batch)",
    inputs: [{ shape: X }, { shape: [2, 6, 6, 2] }],
    f: (a, b) => {
      const [p, q] = tf.split(tf.concat([a, b], 3), [1, 1], 0);
      return tf.concat([tf.mul(p, 2), q], 0);
    },
  },
  {
    name: "softmax, logSoftmax, log, exp",
    inputs: [{ shape: X }],
    f: (x) => tf.add(tf.add(tf.softmax(x), tf.logSoftmax(x)), tf.log(tf.add(tf.exp(x), 1))),
  },
  {
    name: "element-wise (sqrt, pow, square, div, maximum)",
    inputs: [{ shape: X, kind: "positive" }, { shape: X }],
    f: (a, b) =>
      tf.add(
        tf.div(tf.sqrt(a), tf.add(tf.square(b), 1)),
        tf.add(tf.pow(a, 1.5), tf.maximum(b, 0.1)),
      ),
  },
  {
    name: "cross-entropy (OneHot, logSoftmax, mean)",
    inputs: [{ shape: X }, { shape: [2, 6, 6], kind: "label" }],
    f: (x, y) => crossEntropy(t4(x), y as tf.Tensor3D),
  },
  {
    name: "affine warp, bilinear (GatherV2; gradient UnsortedSegmentSum)",
    inputs: [{ shape: X }],
    f: (x) => warpAffine(t4(x), affine(2, 25), "bilinear"),
  },
  {
    name: "affine warp, bilinear, 2 x 16 x 16 x 4",
    inputs: [{ shape: [2, 16, 16, 4] }],
    f: (x) => warpAffine(t4(x), affine(2, 40), "bilinear"),
  },
  {
    name: "affine warp, nearest",
    inputs: [{ shape: X }],
    f: (x) => warpAffine(t4(x), affine(2, -15), "nearest"),
  },
  {
    name: "mutual information, 3x3 window (PadV2, Slice, BatchMatMul, Transpose)",
    inputs: [{ shape: X, kind: "prob" }, { shape: X, kind: "prob" }],
    f: (p, q) => mutualInformation(t4(p), t4(q), { radius: 1 }),
  },
  {
    name: "KL consistency",
    inputs: [{ shape: X, kind: "prob" }, { shape: X, kind: "prob" }],
    f: (p, q) => klConsistency(t4(p), t4(q)),
  },
  {
    name: "MSE consistency",
    inputs: [{ shape: X, kind: "prob" }, { shape: X, kind: "prob" }],
    f: (p, q) => mseConsistency(t4(p), t4(q)),
  },
  { name: "entropy", inputs: [{ shape: X, kind: "prob" }], f: (p) => meanEntropy(t4(p)) },
  {
    name: "dropout, seeded",
    inputs: [{ shape: X }],
    f: (x) => tf.dropout(x, 0.3, undefined, 17),
  },
  { name: "argMax (evaluation)", inputs: [{ shape: X }], f: (x) => tf.argMax(x, 3), grad: false },
];

/** Forward values, then the gradient in each float input, of `c` on `backend`. */
async function evaluate(backend: "cpu" | "webgpu", c: KernelCase, seed: number) {
  await initBackend(backend);
  const r = rng(seed);
  const xs = c.inputs.map((i) =>
    i.kind === "label"
      ? tf.tensor(values(i, r), i.shape, "int32")
      : tf.tensor(values(i, r), i.shape)
  );
  const y = tf.tidy(() => c.f(...xs));
  const out = [Float32Array.from(await y.data())];
  if (c.grad !== false) {
    const dy = tf.tensor(values({ shape: y.shape }, r), y.shape);
    const diff = c.inputs.map((i, k) => i.kind === "label" ? -1 : k).filter((k) => k >= 0);
    const grads = tf.grads((...a: T[]) => {
      const all = [...xs];
      diff.forEach((k, j) => all[k] = a[j]);
      return c.f(...all);
    })(diff.map((k) => xs[k]), dy);
    for (const g of grads) out.push(Float32Array.from(await g.data()));
    tf.dispose([dy, ...grads]);
  }
  tf.dispose([y, ...xs]);
  return out;
}

/**
 * max |a - b| / max(max |b|, 0.01): the error relative to the reference's scale (a loss near
 * zero, such as MI, is a difference of terms of order 0.01 and more).
 */
export function relativeError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let d = 0, m = 0.01;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/**
 * Variables of odd sizes for the Adam check: within one workgroup, across several, and (the
 * last) more than 65,535 workgroups of 128, which the webgpu kernel spreads over two dimensions.
 */
const ADAM_SHAPES = [[1], [3, 3, 5, 7], [13, 131], [8_388_617]];

/** The weights and both moments after 3 Adam steps (weight decay on) on `backend`, per variable. */
async function adamOn(backend: "cpu" | "webgpu"): Promise<Float32Array[][]> {
  await initBackend(backend);
  const r = rng(5);
  const vars = new Map(
    ADAM_SHAPES.map((shape, i) => {
      const name = `w${i}`;
      return [
        name,
        tf.variable(tf.tensor(values({ shape }, r), shape), true, `adam-${backend}-${i}`),
      ];
    }),
  );
  const adam = new Adam(vars, { weightDecay: 1e-4 });
  try {
    for (let s = 0; s < 3; s++) {
      const grads = Object.fromEntries(
        ADAM_SHAPES.map((shape, i) => [`w${i}`, tf.tensor(values({ shape }, r), shape)]),
      );
      adam.apply(grads, 1e-2);
      tf.dispose(grads);
    }
    const state = adam.stateVariables();
    const out: Float32Array[][] = [];
    for (const [name, v] of vars) {
      out.push([
        Float32Array.from(await v.data()),
        Float32Array.from(await state.get(`adam/m/${name}`)!.data()),
        Float32Array.from(await state.get(`adam/v/${name}`)!.data()),
      ]);
    }
    return out;
  } finally {
    adam.dispose();
    for (const v of vars.values()) v.dispose();
  }
}

/** The kernels one Adam update of two variables runs on the current backend, by name. */
async function adamKernels(): Promise<string[]> {
  const vars = new Map([["a", tf.variable(tf.ones([5, 3]))], ["b", tf.variable(tf.ones([7]))]]);
  const adam = new Adam(vars);
  try {
    const grads = { a: tf.ones([5, 3]), b: tf.ones([7]) };
    const info = await tf.profile(() => adam.apply(grads, 1e-3));
    tf.dispose(grads);
    return info.kernels.map((k) => k.name);
  } finally {
    adam.dispose();
    for (const v of vars.values()) v.dispose();
  }
}

const quiet = { progress: false, log: () => {} };
const ITERATIONS = 4;

/** Losses of the 4 iterations of the tiny Ours (KL) phantom recipe on `backend`. */
async function phantomRun(backend: "wasm" | "webgpu"): Promise<Record<string, number>[]> {
  const trainer = await Trainer.create(tinyRecipe({ backend }), { ...quiet, out: null });
  try {
    const out: Record<string, number>[] = [];
    for (let i = 0; i < ITERATIONS; i++) out.push(await trainer.step());
    return out;
  } finally {
    trainer.dispose();
  }
}

/** 2 iterations on `from`, a checkpoint, then 2 on `to` from it: the last 2 iterations' losses. */
async function resumedRun(
  from: "wasm" | "webgpu",
  to: "wasm" | "webgpu",
  dir: string,
): Promise<Record<string, number>[]> {
  const first = await Trainer.create(tinyRecipe({ backend: from }), { ...quiet, out: dir });
  try {
    await first.step();
    await first.step();
    await first.saveCheckpoint("latest.ckpt");
  } finally {
    first.dispose();
  }
  const second = await Trainer.create(tinyRecipe({ backend: to }), { ...quiet, out: null });
  try {
    await second.loadCheckpoint(`${dir}/latest.ckpt`);
    if (second.iteration !== 2) throw new Error(`resumed at ${second.iteration}, not 2`);
    return [await second.step(), await second.step()];
  } finally {
    second.dispose();
  }
}

/** What `webgpu_test.ts` asserts. */
export interface WebgpuChecks {
  adapter: string;
  kernels: { name: string; errors: number[]; ms: number }[];
  /** Largest relative error of the weights, first and second moments after 3 steps. */
  adam: { weights: number; m: number; v: number };
  /** The kernels one Adam update of two variables ran on webgpu (`kernels: custom`). */
  adamKernels: string[];
  /** The same with `kernels: builtin` (tfjs's element-wise kernels). */
  adamKernelsBuiltin: string[];
  phantom: { wasm: Record<string, number>[]; webgpu: Record<string, number>[] };
  checkpoint: { webgpuToWasm: Record<string, number>[]; wasmToWebgpu: Record<string, number>[] };
  limit: { name: string; message: string };
  seconds: number;
}

if (import.meta.main) {
  const t0 = performance.now();
  registerBuiltins();
  const adapter = await probeAdapter();
  if (adapter === null) throw new Error("no WebGPU adapter");
  const kernels: WebgpuChecks["kernels"] = [];
  for (const [i, c] of KERNEL_CASES.entries()) {
    const t = performance.now();
    const ref = await evaluate("cpu", c, 100 + i);
    const got = await evaluate("webgpu", c, 100 + i);
    kernels.push({
      name: c.name,
      errors: ref.map((r, k) => relativeError(got[k], r)),
      ms: Math.round(performance.now() - t),
    });
  }
  const adamGot = await adamOn("webgpu");
  const adamKernelNames = await adamKernels();
  const adamRef = await adamOn("cpu");
  const adamError = (k: number) =>
    Math.max(...adamGot.map((got, i) => relativeError(got[k], adamRef[i][k])));
  const adam = { weights: adamError(0), m: adamError(1), v: adamError(2) };
  const phantom = { wasm: await phantomRun("wasm"), webgpu: await phantomRun("webgpu") };
  const dir = await Deno.makeTempDir();
  let checkpoint: WebgpuChecks["checkpoint"];
  try {
    checkpoint = {
      webgpuToWasm: await resumedRun("webgpu", "wasm", `${dir}/a`),
      wasmToWebgpu: await resumedRun("wasm", "webgpu", `${dir}/b`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // A tensor one float over the adapter's storage-binding limit (128 MiB on lavapipe).
  await initBackend("webgpu");
  const floats = Math.floor(adapter.maxStorageBufferBindingSize / 4) + 1;
  let limit = { name: "none", message: "no error" };
  try {
    const x = tf.fill([floats], 1);
    await tf.sum(x).data();
  } catch (error) {
    limit = { name: (error as Error).name, message: (error as Error).message };
  }
  // last: `builtin` puts back tfjs's kernels for the rest of the process
  await initBackend("webgpu", { kernels: "builtin" });
  const adamKernelsBuiltin = await adamKernels();
  const result: WebgpuChecks = {
    adapter: describeAdapter(adapter),
    kernels,
    adam,
    adamKernels: adamKernelNames,
    adamKernelsBuiltin,
    phantom,
    checkpoint,
    limit,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
  console.log(JSON.stringify(result));
}
