import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { useWasm } from "./_helpers.ts";
import { batchNormRelu } from "../runtime/kernels/batch_norm_relu.ts";

await useWasm();

/** The composite formulation (tf ops, autodiff) the fused kernel replaces. */
function reference(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  groups: number[],
  relu: boolean,
): tf.Tensor4D {
  const parts = (groups.length > 1 ? tf.split(x, groups, 0) : [x]).map((part) => {
    const { mean, variance } = tf.moments(part, [0, 1, 2]);
    return tf.mul(tf.sub(part, mean), tf.rsqrt(tf.add(variance, 1e-5)));
  });
  const normed = parts.length > 1 ? tf.concat(parts, 0) : parts[0];
  const z = tf.add(tf.mul(normed, gamma), beta) as tf.Tensor4D;
  return relu ? tf.relu(z) : z;
}

interface Case {
  shape: [number, number, number, number];
  groups: number[];
  relu: boolean;
}

const cases: Case[] = [
  { shape: [3, 5, 4, 3], groups: [3], relu: true },
  { shape: [4, 6, 5, 8], groups: [1, 2, 1], relu: true },
  { shape: [6, 4, 4, 20], groups: [2, 2, 2], relu: true },
  { shape: [2, 3, 7, 32], groups: [2], relu: false },
  { shape: [3, 9, 9, 16], groups: [1, 1, 1], relu: true },
];

/** Values, and gradients of sum(out * w) for a random w, in x, gamma, beta. */
function evaluate(c: Case, fused: boolean): Float32Array[] {
  return tf.tidy(() => {
    const ch = c.shape[3];
    const x = tf.randomNormal(c.shape, 0.3, 2, "float32", 1) as tf.Tensor4D;
    const gamma = tf.randomUniform([ch], 0.5, 1.5, "float32", 2) as tf.Tensor1D;
    const beta = tf.randomNormal([ch], 0, 0.5, "float32", 3) as tf.Tensor1D;
    const w = tf.randomNormal(c.shape, 0, 1, "float32", 4);
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const y = fused
        ? batchNormRelu(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, {
          groups: c.groups,
          relu: c.relu,
        }).y
        : reference(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, c.groups, c.relu);
      return tf.sum(tf.mul(y, w));
    };
    const out = fused
      ? batchNormRelu(x, gamma, beta, { groups: c.groups, relu: c.relu }).y
      : reference(x, gamma, beta, c.groups, c.relu);
    const grads = tf.grads(f)([x, gamma, beta]);
    return [out, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

function assertAllClose(actual: Float32Array, expected: Float32Array, tol: number, what: string) {
  assert.equal(actual.length, expected.length, what);
  let scale = 0, err = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    err = Math.max(err, Math.abs(actual[i] - expected[i]));
  }
  assert.ok(err <= tol * Math.max(scale, 1e-3), `${what}: max error ${err} (scale ${scale})`);
}

for (const c of cases) {
  const name = `${c.shape.join("x")}, groups ${c.groups}, relu ${c.relu}`;
  for (const backend of ["cpu", "wasm"]) {
    Deno.test(`batchNormRelu on ${backend} matches the composite ops and their gradients (${name})`, async () => {
      await tf.setBackend(backend);
      try {
        const fused = evaluate(c, true);
        await tf.setBackend("cpu");
        const ref = evaluate(c, false);
        ["value", "dx", "dgamma", "dbeta"].forEach((what, i) =>
          assertAllClose(fused[i], ref[i], 2e-4, what)
        );
      } finally {
        await tf.setBackend("wasm");
      }
    });
  }
}

Deno.test("batchNormRelu returns the biased batch statistics per group", () => {
  tf.tidy(() => {
    const x = tf.randomNormal([4, 3, 3, 8], 1, 2, "float32", 5) as tf.Tensor4D;
    const { mean, variance } = batchNormRelu(x, tf.ones([8]), tf.zeros([8]), { groups: [1, 3] });
    const parts = tf.split(x, [1, 3], 0).map((p) => tf.moments(p, [0, 1, 2]));
    assertAllClose(
      mean.dataSync() as Float32Array,
      tf.stack(parts.map((p) => p.mean)).dataSync() as Float32Array,
      1e-5,
      "mean",
    );
    assertAllClose(
      variance.dataSync() as Float32Array,
      tf.stack(parts.map((p) => p.variance)).dataSync() as Float32Array,
      1e-4,
      "variance",
    );
  });
});

Deno.test("batchNormRelu and its gradient leak no tensors", () => {
  const x = tf.randomNormal([2, 4, 4, 16]) as tf.Tensor4D;
  const g = tf.ones([16]) as tf.Tensor1D, b = tf.zeros([16]) as tf.Tensor1D;
  const run = () =>
    tf.tidy(() => {
      tf.grads((a: tf.Tensor) => tf.sum(batchNormRelu(a as tf.Tensor4D, g, b).y))([x]);
    });
  run();
  const before = tf.memory().numTensors;
  run();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, g, b]);
});
