import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import {
  callListJobCount,
  gemmGather,
  gemmKernels,
  setGemmConvEnabled,
} from "../runtime/kernels/wasm_conv.ts";
import {
  tnTileProductCount,
  wasmBatchMatMul,
  wasmGatherV2,
  wasmMultiply,
  wasmPadV2,
  wasmSlice,
} from "../runtime/kernels/wasm_training.ts";
import { batchNormRelu } from "../runtime/kernels/batch_norm_relu.ts";
import { buildModule, Fn, markFixedSize, memoryImport } from "../runtime/kernels/wasm_asm.ts";
import { benchOursKlStep } from "../app/bench.ts";
import { registerBuiltins } from "../plugins/mod.ts";

// The trainer registers no plugins: the built-ins come from here.
registerBuiltins();

await useWasm();

type Shape4 = [number, number, number, number];
type Pad = "same" | "valid" | [[0, 0], [number, number], [number, number], [0, 0]];

/** Seeded standard normal numbers, identical on every backend. */
function normal(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, 0, 1, "float32", seed).dataSync() as Float32Array);
}

/** Runs `f` on cpu and on wasm; asserts equal shapes and max |wasm - cpu| <= tol * max |cpu|. */
async function assertBackendsAgree(f: () => tf.Tensor | tf.Tensor[], tol = 1e-5): Promise<void> {
  const results: { shape: number[]; values: Float32Array }[][] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const out = tf.tidy(() => {
      const r = f();
      return Array.isArray(r) ? r : [r];
    });
    results.push(out.map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array })));
    tf.dispose(out);
  }
  await tf.setBackend("wasm");
  const [cpu, wasm] = results;
  assert.equal(wasm.length, cpu.length);
  cpu.forEach((expected, k) => {
    assert.deepEqual(wasm[k].shape, expected.shape, `output ${k}: shapes differ`);
    let scale = 0, err = 0;
    for (let i = 0; i < expected.values.length; i++) {
      scale = Math.max(scale, Math.abs(expected.values[i]));
      err = Math.max(err, Math.abs(wasm[k].values[i] - expected.values[i]));
    }
    if (expected.values.length > 0) assert.ok(scale > 0, `output ${k}: the reference is all zeros`);
    assert.ok(err <= tol * scale, `output ${k}: max abs error ${err} exceeds ${tol} * ${scale}`);
  });
}

Deno.test("the SIMD GEMM kernels are in use on wasm", () => {
  assert.notEqual(gemmKernels(tf.backend() as never), null);
});

interface GemmCase {
  x: Shape4;
  k: number;
  co: number;
  pad: Pad;
}

// Output channels a multiple of 8 (the GEMM kernels' tiles); input channels 1 (the first
// layer's filter gradient), odd, a multiple of 4 or not; filters 1x1 to 5x5; odd image sizes.
const gemmCases: GemmCase[] = [
  { x: [2, 9, 7, 8], k: 3, co: 16, pad: "same" },
  { x: [3, 5, 6, 4], k: 3, co: 8, pad: "valid" },
  { x: [1, 6, 6, 12], k: 5, co: 24, pad: "same" },
  { x: [2, 5, 5, 1], k: 3, co: 16, pad: "same" },
  { x: [2, 5, 7, 3], k: 3, co: 8, pad: "same" },
  { x: [2, 5, 5, 16], k: 1, co: 8, pad: "valid" },
  { x: [2, 7, 9, 5], k: 3, co: 8, pad: [[0, 0], [2, 0], [1, 2], [0, 0]] },
  { x: [13, 4, 5, 8], k: 3, co: 32, pad: "same" },
];

for (const c of gemmCases) {
  const name = `${c.x.join("x")}, ${c.k}x${c.k} filter, ${c.x[3]} -> ${c.co} channels, ${
    typeof c.pad === "string" ? c.pad : JSON.stringify(c.pad.slice(1, 3))
  } padding`;
  Deno.test(`GEMM conv2d and both its gradients match cpu (${name})`, async () => {
    const fShape: Shape4 = [c.k, c.k, c.x[3], c.co];
    const xv = normal(c.x, 1), fv = normal(fShape, 2);
    await assertBackendsAgree(() => {
      const x = tf.tensor4d(xv, c.x), f = tf.tensor4d(fv, fShape);
      const y = tf.conv2d(x, f, 1, c.pad);
      const w = tf.randomNormal(y.shape, 0, 1, "float32", 3);
      const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, c.pad), w))
      )([x, f]);
      return [y, dx, df];
    });
  });
}

Deno.test("GEMM fused conv2d with bias and ReLU matches cpu", async () => {
  const xv = normal([2, 6, 5, 4], 4), fv = normal([3, 3, 4, 16], 5), bv = normal([16], 6);
  await assertBackendsAgree(() => {
    const x = tf.tensor4d(xv, [2, 6, 5, 4]), f = tf.tensor4d(fv, [3, 3, 4, 16]);
    const bias = tf.tensor1d(bv);
    return [
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "same", bias, activation: "relu" }),
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "valid", bias }),
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: "same", activation: "relu" }),
    ];
  });
});

Deno.test("the GEMM and XNNPACK convolutions agree on wasm", () => {
  tf.tidy(() => {
    const x = tf.randomNormal([3, 11, 10, 16], 0, 1, "float32", 7) as tf.Tensor4D;
    const f = tf.randomNormal([3, 3, 16, 32], 0, 1, "float32", 8) as tf.Tensor4D;
    const a = tf.conv2d(x, f, 1, "same").dataSync();
    setGemmConvEnabled(false);
    try {
      const b = tf.conv2d(x, f, 1, "same").dataSync();
      let err = 0;
      for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
      assert.ok(err < 1e-4, `max abs difference ${err}`);
    } finally {
      setGemmConvEnabled(true);
    }
  });
});

Deno.test("GatherV2 on wasm (heap row copies) matches cpu on random shapes", async () => {
  // Rows of 1 to 19 elements (vector and scalar tails), 1-D and 2-D indices with repeats, int32
  // data, and the warp's shape (4 corners x pixels, 1 and 4 channels).
  const cases: { x: number[]; idx: number[]; dtype?: "int32" }[] = [
    { x: [7, 1], idx: [20] },
    { x: [5, 3], idx: [4, 6] },
    { x: [9, 4], idx: [33] },
    { x: [6, 5], idx: [2, 3, 5] },
    { x: [11, 2, 4], idx: [17] },
    { x: [4, 19], idx: [12] },
    { x: [13], idx: [40] },
    { x: [8, 6], idx: [25], dtype: "int32" },
    { x: [2 * 16 * 16, 4], idx: [4 * 2 * 16 * 16] },
    { x: [4 * 64 * 64, 1], idx: [4 * 4 * 64 * 64] },
  ];
  for (const [k, c] of cases.entries()) {
    const n = c.x[0];
    const size = c.x.reduce((a, b) => a * b, 1);
    const xv = normal([size], 10 + k);
    const iv = Int32Array.from(
      { length: c.idx.reduce((a, b) => a * b, 1) },
      (_, i) => (i * 7919 + k * 31) % n,
    );
    await assertBackendsAgree(() => {
      const x = c.dtype === "int32"
        ? tf.tensor(Int32Array.from(xv, (v) => Math.round(100 * v)), c.x, "int32")
        : tf.tensor(xv, c.x);
      const g = tf.gather(x, tf.tensor(iv, c.idx, "int32"));
      return c.dtype === "int32" ? tf.cast(g, "float32") : g;
    }, 0);
  }
  // and its gradient (UnsortedSegmentSum) through the warp's pattern: gather, weigh, sum
  const xv = normal([30 * 3], 5);
  const iv = Int32Array.from({ length: 4 * 30 }, (_, i) => (i * 13) % 30);
  const wv = normal([4 * 30], 6);
  await assertBackendsAgree(() =>
    tf.grad((x: tf.Tensor) =>
      tf.sum(tf.mul(tf.gather(x, tf.tensor1d(iv, "int32")), tf.tensor2d(wv, [4 * 30, 1])))
    )(tf.tensor2d(xv, [30, 3]))
  );
});

Deno.test("the heap GatherV2 is the wasm kernel in use, and falls back outside its case", () => {
  assert.equal(tf.getKernel(tf.GatherV2, "wasm")?.kernelFunc, wasmGatherV2);
  const backend = tf.backend() as never;
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
  const inRange = tf.tensor1d([2, 0], "int32"), outOfRange = tf.tensor1d([3], "int32");
  const info = (t: tf.Tensor) => ({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
  const out = gemmGather(backend, info(x), info(inRange));
  assert.notEqual(out, null, "the row copies apply to an axis-0 float32 gather");
  (tf.backend() as unknown as { disposeData(id: unknown): void }).disposeData(out!.dataId);
  assert.equal(gemmGather(backend, info(x), info(outOfRange)), null, "out of range: tfjs's");
  assert.deepEqual(Array.from(tf.gather(x, inRange).dataSync()), [5, 6, 1, 2]);
  assert.deepEqual(Array.from(tf.gather(x, tf.tensor1d([1], "int32"), 1).dataSync()), [2, 4, 6]);
  tf.dispose([x, inRange, outOfRange]);
});

Deno.test("Slice and constant PadV2 on wasm (row copies) match cpu on random shapes", async () => {
  // Ranks 1 to 5, whole and partial axes in every position, the MI's shifted windows, int32.
  const cases: { shape: number[]; begin: number[]; size: number[]; pad: [number, number][] }[] = [
    { shape: [17], begin: [3], size: [9], pad: [[2, 5]] },
    { shape: [5, 7], begin: [1, 0], size: [3, 7], pad: [[0, 0], [1, 3]] },
    { shape: [5, 7], begin: [0, 2], size: [5, 4], pad: [[2, 1], [0, 0]] },
    {
      shape: [4, 10, 10, 4],
      begin: [0, 1, 2, 0],
      size: [4, 8, 8, 4],
      pad: [[0, 0], [1, 1], [1, 1], [0, 0]],
    },
    {
      shape: [3, 6, 5, 3],
      begin: [1, 0, 0, 1],
      size: [2, 6, 5, 2],
      pad: [[1, 0], [0, 2], [3, 0], [0, 1]],
    },
    {
      shape: [2, 3, 4, 5, 6],
      begin: [0, 1, 0, 2, 0],
      size: [2, 2, 4, 3, 6],
      pad: [[0, 1], [0, 0], [2, 2], [0, 0], [0, 0]],
    },
    { shape: [3, 4], begin: [0, 0], size: [3, 4], pad: [[0, 0], [0, 0]] },
  ];
  for (const [k, c] of cases.entries()) {
    const v = normal([c.shape.reduce((a, b) => a * b, 1)], 40 + k);
    await assertBackendsAgree(() => {
      const x = tf.tensor(v, c.shape);
      const xi = tf.tensor(Int32Array.from(v, (e) => Math.round(50 * e)), c.shape, "int32");
      return [
        tf.slice(x, c.begin, c.size),
        tf.pad(x, c.pad),
        tf.pad(x, c.pad, 1.5),
        tf.cast(tf.slice(xi, c.begin, c.size), "float32"),
        tf.cast(tf.pad(xi, c.pad, 7), "float32"),
        // the gradient of a slice is a pad
        tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.slice(t, c.begin, c.size))))(x),
      ];
    }, 0);
  }
});

Deno.test("the row-copy Slice and PadV2 are the wasm kernels in use", () => {
  assert.equal(tf.getKernel(tf.Slice, "wasm")?.kernelFunc, wasmSlice);
  assert.equal(tf.getKernel(tf.PadV2, "wasm")?.kernelFunc, wasmPadV2);
});

Deno.test("Multiply by a [..., 1] factor on wasm (one sweep) matches cpu on random shapes", async () => {
  // Rows of 2 to 19 floats (vector and scalar tails), either operand the narrow one, ranks 1-4,
  // the warp's shape; and shapes outside the case (tfjs's kernel), exact in every case.
  const cases: [number[], number[]][] = [
    [[5, 3], [5, 1]],
    [[5, 1], [5, 3]],
    [[2], [1]],
    [[2, 3, 7, 5], [2, 3, 7, 1]],
    [[4, 6, 1], [4, 6, 9]],
    [[9, 4], [9, 1]],
    [[3, 19], [3, 1]],
    [[4, 33, 33, 1], [4, 33, 33, 4]],
    [[4 * 4 * 64 * 64, 4], [4 * 4 * 64 * 64, 1]],
    [[3, 4], [4]],
    [[3, 1], [3, 1]],
    [[3, 4], [1, 4]],
  ];
  for (const [k, [sa, sb]] of cases.entries()) {
    const av = normal([sa.reduce((a, b) => a * b, 1)], 40 + k);
    const bv = normal([sb.reduce((a, b) => a * b, 1)], 60 + k);
    await assertBackendsAgree(() => tf.mul(tf.tensor(av, sa), tf.tensor(bv, sb)), 0);
  }
  // its gradient (a [..., 1] factor's is a sum over the last axis)
  const xv = normal([7 * 5], 1), wv = normal([7], 2);
  await assertBackendsAgree(() =>
    tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.mul(x, w), x)))([
      tf.tensor2d(xv, [7, 5]),
      tf.tensor2d(wv, [7, 1]),
    ])
  );
});

Deno.test("BatchMatMul with a long dimension on wasm (SIMD sweeps) matches cpu", async () => {
  // A^T B over a long inner dimension (the MI's joints), tall products A W and A W^T (their
  // gradients), odd sizes (vector and scalar tails), rank 3 with a batch of 1, and shapes left
  // to tfjs's kernel. Float32 sums of up to 5,000 terms: 1e-5 of the largest output.
  const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { a: [4099, 4], b: [4099, 36], ta: true, tb: false },
    { a: [5003, 3], b: [5003, 7], ta: true, tb: false },
    { a: [1, 4100, 5], b: [1, 4100, 1], ta: true, tb: false },
    { a: [4097, 4], b: [4, 37], ta: false, tb: false },
    { a: [4101, 36], b: [4, 36], ta: false, tb: true },
    { a: [1, 4103, 9], b: [1, 3, 9], ta: false, tb: true },
    { a: [4096, 2], b: [2, 1], ta: false, tb: false },
    { a: [30, 4], b: [30, 6], ta: true, tb: false },
    { a: [2, 40, 4], b: [2, 4, 5], ta: false, tb: false },
    { a: [4099, 4], b: [36, 4099], ta: true, tb: true },
    // A^T B on register tiles (n a multiple of 4): 8 x 1 (the U-Net head's filter gradient),
    // 4 x 3 and 1 x 3 then 4 x 2 and 1 x 2 (m = 13, n = 20), 4 x 2 and 2 x 2 (m = 6, n = 8)
    { a: [4099, 8], b: [4099, 4], ta: true, tb: false },
    { a: [4101, 13], b: [4101, 20], ta: true, tb: false },
    { a: [1, 4100, 6], b: [1, 4100, 8], ta: true, tb: false },
  ];
  const tiled = tnTileProductCount();
  for (const [k, c] of cases.entries()) {
    const av = normal([c.a.reduce((x, y) => x * y, 1)], 80 + k);
    const bv = normal([c.b.reduce((x, y) => x * y, 1)], 90 + k);
    await assertBackendsAgree(
      () => tf.matMul(tf.tensor(av, c.a), tf.tensor(bv, c.b), c.ta, c.tb),
      1e-5,
    );
  }
  // [4099, 4]^T [4099, 36] and the three above, on wasm
  assert.equal(tnTileProductCount() - tiled, 4, "A^T B products on the register tiles");
  // the MI's pattern and both gradients
  const pv = normal([4200 * 4], 7), qv = normal([4200 * 12], 8), gv = normal([4 * 12], 9);
  await assertBackendsAgree(
    () =>
      tf.grads((p: tf.Tensor, q: tf.Tensor) =>
        tf.sum(tf.mul(tf.matMul(p, q, true, false), tf.tensor2d(gv, [4, 12])))
      )([tf.tensor2d(pv, [4200, 4]), tf.tensor2d(qv, [4200, 12])]),
    1e-5,
  );
});

Deno.test("float32 UnsortedSegmentSum on wasm (one sweep) matches cpu, ids out of range dropped", async () => {
  for (const [k, inner] of [1, 3, 4, 5, 9, 16].entries()) {
    const rows = 600 + 17 * k, segments = 90 + k;
    const xv = normal([rows * inner], 20 + k);
    const ids = Int32Array.from({ length: rows }, (_, i) => ((i * 7919 + k) % (segments + 9)) - 4);
    await assertBackendsAgree(
      () =>
        tf.unsortedSegmentSum(tf.tensor2d(xv, [rows, inner]), tf.tensor1d(ids, "int32"), segments),
      1e-6,
    );
  }
});

Deno.test("the sweep Multiply, BatchMatMul, UnsortedSegmentSum and batch norm are in use on wasm", () => {
  assert.equal(tf.getKernel(tf.Multiply, "wasm")?.kernelFunc, wasmMultiply);
  assert.equal(tf.getKernel(tf.BatchMatMul, "wasm")?.kernelFunc, wasmBatchMatMul);
  const uses = (what: string, f: () => tf.Tensor | tf.Tensor[], jobs: number) => {
    const before = callListJobCount();
    tf.dispose(tf.tidy(f));
    assert.equal(callListJobCount() - before, jobs, `${what}: jobs of the kernel module`);
  };
  uses("Multiply", () => tf.mul(tf.ones([6, 4]), tf.ones([6, 1])), 1);
  uses("Multiply outside its case", () => tf.mul(tf.ones([6, 4]), tf.ones([4])), 0);
  uses("BatchMatMul", () => tf.matMul(tf.ones([4096, 4]), tf.ones([4096, 9]), true, false), 1);
  uses("BatchMatMul outside its case", () => tf.matMul(tf.ones([6, 4]), tf.ones([4, 9])), 0);
  uses(
    "UnsortedSegmentSum",
    () => tf.unsortedSegmentSum(tf.ones([6, 4]), tf.zeros([6], "int32"), 2),
    1,
  );
  // forward: sums, centred squares, apply; backward: sums, apply
  uses(
    "batch norm",
    () => batchNormRelu(tf.ones([2, 4, 4, 8]) as tf.Tensor4D, tf.ones([8]), tf.zeros([8])).y,
    3,
  );
  uses(
    "batch norm and its gradient",
    () =>
      tf.grad((x: tf.Tensor) => batchNormRelu(x as tf.Tensor4D, tf.ones([8]), tf.zeros([8])).y)(
        tf.ones([2, 4, 4, 8]),
      ),
    5,
  );
});

Deno.test("Concat and SplitV on wasm match cpu along every axis", async () => {
  const a = normal([2, 3, 4, 8], 1), b = normal([2, 3, 4, 3], 2), c = normal([1, 3, 4, 8], 3);
  await assertBackendsAgree(() => {
    const ta = tf.tensor4d(a, [2, 3, 4, 8]);
    return [
      tf.concat([ta, tf.tensor4d(b, [2, 3, 4, 3])], 3),
      tf.concat([ta, tf.tensor4d(c, [1, 3, 4, 8])], 0),
      tf.concat([ta, ta, ta], 1),
      ...tf.split(ta, [3, 5], 3),
      ...tf.split(ta, [1, 1], 0),
      ...tf.split(ta, [2, 1, 0], 1),
      ...tf.split(ta, 2, 2),
    ];
  });
});

Deno.test("nearest x2 upsampling on wasm matches cpu, and its gradient sums 2x2 blocks", async () => {
  const xv = normal([3, 3, 5, 8], 1);
  await assertBackendsAgree(() =>
    tf.image.resizeNearestNeighbor(tf.tensor4d(xv, [3, 3, 5, 8]), [6, 10])
  );
  // The cpu backend's ResizeNearestNeighborGrad is wrong for batches of more than one image:
  // compare with the definition instead.
  tf.tidy(() => {
    const dy = tf.randomNormal([3, 6, 10, 8], 0, 1, "float32", 2);
    const g = tf.grad((x: tf.Tensor) =>
      tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [6, 10]), dy))
    )(tf.tensor4d(xv, [3, 3, 5, 8]));
    const expected = tf.sum(tf.reshape(dy, [3, 3, 2, 5, 2, 8]), [2, 4]);
    const e = expected.dataSync(), a = g.dataSync();
    for (let i = 0; i < e.length; i++) assert.ok(Math.abs(a[i] - e[i]) < 1e-5, `at ${i}`);
  });
});

Deno.test("the gradient of 2x2 max pooling on wasm matches cpu, ties included", async () => {
  const xv = normal([2, 6, 4, 8], 1), dyv = normal([2, 3, 2, 8], 2);
  await assertBackendsAgree(() =>
    tf.grad((x: tf.Tensor) =>
      tf.sum(
        tf.mul(tf.maxPool(tf.relu(x) as tf.Tensor4D, 2, 2, "valid"), tf.tensor(dyv, [2, 3, 2, 8])),
      )
    )(tf.tensor4d(xv, [2, 6, 4, 8]))
  );
});

Deno.test("Identity and same-type Cast share data on wasm; other casts convert", () => {
  tf.tidy(() => {
    const x = tf.tensor1d([1.5, -2.25, 3]);
    const before = tf.memory().numDataBuffers;
    const y = tf.clone(x), z = tf.cast(x, "float32");
    assert.equal(tf.memory().numDataBuffers, before);
    assert.deepEqual([...y.dataSync()], [1.5, -2.25, 3]);
    assert.deepEqual([...z.dataSync()], [1.5, -2.25, 3]);
    assert.deepEqual([...tf.cast(x, "int32").dataSync()], [1, -2, 3]);
    x.dispose();
    assert.deepEqual([...y.dataSync()], [1.5, -2.25, 3], "the clone outlives its source");
  });
});

Deno.test("back-propagation frees as it goes and gives tfjs's gradients", () => {
  const engine = tf.engine() as unknown as {
    gradients: (...a: unknown[]) => { value: tf.Tensor; grads: tf.Tensor[] };
  };
  const original = Object.getPrototypeOf(engine).gradients as typeof engine.gradients;
  const x = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 1);
  const w = tf.randomNormal([3, 3, 4, 8], 0, 1, "float32", 2);
  const f = () =>
    tf.sum(tf.square(tf.relu(tf.conv2d(tf.mul(x, x) as tf.Tensor4D, w as tf.Tensor4D, 1, "same"))));
  try {
    const mine = tf.tidy(() => engine.gradients(f, [x, w]).grads.map((g) => g.dataSync()));
    const ref = tf.tidy(() => original.call(engine, f, [x, w]).grads.map((g) => g.dataSync()));
    assert.deepEqual(mine, ref);
    // higher-order gradients still work
    const g2 = tf.tidy(() =>
      tf.grad((a: tf.Tensor) => tf.sum(tf.grad((b: tf.Tensor) => tf.sum(tf.pow(b, 3)))(a)))(
        tf.tensor1d([1, 2]),
      ).dataSync()
    );
    assert.deepEqual([...g2], [6, 12]);
    const before = tf.memory().numTensors;
    const { value, grads } = engine.gradients(f, [x, w]);
    tf.dispose([value, ...grads]);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    tf.dispose([x, w]);
  }
});

Deno.test("the step benchmark measures the trainer and leaks no tensors across steps", async () => {
  const options = { size: 32, labeled: 2, unlabeled: 2, base: 4, depth: 3, warmup: 1 };
  const one = await benchOursKlStep({ ...options, steps: 1 });
  const three = await benchOursKlStep({ ...options, steps: 3 });
  assert.equal(one.backend, "wasm");
  assert.equal(three.step_ms.length, 3);
  assert.equal(one.tensors_after, three.tensors_after);
  // U-Net 4x3 with 1 input channel and 4 classes: the PyTorch peer's UNet(4, 3, 4) has 8304
  assert.equal(one.params, 8304);
  for (const k of ["forward_ms", "step_ms_median", "peak_rss_mb"] as const) {
    assert.ok(one[k] > 0, k);
  }
});

Deno.test("the step benchmark's profile counts kernel calls and ranks kernels by time, calls and host time", async () => {
  const r = await benchOursKlStep({
    size: 16,
    labeled: 1,
    unlabeled: 1,
    base: 4,
    depth: 2,
    steps: 1,
    warmup: 0,
    profile: true,
  });
  const p = r.profile!;
  assert.equal(r.kernels, "custom");
  assert.ok(p.dispatches > 0 && p.host_ms > 0 && p.wall_ms > 0);
  assert.equal(p.gpu_dispatches, undefined, "GPU programs are counted on webgpu only");
  const sorted = (rows: typeof p.top, key: (row: (typeof p.top)[number]) => number) =>
    rows.every((row, i) => i === 0 || key(rows[i - 1]) >= key(row));
  assert.ok(sorted(p.top, (row) => row.ms));
  assert.ok(sorted(p.top_by_calls, (row) => row.calls));
  assert.ok(sorted(p.top_by_host, (row) => row.host_ms));
  // the fused Adam: one call per variable (conv weights and biases, batch-norm scales and shifts)
  assert.ok(p.top_by_calls.some((row) => row.kernel === "MiSslAdam" && row.calls > 10));
});

Deno.test({
  name: "the threaded wasm build runs the training step with 2 threads under Deno",
  // a child process: the backend's thread count is fixed once it is initialised
  fn: async () => {
    const cli = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        cli,
        "bench",
        ...["--size", "32", "--base", "4", "--depth", "3", "--steps", "2", "--threads", "2"],
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const result = JSON.parse(stdout.trim().split("\n").pop()!);
    assert.equal(result.threads, 2);
    assert.equal(result.backend, "wasm");
    assert.ok(result.step_ms_median > 0);
  },
});

Deno.test("the fused Adam update follows Adam with L2 weight decay on wasm and cpu", async () => {
  const { Adam } = await import("../core/optimizer.ts");
  for (const backend of ["wasm", "cpu"]) {
    await tf.setBackend(backend);
    const w0 = [0.5, -1, 2], g1 = [0.1, -0.2, 0.3], g2 = [-0.4, 0.5, 0.05];
    const w = tf.variable(tf.tensor1d(w0), true, `adam-test-${backend}`);
    const adam = new Adam(new Map([["w", w]]), { weightDecay: 0.01 });
    for (const g of [g1, g2]) {
      const gt = tf.tensor1d(g);
      adam.apply({ w: gt }, 0.1);
      gt.dispose();
    }
    // reference, in doubles
    const wr = [...w0], m = [0, 0, 0], v = [0, 0, 0];
    [g1, g2].forEach((g, k) => {
      const t = k + 1, c1 = 1 - 0.9 ** t, c2 = 1 - 0.999 ** t;
      for (let i = 0; i < 3; i++) {
        const gi = g[i] + 0.01 * wr[i];
        m[i] = 0.9 * m[i] + 0.1 * gi;
        v[i] = 0.999 * v[i] + 0.001 * gi * gi;
        wr[i] -= (m[i] / (Math.sqrt(v[i] / c2) + 1e-8)) * (0.1 / c1);
      }
    });
    const got = w.dataSync();
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(got[i] - wr[i]) < 1e-6, `${backend}: ${got[i]} vs ${wr[i]}`);
    }
    adam.dispose();
    w.dispose();
  }
  await tf.setBackend("wasm");
});

Deno.test("the Adam sweep on wasm follows float64 Adam to float32 rounding, tail and weight decay included", async () => {
  const { Adam } = await import("../core/optimizer.ts");
  for (const wd of [0, 0.01]) {
    const n = 4099; // 4096 in the SIMD sweep, 3 in the JavaScript tail
    const w0 = normal([n], 41), g1 = normal([n], 42), g2 = normal([n], 43);
    const w = tf.variable(tf.tensor1d(w0), true, `adam-sweep-${wd}`);
    const adam = new Adam(new Map([["w", w]]), { weightDecay: wd });
    const before = callListJobCount();
    for (const g of [g1, g2]) {
      const gt = tf.tensor1d(g);
      adam.apply({ w: gt }, 0.01);
      gt.dispose();
    }
    assert.equal(callListJobCount() - before, 2, "one job of the kernel module per update");
    const wr = Float64Array.from(w0), m = new Float64Array(n), v = new Float64Array(n);
    [g1, g2].forEach((g, k) => {
      const t = k + 1, c1 = 1 - 0.9 ** t, c2 = 1 - 0.999 ** t;
      for (let i = 0; i < n; i++) {
        const gi = g[i] + wd * wr[i];
        m[i] = 0.9 * m[i] + 0.1 * gi;
        v[i] = 0.999 * v[i] + 0.001 * gi * gi;
        wr[i] -= (m[i] / (Math.sqrt(v[i] / c2) + 1e-8)) * (0.01 / c1);
      }
    });
    const got = w.dataSync();
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(got[i] - wr[i]));
    // each step moves a weight by up to ~0.01; float32 rounding of the weights is ~1e-7
    assert.ok(err < 1e-6, `weight decay ${wd}: max error ${err}`);
    const moved = got.some((x, i) => Math.abs(x - w0[i]) > 0.005);
    assert.ok(moved, "the update moved the weights");
    adam.dispose();
    w.dispose();
  }
});

Deno.test("kernel modules declare a shared memory that cannot grow as fixed, and only that one", () => {
  // copy(src, dst): 16 bytes
  const f = new Fn(["i32", "i32"]);
  f.get(1).get(0).v128Load().v128Store();
  const build = (memory: WebAssembly.Memory) =>
    new WebAssembly.Module(
      buildModule({
        memory: memoryImport(memory),
        functions: [{ name: "copy", fn: f }],
      }) as BufferSource,
    );
  const run = (module: WebAssembly.Module, memory: WebAssembly.Memory) => {
    const copy = new WebAssembly.Instance(module, { env: { memory } }).exports.copy as (
      s: number,
      d: number,
    ) => void;
    new Float32Array(memory.buffer, 0, 4).set([1, 2, 3, 4]);
    copy(0, 64);
    return [...new Float32Array(memory.buffer, 64, 4)];
  };
  const plain = new WebAssembly.Memory({ initial: 1 });
  assert.deepEqual(memoryImport(plain), { shared: false });
  assert.deepEqual(run(build(plain), plain), [1, 2, 3, 4]);
  const growable = new WebAssembly.Memory({ initial: 4, maximum: 8, shared: true });
  assert.deepEqual(memoryImport(growable), { shared: true });
  assert.deepEqual(run(build(growable), growable), [1, 2, 3, 4]);
  const fixed = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
  assert.deepEqual(memoryImport(fixed), { shared: true }); // not marked: may not be assumed
  markFixedSize(fixed, 4);
  assert.deepEqual(memoryImport(fixed), { shared: true, pages: 4 });
  const module = build(fixed);
  assert.deepEqual(run(module, fixed), [1, 2, 3, 4]);
  // The declaration is "exactly 4 pages, for good": a memory that may grow does not link.
  assert.throws(() => run(module, growable), WebAssembly.LinkError);
});
