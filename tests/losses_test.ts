import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { crossEntropy } from "../plugins/losses/cross_entropy.ts";
import { klConsistency } from "../plugins/regularizers/kl_consistency.ts";
import { stopGradient } from "../core/ops.ts";
import { assertClose, assertNoLeak, randomProbs, useWasm } from "./_helpers.ts";

await useWasm();

Deno.test("klConsistency() matches hand-computed values", () => {
  const p = tf.tensor4d([0.5, 0.5, 0.2, 0.8], [1, 1, 2, 2]);
  const q = tf.tensor4d([0.9, 0.1, 0.2, 0.8], [1, 1, 2, 2]);
  // pixel 1: 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1); pixel 2: 0
  const px1 = 0.5 * Math.log(0.5 / 0.9) + 0.5 * Math.log(0.5 / 0.1);
  assertClose(klConsistency(p, q).dataSync()[0], px1 / 2, 1e-6);
  const mask = tf.tensor4d([1, 0], [1, 1, 2, 1]);
  assertClose(klConsistency(p, q, { mask }).dataSync()[0], px1, 1e-6);
  tf.dispose([p, q, mask]);
});

Deno.test("klConsistency() is zero for identical maps and positive otherwise", () => {
  const p = randomProbs([2, 5, 5, 4], 1);
  const q = randomProbs([2, 5, 5, 4], 2);
  assertClose(klConsistency(p, p).dataSync()[0], 0, 1e-6);
  assert.ok(klConsistency(p, q).dataSync()[0] > 0);
  tf.dispose([p, q]);
});

Deno.test("klConsistency() gradient matches finite differences", () => {
  const logits = tf.randomNormal([1, 2, 2, 3], 0, 1, "float32", 3);
  const q = randomProbs([1, 2, 2, 3], 4);
  const f = (l: tf.Tensor) => klConsistency(tf.softmax(l) as tf.Tensor4D, q);
  const g = tf.grad(f)(logits).dataSync();
  const base = logits.dataSync();
  const h = 1e-2;
  for (let i = 0; i < base.length; i++) {
    const plus = base.slice(), minus = base.slice();
    plus[i] += h;
    minus[i] -= h;
    const fd = (f(tf.tensor(plus, logits.shape)).dataSync()[0] -
      f(tf.tensor(minus, logits.shape)).dataSync()[0]) / (2 * h);
    assertClose(g[i], fd, 2e-3, `d/dlogit[${i}]`);
  }
});

Deno.test("crossEntropy() equals -mean log softmax of the true class", () => {
  const logitsArr = [1, 2, 0.5, -1, 0, 0, 3, 1];
  const logits = tf.tensor4d(logitsArr, [1, 1, 2, 4]);
  const labels = tf.tensor3d([1, 2], [1, 1, 2], "int32");
  const lse = (a: number[]) => Math.log(a.reduce((s, v) => s + Math.exp(v), 0));
  const expected = ((lse(logitsArr.slice(0, 4)) - 2) + (lse(logitsArr.slice(4)) - 3)) / 2;
  assertClose(crossEntropy(logits, labels).dataSync()[0], expected, 1e-6);
  tf.dispose([logits, labels]);
});

Deno.test("stopGradient() passes values and blocks gradients", () => {
  const x = tf.tensor1d([3]);
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stopGradient(v), v)))(x);
  assert.deepEqual([...g.dataSync()], [3]);
  tf.dispose([x, g]);
});

Deno.test("losses leak no tensors", async () => {
  const p = randomProbs([2, 4, 4, 4], 5);
  const q = randomProbs([2, 4, 4, 4], 6);
  const y = tf.zeros([2, 4, 4], "int32") as tf.Tensor3D;
  await assertNoLeak(() => {
    tf.dispose(klConsistency(p, q));
    tf.dispose(crossEntropy(p, y));
    tf.dispose(tf.grad((l: tf.Tensor) => klConsistency(tf.softmax(l) as tf.Tensor4D, q))(p));
  });
  tf.dispose([p, q, y]);
});
