/**
 * The element-wise SIMD kernels of `runtime/kernels/wasm_pointwise.ts` on wasm: `Exp` and `Log`
 * against float64 `Math.exp` / `Math.log` (relative error, special values), `Softmax`,
 * `Maximum` and `GreaterEqual` with a scalar, `Sub` of a `[..., 1]` tensor and `Sum` over
 * leading axes against the cpu backend, the cases they leave to tfjs, and that they are the kernels in use. The same kernels
 * split between two threads are checked in `tests/_threaded_kernels.ts`.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import { originalKernel } from "../runtime/tfjs_internals.ts";
import {
  wasmExp,
  wasmGreaterEqual,
  wasmLog,
  wasmMaximum,
  wasmSoftmax,
  wasmSub,
  wasmSum,
} from "../runtime/kernels/wasm_training.ts";

await useWasm();

/** Seeded standard normal numbers, identical on every backend. */
function normal(n: number, seed: number, scale = 1): Float32Array {
  return tf.tidy(() =>
    tf.mul(tf.randomNormal([n], 0, 1, "float32", seed), scale).dataSync() as Float32Array
  );
}

/** `f` on cpu and on wasm: values and dtypes of the outputs. */
async function onBoth(f: () => tf.Tensor): Promise<{ cpu: tf.TypedArray; wasm: tf.TypedArray }> {
  const out: tf.TypedArray[] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const t = tf.tidy(f);
    out.push(t.dataSync());
    if (backend === "wasm") assert.equal(t.dtype, tf.tidy(f).dtype);
    t.dispose();
  }
  await tf.setBackend("wasm");
  return { cpu: out[0], wasm: out[1] };
}

function maxRelError(got: ArrayLike<number>, exact: (i: number) => number, floor = 0): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = exact(i);
    worst = Math.max(worst, Math.abs(got[i] - e) / Math.max(Math.abs(e), floor));
  }
  return worst;
}

Deno.test("the element-wise SIMD kernels are the wasm kernels in use", () => {
  assert.equal(tf.getKernel(tf.Exp, "wasm")?.kernelFunc, wasmExp);
  assert.equal(tf.getKernel(tf.Log, "wasm")?.kernelFunc, wasmLog);
  assert.equal(tf.getKernel(tf.Softmax, "wasm")?.kernelFunc, wasmSoftmax);
  assert.equal(tf.getKernel(tf.Maximum, "wasm")?.kernelFunc, wasmMaximum);
  assert.equal(tf.getKernel(tf.GreaterEqual, "wasm")?.kernelFunc, wasmGreaterEqual);
  assert.equal(tf.getKernel(tf.Sub, "wasm")?.kernelFunc, wasmSub);
  assert.equal(tf.getKernel(tf.Sum, "wasm")?.kernelFunc, wasmSum);
});

Deno.test("Exp on wasm is within 2 ulp of exp over its float32 range, exact at the edges", () => {
  // 4 x 10^5 points over [-87.3, 88.3], and lengths with scalar tails
  const n = 400_003;
  const xs = new Float32Array(n);
  for (let i = 0; i < n; i++) xs[i] = -87.3 + (175.6 * i) / (n - 1);
  const got = tf.tidy(() => tf.exp(tf.tensor1d(xs)).dataSync());
  // 2 ulp of float32 is 2^-22 relative, about 2.4e-7
  assert.ok(maxRelError(got, (i) => Math.exp(xs[i])) < 2.4e-7);
  const special = [0, -0, 1, -1, 1e-30, -1e-30, -88, -100, -Infinity, Infinity, 89, NaN, 88.5];
  const out = tf.tidy(() => tf.exp(tf.tensor1d(special)).dataSync());
  special.forEach((x, i) => {
    const e = Math.fround(Math.exp(x));
    if (Number.isNaN(x)) assert.ok(Number.isNaN(out[i]));
    else if (!Number.isFinite(e) || e === 0) assert.equal(out[i], e, `exp(${x})`);
    else if (e < 1.2e-38) assert.ok(out[i] < 1.2e-38, `exp(${x}) = ${out[i]}`);
    else assert.ok(Math.abs(out[i] - e) <= 2.4e-7 * e || x > 88.3, `exp(${x}) = ${out[i]}`);
  });
});

Deno.test("Log on wasm is within 2 ulp of log from subnormals to 3e38, exact at the edges", () => {
  const n = 200_001;
  const xs = new Float32Array(n);
  // log-uniform over [1e-44, 3e38], and around 1 (where log is small: absolute error)
  for (let i = 0; i < n; i++) xs[i] = Math.exp(-101 + (189.7 * i) / (n - 1));
  const near1 = Float32Array.from({ length: 1001 }, (_, i) => 0.5 + i / 1000);
  for (const v of [xs, near1]) {
    const got = tf.tidy(() => tf.log(tf.tensor1d(v)).dataSync());
    // relative to max(|log x|, 1): near x = 1 the float32 input itself limits precision
    const err = maxRelError(got, (i) => Math.log(v[i]), 1);
    assert.ok(err < 2.4e-7, `relative error ${err}`);
  }
  const special = [0, -0, 1, -1, -Infinity, Infinity, NaN, 1e-45, 3.4e38];
  const out = tf.tidy(() => tf.log(tf.tensor1d(special)).dataSync());
  assert.equal(out[0], -Infinity);
  assert.equal(out[1], -Infinity);
  assert.equal(out[2], 0);
  assert.ok(Number.isNaN(out[3]) && Number.isNaN(out[4]) && Number.isNaN(out[6]));
  assert.equal(out[5], Infinity);
  assert.ok(Math.abs(out[7] - Math.log(Math.fround(1e-45))) < 1e-4);
  assert.ok(Math.abs(out[8] - Math.log(Math.fround(3.4e38))) < 1e-4);
});

Deno.test("Softmax over 4 and 2 classes on wasm matches cpu; other class counts go to tfjs", async () => {
  for (const [shape, seed] of [[[4, 33, 17, 4], 1], [[3, 5, 2], 2], [[65536, 4], 3]] as const) {
    const v = normal(shape.reduce((a, b) => a * b, 1), seed, 10);
    const { cpu, wasm } = await onBoth(() => tf.softmax(tf.tensor(v, [...shape])));
    assert.ok(maxRelError(wasm, (i) => cpu[i], 1e-30) < 1e-6);
    // rows sum to 1
    const c = shape.at(-1)!;
    for (let r = 0; r < Math.min(50, wasm.length / c); r++) {
      let s = 0;
      for (let k = 0; k < c; k++) s += wasm[r * c + k];
      assert.ok(Math.abs(s - 1) < 1e-6);
    }
  }
  // large logits (exp would overflow without the max), an odd pixel count of 2 classes, and 3
  // and 8 classes (tfjs's kernel)
  for (
    const [values, shape] of [
      [[1000, 999, -1000, 0], [1, 4]],
      [[1, 2, 3, 4, 5, 6], [3, 2]],
      [[1, 2, 3, 4, 5, 6], [2, 3]],
      [Array.from({ length: 16 }, (_, i) => i / 3), [2, 8]],
    ] as [number[], number[]][]
  ) {
    const { cpu, wasm } = await onBoth(() => tf.softmax(tf.tensor(values, shape)));
    assert.ok(maxRelError(wasm, (i) => cpu[i], 1e-30) < 1e-6, `softmax of ${shape}`);
  }
});

Deno.test("Maximum and GreaterEqual with a scalar on wasm match cpu exactly", async () => {
  const v = normal(4 * 33 * 33 * 4 + 3, 5);
  v[0] = NaN;
  for (const s of [0, 1e-8, -0.5]) {
    const x = () => tf.tensor1d(v);
    for (
      const f of [
        () => tf.maximum(x(), s),
        () => tf.maximum(tf.scalar(s), x()),
        () => tf.maximum(x(), tf.tensor1d([s])),
        () => tf.greaterEqual(x(), s),
      ]
    ) {
      const { cpu, wasm } = await onBoth(f);
      assert.deepEqual(Array.from(wasm.slice(1)), Array.from(cpu.slice(1)));
      assert.equal(Number.isNaN(wasm[0]), Number.isNaN(cpu[0]));
    }
  }
  // a scalar first, and two tensors (tfjs's kernels)
  for (
    const f of [
      () => tf.greaterEqual(tf.scalar(0), tf.tensor1d(v.slice(1, 100))),
      () => tf.maximum(tf.tensor1d(v.slice(1, 100)), tf.tensor1d(v.slice(101, 200))),
    ]
  ) {
    const { cpu, wasm } = await onBoth(f);
    assert.deepEqual(Array.from(wasm), Array.from(cpu));
  }
});

Deno.test("Sub of a [..., 1] tensor on wasm matches cpu exactly; other broadcasts go to tfjs", async () => {
  for (
    const [sa, sb] of [
      [[4, 17, 9, 4], [4, 17, 9, 1]],
      [[5, 3], [5, 1]],
      [[7, 2], [7, 1]],
      [[3, 19], [3, 1]],
      [[3, 4], [4]],
      [[5, 1], [5, 3]],
      [[6], [6]],
    ] as [number[], number[]][]
  ) {
    const av = normal(sa.reduce((a, b) => a * b, 1), 7);
    const bv = normal(sb.reduce((a, b) => a * b, 1), 8);
    const { cpu, wasm } = await onBoth(() => tf.sub(tf.tensor(av, sa), tf.tensor(bv, sb)));
    assert.deepEqual(Array.from(wasm), Array.from(cpu), `${sa} - ${sb}`);
  }
});

Deno.test("the softmax cross-entropy and KL gradients through these kernels match cpu", async () => {
  const logits = normal(2 * 9 * 7 * 4, 11, 3), other = normal(2 * 9 * 7 * 4, 12, 3);
  const loss = (a: tf.Tensor) => {
    const p = tf.softmax(a), q = tf.softmax(tf.tensor(other, [2, 9, 7, 4]));
    const kl = tf.sum(tf.mul(p, tf.sub(tf.log(tf.maximum(p, 1e-8)), tf.log(tf.maximum(q, 1e-8)))));
    return tf.add(kl, tf.neg(tf.sum(tf.logSoftmax(a))));
  };
  const { cpu, wasm } = await onBoth(() => tf.grad(loss)(tf.tensor(logits, [2, 9, 7, 4])));
  let scale = 0, err = 0;
  for (let i = 0; i < cpu.length; i++) {
    scale = Math.max(scale, Math.abs(cpu[i]));
    err = Math.max(err, Math.abs(wasm[i] - cpu[i]));
  }
  assert.ok(err <= 1e-5 * scale, `max error ${err} against ${scale}`);
});

Deno.test("Sum over leading axes on wasm matches tfjs's wasm kernel and cpu", async () => {
  // the warp's [4, N, C] over its corners (a tail of 3 floats), two leading axes, keepDims; then
  // sums the sweep leaves to tfjs (a trailing axis, too few floats per output, all axes)
  const cases: [number[], number | number[], boolean][] = [
    [[4, 1025, 4], 0, false],
    [[2, 3, 4099], [1, 0], false],
    [[4, 2048, 2], 0, true],
    [[4, 1025, 4], 1, false],
    [[4, 10, 4], 0, false],
    [[4, 1025, 4], [0, 1, 2], false],
  ];
  const original = originalKernel(tf.Sum, "wasm")!;
  for (const [k, [shape, axis, keepDims]] of cases.entries()) {
    const v = normal(shape.reduce((a, b) => a * b, 1), 30 + k);
    const { cpu, wasm } = await onBoth(() => tf.sum(tf.tensor(v, shape), axis, keepDims));
    // tfjs's wasm kernel (its own summation order) and cpu (float64 sums) to float32 rounding
    const x = tf.tensor(v, shape);
    const info = original.kernelFunc({
      inputs: { x },
      backend: tf.backend(),
      attrs: { axis, keepDims },
    }) as tf.TensorInfo;
    const reference = tf.engine().makeTensorFromTensorInfo(info);
    const ref = reference.dataSync();
    // to float32 rounding of sums of up to 1025 terms
    const close = (got: ArrayLike<number>, want: ArrayLike<number>) => {
      let err = 0, scale = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      return err <= 1e-5 * scale;
    };
    assert.ok(close(wasm, ref), `${shape} over ${axis}: against tfjs's wasm kernel`);
    assert.ok(close(wasm, cpu), `${shape} over ${axis}: against cpu`);
    assert.deepEqual(tf.tidy(() => tf.sum(x, axis, keepDims).shape), reference.shape);
    tf.dispose([x, reference]);
  }
});
