// PadV2 on wasm fills only the border (fillOutside) before copying the input in; Add of a [C] bias
// is one SIMD sweep; both, and the row copies of Concat / SplitV / Slice, may be split between
// threads (the 2-thread checks are in _threaded_kernels.ts). Here, one thread: exact against the
// cpu backend on odd shapes.
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import { fillOutside, wasmAdd } from "../runtime/kernels/wasm_training.ts";
import { miscKernelsFor } from "../runtime/kernels/wasm_misc.ts";

await useWasm();

Deno.test("fillOutside() fills exactly the elements outside the block", () => {
  const cases: Array<[number[], number[], number[]]> = [
    [[4, 9, 7, 3], [0, 1, 2, 0], [4, 6, 4, 3]],
    [[5, 6], [2, 0], [1, 6]],
    [[3, 4, 5], [0, 0, 0], [3, 4, 5]],
    [[6, 2, 5], [1, 1, 0], [4, 1, 5]],
    [[7], [3], [2]],
  ];
  for (const [shape, begin, size] of cases) {
    const n = shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n).fill(-1);
    fillOutside(data, shape, begin, size, 2.5);
    for (let i = 0; i < n; i++) {
      let rest = i, inside = true;
      for (let a = shape.length - 1; a >= 0; a--) {
        const idx = rest % shape[a];
        rest = Math.floor(rest / shape[a]);
        if (idx < begin[a] || idx >= begin[a] + size[a]) inside = false;
      }
      assert.equal(data[i], inside ? -1 : 2.5, `${shape} ${begin} ${size}: element ${i}`);
    }
  }
});

Deno.test("PadV2 on wasm matches cpu exactly (float32 and int32, odd paddings)", async () => {
  const cases: Array<[number[], Array<[number, number]>, number]> = [
    [[3, 11, 13, 5], [[0, 1], [1, 2], [2, 1], [0, 0]], 0.5],
    [[2, 7, 9, 4], [[0, 0], [1, 1], [1, 1], [0, 0]], 0],
    [[5, 3], [[2, 0], [0, 3]], -1],
    [[4, 6, 3], [[1, 1], [0, 0], [0, 2]], 7],
  ];
  for (const dtype of ["float32", "int32"] as const) {
    for (const [shape, paddings, value] of cases) {
      const got: Array<Float32Array | Int32Array> = [];
      for (const backend of ["wasm", "cpu"]) {
        await tf.setBackend(backend);
        got.push(tf.tidy(() => {
          const x = tf.cast(tf.mul(tf.randomNormal(shape, 0, 1, "float32", 4), 10), dtype);
          return tf.pad(x, paddings, value).dataSync() as Float32Array | Int32Array;
        }));
      }
      await tf.setBackend("wasm");
      assert.deepEqual(got[0], got[1], `${dtype} ${shape} ${JSON.stringify(paddings)}`);
    }
  }
});

Deno.test("Add of a [C] bias on wasm is wasmAdd and matches cpu exactly; other Adds fall back", async () => {
  assert.equal(tf.getKernel("Add", "wasm")?.kernelFunc, wasmAdd);
  const cases: Array<[number[], number[]]> = [
    [[3, 7, 5, 8], [8]],
    [[8], [3, 7, 5, 8]],
    [[5, 9, 4], [1, 1, 4]],
    [[2, 3, 12], [1, 12]],
    [[3, 5, 6], [6]], // C % 4 != 0: tfjs's kernel
    [[3, 5, 8], [5, 1]], // not a bias: tfjs's kernel
    [[4, 8], [4, 8]],
  ];
  for (const [sa, sb] of cases) {
    const got: Float32Array[] = [];
    for (const backend of ["wasm", "cpu"]) {
      await tf.setBackend(backend);
      got.push(
        tf.tidy(() =>
          tf.add(tf.randomNormal(sa, 0, 1, "float32", 5), tf.randomNormal(sb, 0, 1, "float32", 6))
            .dataSync() as Float32Array
        ),
      );
    }
    await tf.setBackend("wasm");
    assert.deepEqual(got[0], got[1], `${sa} + ${sb}`);
  }
});

Deno.test("Multiply by a [C] vector on wasm is one mul_bias sweep and matches cpu exactly; other shapes fall back", async () => {
  const k = miscKernelsFor(tf.backend())!;
  const original = k.mulBias;
  let sweeps = 0;
  k.mulBias = (...args) => {
    sweeps++;
    original(...args);
  };
  try {
    const cases: Array<[number[], number[], boolean]> = [
      [[3, 3, 16, 8], [8], true], // batch norm's scale folded into a filter
      [[8], [3, 7, 5, 8], true],
      [[5, 9, 4], [1, 1, 4], true],
      [[3, 5, 6], [6], false], // C % 4 != 0: tfjs's kernel
      [[3, 5, 8], [3, 5, 1], false], // by [..., 1]: the mul_rows sweep
      [[4, 8], [4, 8], false],
    ];
    for (const [sa, sb, sweep] of cases) {
      const got: Float32Array[] = [];
      for (const backend of ["wasm", "cpu"]) {
        await tf.setBackend(backend);
        const before = sweeps;
        got.push(
          tf.tidy(() =>
            tf.mul(tf.randomNormal(sa, 0, 1, "float32", 7), tf.randomNormal(sb, 0, 1, "float32", 8))
              .dataSync() as Float32Array
          ),
        );
        if (backend === "wasm") assert.equal(sweeps - before, sweep ? 1 : 0, `${sa} * ${sb}`);
      }
      await tf.setBackend("wasm");
      assert.deepEqual(got[0], got[1], `${sa} * ${sb}`);
    }
  } finally {
    k.mulBias = original;
  }
});
