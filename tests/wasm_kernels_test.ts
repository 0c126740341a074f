import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import {
  conv2DBackpropFilterLoop,
  registerWasmTrainingKernels,
} from "../runtime/kernels/wasm_training.ts";
import { callListJobCount } from "../runtime/kernels/wasm_conv.ts";

type Pad = "same" | "valid" | number | [[0, 0], [number, number], [number, number], [0, 0]];
type Shape4 = [number, number, number, number];

await tf.setBackend("wasm");
await tf.ready();
registerWasmTrainingKernels();
registerWasmTrainingKernels(); // idempotent

/** Seeded standard normal numbers, identical on every backend. */
function normal(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, 0, 1, "float32", seed).dataSync() as Float32Array);
}

/** Runs `f` on cpu, then on wasm, and returns both results (shape and values). */
async function onBoth(
  f: () => tf.Tensor,
): Promise<{ cpu: tf.Tensor; wasm: tf.Tensor; shapes: [number[], number[]] }> {
  const out: { shape: number[]; values: Float32Array }[] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const t = tf.tidy(f);
    out.push({ shape: t.shape, values: t.dataSync() as Float32Array });
    t.dispose();
  }
  await tf.setBackend("wasm");
  return {
    cpu: tf.tensor(out[0].values, out[0].shape),
    wasm: tf.tensor(out[1].values, out[1].shape),
    shapes: [out[0].shape, out[1].shape],
  };
}

/** max |actual - expected| <= rtol * max |expected|, with equal shapes. */
async function assertBackendsAgree(f: () => tf.Tensor, rtol = 1e-4): Promise<void> {
  const { cpu, wasm, shapes } = await onBoth(f);
  try {
    assert.deepEqual(shapes[1], shapes[0], "shapes differ");
    const e = cpu.dataSync(), a = wasm.dataSync();
    let scale = 0, err = 0;
    for (let i = 0; i < e.length; i++) {
      scale = Math.max(scale, Math.abs(e[i]));
      err = Math.max(err, Math.abs(a[i] - e[i]));
    }
    assert.ok(scale > 0, "the reference is all zeros: the test checks nothing");
    assert.ok(err <= rtol * scale, `max abs error ${err} exceeds ${rtol} * ${scale}`);
  } finally {
    cpu.dispose();
    wasm.dispose();
  }
}

function padName(pad: Pad): string {
  return typeof pad === "string"
    ? `${pad} padding`
    : typeof pad === "number"
    ? `explicit padding ${pad}`
    : `explicit padding ${JSON.stringify(pad.slice(1, 3))}`;
}

interface ConvCase {
  x: Shape4;
  k: number;
  co: number;
  stride: number | [number, number];
  pad: Pad;
}

const convCases: ConvCase[] = [
  { x: [1, 7, 9, 3], k: 3, co: 5, stride: 1, pad: "same" },
  { x: [3, 7, 9, 3], k: 3, co: 5, stride: 2, pad: "same" },
  { x: [3, 7, 9, 5], k: 3, co: 1, stride: 2, pad: "valid" },
  { x: [1, 7, 9, 1], k: 5, co: 3, stride: 1, pad: "valid" },
  { x: [3, 7, 9, 5], k: 5, co: 3, stride: 2, pad: 2 },
  { x: [3, 7, 9, 3], k: 3, co: 3, stride: 1, pad: 1 },
  { x: [3, 7, 9, 3], k: 1, co: 5, stride: 1, pad: "valid" },
  { x: [1, 7, 9, 5], k: 1, co: 3, stride: 2, pad: "same" },
  { x: [3, 7, 9, 3], k: 2, co: 3, stride: 2, pad: "valid" },
  { x: [1, 7, 9, 1], k: 3, co: 1, stride: [1, 2], pad: "same" },
  { x: [3, 7, 9, 3], k: 5, co: 5, stride: 1, pad: "same" },
  { x: [3, 7, 9, 3], k: 3, co: 5, stride: 1, pad: [[0, 0], [2, 0], [1, 2], [0, 0]] },
  { x: [1, 7, 9, 3], k: 3, co: 5, stride: 2, pad: [[0, 0], [0, 1], [2, 1], [0, 0]] },
  { x: [2, 8, 6, 3], k: 2, co: 4, stride: 2, pad: "valid" },
  { x: [1, 6, 9, 5], k: 3, co: 2, stride: 3, pad: "same" },
];

function describe(c: ConvCase): string {
  const s = Array.isArray(c.stride) ? c.stride.join("x") : c.stride;
  return `stride ${s}, ${padName(c.pad)}, ${c.k}x${c.k} filter, batch ${c.x[0]}, ` +
    `${c.x[1]}x${c.x[2]} images, ${c.x[3]} -> ${c.co} channels`;
}

/** Inputs of a case: x, the filter and an upstream gradient dy of the conv's output shape. */
function convData(c: ConvCase, seed: number) {
  const filterShape: Shape4 = [c.k, c.k, c.x[3], c.co];
  const info = tf.backend_util.computeConv2DInfo(c.x, filterShape, c.stride, 1, c.pad);
  const dyShape = info.outShape as Shape4;
  return {
    filterShape,
    dyShape,
    x: normal(c.x, seed),
    filter: normal(filterShape, seed + 1),
    dy: normal(dyShape, seed + 2),
  };
}

for (const [i, c] of convCases.entries()) {
  Deno.test(`Conv2DBackpropFilter on wasm matches cpu for ${describe(c)}`, async () => {
    const d = convData(c, 10 * i);
    await assertBackendsAgree(() =>
      tf.grad((w: tf.Tensor) =>
        tf.conv2d(tf.tensor4d(d.x, c.x), w as tf.Tensor4D, c.stride, c.pad)
      )(
        tf.tensor4d(d.filter, d.filterShape),
        tf.tensor4d(d.dy, d.dyShape),
      )
    );
  });

  Deno.test(`Conv2DBackpropInput on wasm matches cpu for ${describe(c)}`, async () => {
    const d = convData(c, 10 * i + 5);
    await assertBackendsAgree(() =>
      tf.grad((x: tf.Tensor) =>
        tf.conv2d(x as tf.Tensor4D, tf.tensor4d(d.filter, d.filterShape), c.stride, c.pad)
      )(tf.tensor4d(d.x, c.x), tf.tensor4d(d.dy, d.dyShape))
    );
  });
}

Deno.test("Conv2DBackpropFilter on wasm matches cpu with ceil rounding of the output size", async () => {
  const xShape: Shape4 = [2, 8, 8, 3], filterShape: Shape4 = [3, 3, 3, 4];
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, 2, 1, 1, "ceil");
  const dyShape = info.outShape as Shape4;
  const x = normal(xShape, 1), dy = normal(dyShape, 2);
  await assertBackendsAgree(() =>
    tf.engine().runKernel(
      tf.Conv2DBackpropFilter,
      { x: tf.tensor4d(x, xShape), dy: tf.tensor4d(dy, dyShape) },
      { strides: 2, pad: 1, dataFormat: "NHWC", dimRoundingMode: "ceil", filterShape },
    ) as tf.Tensor
  );
});

for (const c of [convCases[1], convCases[4], convCases[8], convCases[12]]) {
  Deno.test(`The loop fallback of Conv2DBackpropFilter matches cpu for ${describe(c)}`, async () => {
    const d = convData(c, 77);
    const attrs = { strides: c.stride, pad: c.pad, dataFormat: "NHWC", filterShape: d.filterShape };
    await assertBackendsAgree(() => {
      const x = tf.tensor4d(d.x, c.x), dy = tf.tensor4d(d.dy, d.dyShape);
      if (tf.getBackend() === "cpu") {
        return tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, attrs) as tf.Tensor;
      }
      const info = conv2DBackpropFilterLoop({
        inputs: { x, dy },
        backend: tf.backend(),
        attrs: attrs as unknown as tf.NamedAttrMap,
      });
      return tf.engine().makeTensorFromTensorInfo(info);
    });
  });
}

Deno.test("The loop fallback of Conv2DBackpropFilter matches cpu for NCHW data", async () => {
  const xShape: Shape4 = [2, 3, 7, 9], dyShape: Shape4 = [2, 4, 4, 5];
  const filterShape: Shape4 = [3, 3, 3, 4];
  const attrs = { strides: 2, pad: "same", dataFormat: "NCHW", filterShape };
  const xv = normal(xShape, 3), dyv = normal(dyShape, 4);
  await assertBackendsAgree(() => {
    const x = tf.tensor4d(xv, xShape), dy = tf.tensor4d(dyv, dyShape);
    if (tf.getBackend() === "cpu") {
      return tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, attrs) as tf.Tensor;
    }
    const info = conv2DBackpropFilterLoop({
      inputs: { x, dy },
      backend: tf.backend(),
      attrs: attrs as unknown as tf.NamedAttrMap,
    });
    return tf.engine().makeTensorFromTensorInfo(info);
  });
});

const transposeCases: { x: Shape4; k: number; co: number; stride: number; pad: Pad }[] = [
  { x: [3, 7, 9, 5], k: 3, co: 4, stride: 1, pad: "same" },
  { x: [1, 5, 7, 3], k: 5, co: 2, stride: 1, pad: "valid" },
  { x: [3, 4, 5, 3], k: 2, co: 5, stride: 2, pad: "valid" },
  { x: [2, 4, 5, 3], k: 3, co: 1, stride: 2, pad: "same" },
];

for (const c of transposeCases) {
  const outShape = (c.pad === "valid"
    ? [c.x[0], (c.x[1] - 1) * c.stride + c.k, (c.x[2] - 1) * c.stride + c.k, c.co]
    : [c.x[0], c.x[1] * c.stride, c.x[2] * c.stride, c.co]) as Shape4;
  Deno.test(
    `conv2dTranspose on wasm matches cpu for stride ${c.stride}, ${padName(c.pad)}, ` +
      `${c.k}x${c.k} filter, ${c.x[3]} -> ${c.co} channels`,
    async () => {
      const xv = normal(c.x, 5), fv = normal([c.k, c.k, c.co, c.x[3]], 6);
      await assertBackendsAgree(() =>
        tf.conv2dTranspose(
          tf.tensor4d(xv, c.x),
          tf.tensor4d(fv, [c.k, c.k, c.co, c.x[3]]),
          outShape,
          c.stride,
          c.pad as "same" | "valid",
        )
      );
    },
  );
}

Deno.test("UnsortedSegmentSum on wasm matches cpu for 2D data with repeated and empty segments", async () => {
  const xv = normal([6, 4], 8);
  await assertBackendsAgree(() =>
    tf.unsortedSegmentSum(tf.tensor2d(xv, [6, 4]), tf.tensor1d([0, 2, 0, 5, 2, 1], "int32"), 7)
  );
});

Deno.test("UnsortedSegmentSum on wasm matches cpu for 1D and 3D data", async () => {
  const v1 = normal([9], 9), v3 = normal([5, 3, 2], 10);
  await assertBackendsAgree(() =>
    tf.unsortedSegmentSum(tf.tensor1d(v1), tf.tensor1d([3, 3, 0, 1, 3, 0, 2, 2, 1], "int32"), 4)
  );
  await assertBackendsAgree(() =>
    tf.unsortedSegmentSum(tf.tensor3d(v3, [5, 3, 2]), tf.tensor1d([1, 0, 1, 1, 2], "int32"), 3)
  );
});

Deno.test("UnsortedSegmentSum on wasm sums int32 data exactly", async () => {
  await tf.setBackend("wasm");
  const out = tf.unsortedSegmentSum(
    tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], "int32"),
    tf.tensor1d([1, 1, 0], "int32"),
    3,
  );
  assert.equal(out.dtype, "int32");
  assert.deepEqual(Array.from(out.dataSync()), [5, 6, 4, 6, 0, 0]);
  out.dispose();
});

Deno.test("The gradient of gather on wasm matches cpu for 2D data with repeated indices", async () => {
  const xv = normal([5, 3], 11);
  const indices = [0, 3, 3, 1, 0, 4, 3];
  const dyv = normal([indices.length, 3], 12);
  await assertBackendsAgree(() =>
    tf.grad((x: tf.Tensor) => tf.gather(x, tf.tensor1d(indices, "int32")))(
      tf.tensor2d(xv, [5, 3]),
      tf.tensor2d(dyv, [indices.length, 3]),
    )
  );
});

Deno.test("The gradient of gather along axis 1 on wasm matches cpu", async () => {
  const xv = normal([4, 6], 13);
  const indices = [5, 0, 5, 2, 2];
  const dyv = normal([4, indices.length], 14);
  await assertBackendsAgree(() =>
    tf.grad((x: tf.Tensor) => tf.gather(x, tf.tensor1d(indices, "int32"), 1))(
      tf.tensor2d(xv, [4, 6]),
      tf.tensor2d(dyv, [4, indices.length]),
    )
  );
});

Deno.test("The fast conv gradients on wasm run on the XNNPACK Conv2D kernel", async () => {
  await tf.setBackend("wasm");
  const original = tf.getKernel(tf.Conv2D, "wasm")!;
  let calls = 0;
  tf.unregisterKernel(tf.Conv2D, "wasm");
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      calls++;
      return original.kernelFunc(args);
    },
  });
  try {
    const x = tf.tensor4d(normal([2, 8, 8, 4], 15), [2, 8, 8, 4]);
    const w = tf.tensor4d(normal([3, 3, 4, 6], 16), [3, 3, 4, 6]);
    const dy = tf.tensor4d(normal([2, 8, 8, 6], 17), [2, 8, 8, 6]);
    const before = calls;
    const dw = tf.grad((w: tf.Tensor) => tf.conv2d(x, w as tf.Tensor4D, 1, "same"))(w, dy);
    // One call is the forward convolution inside tf.grad, the other the gradient.
    assert.equal(calls - before, 2, "the filter gradient makes one Conv2D call");
    const dx = tf.grad((x: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w, 1, "same"))(x, dy);
    assert.equal(calls - before, 4, "the input gradient makes one Conv2D call");
    const up = tf.conv2dTranspose(
      dy,
      tf.tensor4d(normal([2, 2, 3, 6], 18), [2, 2, 3, 6]),
      [
        2,
        16,
        16,
        3,
      ],
      2,
      "valid",
    );
    assert.equal(calls - before, 5, "a 2x2 stride-2 conv2dTranspose makes one Conv2D call");
    tf.dispose([x, w, dy, dw, dx, up]);
  } finally {
    tf.unregisterKernel(tf.Conv2D, "wasm");
    tf.registerKernel(original);
  }
});

Deno.test("The wasm training kernels leak neither tensors nor backend data", async () => {
  await tf.setBackend("wasm");
  const backend = tf.engine().backend;
  const x = tf.tensor4d(normal([2, 7, 9, 3], 18), [2, 7, 9, 3]);
  const w = tf.tensor4d(normal([3, 3, 3, 4], 19), [3, 3, 3, 4]);
  const w2 = tf.tensor4d(normal([2, 2, 3, 4], 20), [2, 2, 3, 4]);
  const dyUp = tf.tensor4d(normal([2, 4, 4, 4], 22), [2, 4, 4, 4]);
  const g = tf.tensor2d(normal([5, 3], 21), [5, 3]);
  const indices = tf.tensor1d([0, 4, 4, 2], "int32");
  const xLong = tf.tensor4d(normal([2, 64, 64, 8], 23), [2, 64, 64, 8]);
  const w1 = tf.tensor4d(normal([1, 1, 8, 4], 24), [1, 1, 8, 4]);
  const step = () => {
    const results = [
      tf.grad((w: tf.Tensor) => tf.conv2d(x, w as tf.Tensor4D, 1, "same"))(w),
      tf.grad((x: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w, 1, "same"))(x),
      tf.grad((w: tf.Tensor) => tf.conv2d(x, w as tf.Tensor4D, 2, "valid"))(w2), // cropped
      tf.grad((x: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w, 2, "same"))(x), // original kernel
      tf.conv2dTranspose(dyUp, w2, [2, 8, 8, 3], 2, "valid"), // non-overlapping blocks
      tf.grad((g: tf.Tensor) => tf.gather(g, indices))(g),
      tf.grad((w: tf.Tensor) => tf.conv2d(xLong, w as tf.Tensor4D, 1, "valid"))(w1), // x^T dy
    ];
    tf.dispose(results);
  };
  step(); // warm up: lazily created state does not count
  const tensors = tf.memory().numTensors;
  const dataIds = backend.numDataIds();
  for (let i = 0; i < 3; i++) {
    step();
    assert.equal(tf.memory().numTensors, tensors, "tensor count grew");
    assert.equal(backend.numDataIds(), dataIds, "backend data count grew");
  }
  tf.dispose([x, w, w2, dyUp, g, indices, xLong, w1]);
});

/** Runs `f` with the wasm kernels `names` counted; returns the calls of each that ran. */
async function countingKernels(
  names: string[],
  f: () => Promise<void>,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const spied = names.map((name) => {
    const original = tf.getKernel(name, "wasm")!;
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return original.kernelFunc(args);
      },
    });
    return original;
  });
  try {
    await f();
  } finally {
    for (const original of spied) {
      tf.unregisterKernel(original.kernelName, "wasm");
      tf.registerKernel(original);
    }
  }
  return counts;
}

Deno.test("A 1x1 filter gradient on wasm is one product x^T dy split over the pixels, and matches cpu", async () => {
  const xShape: Shape4 = [3, 40, 41, 16], dyShape: Shape4 = [3, 40, 41, 4];
  const x = normal(xShape, 31), dy = normal(dyShape, 32);
  const attrs = { strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [1, 1, 16, 4] };
  // count the wasm kernels it runs
  let jobs = 0;
  const counts = await countingKernels(
    [tf.BatchMatMul, tf.Transpose, tf.Conv2D],
    () =>
      assertBackendsAgree(() => {
        const before = callListJobCount();
        const dw = tf.engine().runKernel(
          tf.Conv2DBackpropFilter,
          { x: tf.tensor4d(x, xShape), dy: tf.tensor4d(dy, dyShape) },
          attrs,
        ) as tf.Tensor;
        if (tf.getBackend() === "wasm") jobs = callListJobCount() - before;
        return dw;
      }),
  );
  assert.deepEqual(
    Object.fromEntries(counts),
    { [tf.BatchMatMul]: 1 },
    "one BatchMatMul, no transposes",
  );
  assert.equal(jobs, 1, "one job of the kernel module (the long BatchMatMul's sweep)");
});

Deno.test("A 1x1 convolution with 4 or 2 output channels on wasm is one tall product split by rows, and matches cpu", async () => {
  for (const co of [4, 2]) {
    const xShape: Shape4 = [3, 40, 41, 8];
    const x = normal(xShape, 33), w = normal([8 * co], 34);
    let jobs = 0;
    const counts = await countingKernels(
      [tf.BatchMatMul, tf.Conv2D],
      () =>
        assertBackendsAgree(() => {
          const before = callListJobCount();
          const y = tf.conv2d(tf.tensor4d(x, xShape), tf.tensor4d(w, [1, 1, 8, co]), 1, "valid");
          if (tf.getBackend() === "wasm") jobs = callListJobCount() - before;
          return y;
        }),
    );
    assert.deepEqual(Object.fromEntries(counts), { [tf.Conv2D]: 1, [tf.BatchMatMul]: 1 });
    assert.equal(jobs, 1, `co ${co}: one job of the kernel module (the tall product's sweep)`);
  }
});
