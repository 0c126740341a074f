// The Sum gradient (runtime/gradients.ts, installSumGradient) broadcasts dy with a backend fill
// instead of tfjs's ones array built in JavaScript: the same values, exactly.
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import { sumGradientInstalled } from "../runtime/gradients.ts";

await useWasm();

/** dx of sum(sum(x, axes, keepDims) * r) in plain JavaScript: r broadcast over the summed axes. */
function expected(shape: number[], axes: number[], r: Float32Array): Float32Array {
  const n = shape.reduce((a, d) => a * d, 1);
  const out = new Float32Array(n);
  const rShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  for (let i = 0; i < n; i++) {
    let rest = i, ri = 0, stride = 1;
    for (let a = shape.length - 1; a >= 0; a--) {
      const idx = rest % shape[a];
      rest = Math.floor(rest / shape[a]);
      if (rShape[a] !== 1) ri += idx * stride;
      stride *= rShape[a];
    }
    out[i] = r[ri];
  }
  return out;
}

Deno.test("the Sum gradient is the fill-based one, and exact, on cpu and wasm", async () => {
  assert.ok(sumGradientInstalled(), "installSumGradient() is not in use");
  const cases: Array<[number[], number[], boolean]> = [
    [[4, 65, 3], [0], false],
    [[3, 5, 7, 2], [1, 2], true],
    [[7], [0], false],
    [[2, 3, 5], [0, 1, 2], false],
    [[5, 1, 3], [2], true],
  ];
  for (const backend of ["wasm", "cpu"]) {
    await tf.setBackend(backend);
    for (const [shape, axes, keepDims] of cases) {
      const before = tf.memory().numTensors;
      const x = tf.randomNormal(shape, 0, 1, "float32", 3);
      const rShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const r = tf.randomNormal(keepDims ? rShape : rShape.filter((_, i) => !axes.includes(i)));
      const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.sum(t, axes, keepDims), r)))(x);
      assert.deepEqual(dx.shape, shape);
      assert.deepEqual(
        dx.dataSync(),
        expected(shape, axes, r.dataSync() as Float32Array),
        `${backend} ${shape} axes ${axes}`,
      );
      tf.dispose([x, r, dx]);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
    }
  }
  await tf.setBackend("wasm");
});
