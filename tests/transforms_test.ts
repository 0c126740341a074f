import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { Rng } from "../core/rng.ts";
import {
  affineTransformPlugin,
  composeAffine,
  composeTransforms,
  flipTransformPlugin,
  identityAffine,
  invertAffine,
  warpAffine,
} from "../plugins/transforms/affine.ts";
import { assertClose, assertNoLeak, useWasm } from "./_helpers.ts";

await useWasm();

/** A smooth test image `[B, H, W, C]`. */
function smooth(b: number, h: number, w: number, c: number): tf.Tensor4D {
  const out = new Float32Array(b * h * w * c);
  let k = 0;
  for (let n = 0; n < b; n++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        for (let ch = 0; ch < c; ch++) {
          out[k++] = Math.sin(i / 5 + n + ch) * Math.cos(j / 7 - ch) + 0.1 * ch;
        }
      }
    }
  }
  return tf.tensor4d(out, [b, h, w, c]);
}

Deno.test("warpAffine() with the identity map returns the input", () => {
  const x = smooth(2, 9, 11, 3);
  const y = warpAffine(x, identityAffine(2));
  const d = tf.max(tf.abs(tf.sub(x, y))).dataSync()[0];
  assert.ok(d < 1e-6, `max difference ${d}`);
  tf.dispose([x, y]);
});

Deno.test("invert(apply(x)) is close to x away from the borders (affine)", () => {
  const t = affineTransformPlugin.create(affineTransformPlugin.options.parse({}));
  const rng = new Rng(3);
  const x = smooth(3, 32, 32, 2);
  const params = t.sample(rng, 3, 32, 32);
  const back = t.invert(t.apply(x, params), params);
  const mask = t.validMask(params, 32, 32);
  // compare the interior of the valid region (bilinear twice blurs a little)
  const err = tf.tidy(() => {
    const inner = tf.slice(tf.mul(tf.abs(tf.sub(back, x)), mask), [0, 6, 6, 0], [3, 20, 20, 2]);
    return tf.max(inner).dataSync()[0];
  });
  assert.ok(err < 0.08, `max round-trip error ${err}`);
  const valid = tf.mean(mask).dataSync()[0];
  assert.ok(valid > 0.5 && valid <= 1, `valid fraction ${valid}`);
  tf.dispose([x, back, mask]);
});

Deno.test("flips and 90-degree rotations invert exactly", () => {
  const t = flipTransformPlugin.create(
    flipTransformPlugin.options.parse({ horizontal: 0.5, vertical: 0.5, rotate90: 0.7 }),
  );
  const rng = new Rng(5);
  const x = smooth(4, 16, 16, 3);
  for (let k = 0; k < 5; k++) {
    const params = t.sample(rng, 4, 16, 16);
    const y = t.apply(x, params);
    const back = t.invert(y, params);
    assert.ok(tf.max(tf.abs(tf.sub(back, x))).dataSync()[0] < 1e-5);
    assert.equal(tf.min(t.validMask(params, 16, 16)).dataSync()[0], 1);
    tf.dispose([y, back]);
  }
  // an explicit left-right flip moves pixel (0, 0) to (0, W-1)
  const m = identityAffine(1);
  m[0] = -1;
  const img = tf.tensor4d([1, 2, 3, 4, 5, 6], [1, 2, 3, 1]);
  assert.deepEqual([...warpAffine(img, m).dataSync()], [3, 2, 1, 6, 5, 4]);
  tf.dispose([x, img]);
});

Deno.test("a rotation by 90 degrees moves pixels as expected", () => {
  // sampling map (u, v) -> (-v, u)... output(i, j) = input at rotated coordinates
  const m = new Float64Array([0, -1, 0, 1, 0, 0]);
  const img = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
  const out = [...warpAffine(img, m).dataSync()];
  // output (0,0): u=-0.5, v=-0.5 -> source (0.5, -0.5) -> pixel (row 0, col 1) = 2
  assert.deepEqual(out, [2, 4, 1, 3]);
  tf.dispose(img);
});

Deno.test("composeAffine() and invertAffine() are consistent", () => {
  const rng = new Rng(9);
  const t = affineTransformPlugin.create(affineTransformPlugin.options.parse({ translate: 0.1 }));
  const a = t.sample(rng, 2, 24, 24), b = t.sample(rng, 2, 24, 24);
  const ab = composeAffine(a, b);
  const id = composeAffine(ab, invertAffine(ab));
  const expected = identityAffine(2);
  id.forEach((v, i) => assertClose(v, expected[i], 1e-9));
  // warping by a then by b equals one warp by a∘b (interior, smooth image)
  const x = smooth(2, 24, 24, 1);
  const two = warpAffine(warpAffine(x, a), b);
  const one = warpAffine(x, ab);
  const err = tf.max(tf.abs(tf.slice(tf.sub(two, one), [0, 8, 8, 0], [2, 8, 8, 1]))).dataSync()[0];
  assert.ok(err < 0.1, `composition error ${err}`);
});

Deno.test("a composed cascade inverts in reverse order", () => {
  const parts = [
    affineTransformPlugin.create(affineTransformPlugin.options.parse({ rotation: 20 })),
    flipTransformPlugin.create(flipTransformPlugin.options.parse({})),
  ];
  const t = composeTransforms(parts);
  const rng = new Rng(1);
  const x = smooth(2, 32, 32, 1);
  const p = t.sample(rng, 2, 32, 32);
  const back = t.invert(t.apply(x, p), p);
  const err = tf.max(
    tf.slice(tf.mul(tf.abs(tf.sub(back, x)), t.validMask(p, 32, 32)), [0, 6, 6, 0], [
      2,
      20,
      20,
      1,
    ]),
  )
    .dataSync()[0];
  assert.ok(err < 0.08, `error ${err}`);
});

Deno.test("the inverse warp is differentiable and its gradient is the adjoint", () => {
  // <warp(x), y> = <x, warp^T(y)>: the gradient of sum(warp(x) * y) w.r.t. x is warp^T(y).
  const rng = new Rng(4);
  const t = affineTransformPlugin.create(affineTransformPlugin.options.parse({}));
  const p = t.sample(rng, 2, 8, 8);
  const x = smooth(2, 8, 8, 3);
  const y = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(t.invert(v as tf.Tensor4D, p), y)))(x);
  const lhs = tf.sum(tf.mul(t.invert(x, p), y)).dataSync()[0];
  const rhs = tf.sum(tf.mul(x, g)).dataSync()[0];
  assertClose(lhs, rhs, 1e-4);
  tf.dispose([x, y, g]);
});

Deno.test("transforms leak no tensors", async () => {
  const t = affineTransformPlugin.create(affineTransformPlugin.options.parse({}));
  const rng = new Rng(2);
  const x = smooth(2, 16, 16, 2);
  await assertNoLeak(() => {
    const p = t.sample(rng, 2, 16, 16);
    tf.dispose([t.apply(x, p), t.apply(x, p, "nearest"), t.validMask(p, 16, 16)]);
    tf.dispose(tf.grad((v: tf.Tensor) => tf.sum(t.invert(v as tf.Tensor4D, p)))(x));
  });
  x.dispose();
});
