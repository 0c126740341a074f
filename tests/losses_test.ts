import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { crossEntropy, crossEntropyLoss } from "../plugins/losses/cross_entropy.ts";
import { diceCeLoss, diceLoss, softDice } from "../plugins/losses/dice.ts";
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

// Two pixels, three classes: logits chosen so that the softmax is easy to write down.
// pixel 0: logits [0, 0, ln 2] -> p = [1/4, 1/4, 1/2], label 2
// pixel 1: logits [ln 3, 0, 0] -> p = [3/5, 1/5, 1/5], label 1
const HAND_LOGITS = [0, 0, Math.log(2), Math.log(3), 0, 0];
const HAND_LABELS = [2, 1];

Deno.test("dice loss equals 1 - mean foreground soft Dice computed by hand", () => {
  const logits = tf.tensor4d(HAND_LOGITS, [1, 1, 2, 3]);
  const labels = tf.tensor3d(HAND_LABELS, [1, 1, 2], "int32");
  // class 1: sum p g = 1/5, sum p = 1/4 + 1/5, sum g = 1 -> Dice = (2/5) / (29/20) = 8/29
  // class 2: sum p g = 1/2, sum p = 1/2 + 1/5, sum g = 1 -> Dice = 1 / (17/10) = 10/17
  const expected = 1 - (8 / 29 + 10 / 17) / 2;
  const loss = diceLoss.create(diceLoss.options.parse({ smooth: 0 }), { numClasses: 3 });
  assertClose(loss(logits, labels).dataSync()[0], expected, 1e-6);
  // the default smooth (1e-5) barely moves it
  assertClose(softDice(logits, labels).dataSync()[0], expected, 1e-4);
  // with background: class 0 has sum p g = 0 -> Dice 0
  assertClose(
    softDice(logits, labels, { smooth: 0, includeBackground: true }).dataSync()[0],
    1 - (0 + 8 / 29 + 10 / 17) / 3,
    1e-6,
  );
  // a mask that keeps pixel 0 only: class 1 Dice = 0 / (1/4) = 0, class 2 = 1 / (3/2) = 2/3
  const mask = tf.tensor4d([1, 0], [1, 1, 2, 1]);
  assertClose(loss(logits, labels, mask).dataSync()[0], 1 - (0 + 2 / 3) / 2, 1e-6);
  tf.dispose([logits, labels, mask]);
});

Deno.test("dice-ce is diceWeight * dice + ceWeight * cross-entropy, by hand", () => {
  const logits = tf.tensor4d(HAND_LOGITS, [1, 1, 2, 3]);
  const labels = tf.tensor3d(HAND_LABELS, [1, 1, 2], "int32");
  const dice = 1 - (8 / 29 + 10 / 17) / 2;
  const ce = (-Math.log(1 / 2) - Math.log(1 / 5)) / 2;
  const loss = diceCeLoss.create(
    diceCeLoss.options.parse({ smooth: 0, diceWeight: 2, ceWeight: 0.5 }),
    { numClasses: 3 },
  );
  assertClose(loss(logits, labels).dataSync()[0], 2 * dice + 0.5 * ce, 1e-6);
  const ceOnly = crossEntropyLoss.create({}, { numClasses: 3 });
  assertClose(ceOnly(logits, labels).dataSync()[0], ce, 1e-6);
  // masked cross-entropy: the mean over the pixels the mask keeps
  const mask = tf.tensor4d([0, 1], [1, 1, 2, 1]);
  assertClose(ceOnly(logits, labels, mask).dataSync()[0], -Math.log(1 / 5), 1e-6);
  tf.dispose([logits, labels, mask]);
});

Deno.test("dice and dice-ce leak no tensors and have gradients", async () => {
  const logits = tf.randomNormal([2, 4, 4, 3], 0, 1, "float32", 7) as tf.Tensor4D;
  const labels = tf.randomUniform([2, 4, 4], 0, 3, "int32", 8) as tf.Tensor3D;
  const dice = diceLoss.create(diceLoss.options.parse({}), { numClasses: 3 });
  const diceCe = diceCeLoss.create(diceCeLoss.options.parse({}), { numClasses: 3 });
  await assertNoLeak(() => {
    for (const f of [dice, diceCe]) {
      tf.dispose(f(logits, labels));
      const g = tf.grad((l: tf.Tensor) => f(l as tf.Tensor4D, labels))(logits);
      assert.ok(tf.tidy(() => tf.sum(tf.abs(g)).dataSync()[0]) > 0);
      tf.dispose(g);
    }
  });
  tf.dispose([logits, labels]);
});
