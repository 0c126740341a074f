import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { mutualInformation } from "../plugins/regularizers/mutual_information.ts";
import { assertClose, assertNoLeak, randomProbs, useWasm } from "./_helpers.ts";

await useWasm();

/** Brute force: explicit loops over displacements and pixels, in float64. */
function bruteForceMI(
  p: Float32Array,
  q: Float32Array,
  [b, h, w, c]: number[],
  r: number,
  eps = 1.1920929e-7,
  symmetrize = true,
  marginalWeight = 1,
): number {
  let total = 0;
  let count = 0;
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      const P = Array.from({ length: c }, () => new Float64Array(c));
      for (let n = 0; n < b; n++) {
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) {
            const i2 = i + dy, j2 = j + dx;
            if (i2 < 0 || i2 >= h || j2 < 0 || j2 >= w) continue;
            for (let a = 0; a < c; a++) {
              for (let e = 0; e < c; e++) {
                P[a][e] += p[((n * h + i) * w + j) * c + a] * q[((n * h + i2) * w + j2) * c + e];
              }
            }
          }
        }
      }
      let sum = 0;
      const S = P.map((row, a) => row.map((v, e) => symmetrize ? (v + P[e][a]) / 2 : v));
      for (const row of S) for (const v of row) sum += v;
      const J = S.map((row) => row.map((v) => Math.max(v / sum, eps)));
      const pi = J.map((row) => row.reduce((s, v) => s + v, 0));
      const pj = J[0].map((_, e) => J.reduce((s, row) => s + row[e], 0));
      let I = 0;
      for (let a = 0; a < c; a++) {
        for (let e = 0; e < c; e++) {
          I += J[a][e] * (Math.log(J[a][e]) - marginalWeight * (Math.log(pi[a]) + Math.log(pj[e])));
        }
      }
      total += I;
      count++;
    }
  }
  return total / count;
}

function oneHot(labels: number[], shape: [number, number, number], c: number): tf.Tensor4D {
  return tf.tidy(() =>
    tf.reshape(tf.cast(tf.oneHot(tf.tensor1d(labels, "int32"), c), "float32"), [
      ...shape,
      c,
    ]) as tf.Tensor4D
  );
}

for (const r of [0, 1, 2, 3]) {
  Deno.test(`mutualInformation() equals a brute-force loop over pixels, radius ${r}`, () => {
    const shape: [number, number, number, number] = [2, 5, 6, 3];
    const p = randomProbs(shape, 10 + r);
    const q = randomProbs(shape, 20 + r);
    const got = mutualInformation(p, q, { radius: r }).dataSync()[0];
    assertClose(
      got,
      bruteForceMI(p.dataSync() as Float32Array, q.dataSync() as Float32Array, shape, r),
      1e-4,
    );
    tf.dispose([p, q]);
  });
}

Deno.test("mutualInformation() is non-negative on random maps", () => {
  for (let s = 0; s < 5; s++) {
    const p = randomProbs([1, 6, 6, 4], 100 + s);
    const q = randomProbs([1, 6, 6, 4], 200 + s);
    assert.ok(mutualInformation(p, q).dataSync()[0] >= -1e-6);
    tf.dispose([p, q]);
  }
});

Deno.test("mutualInformation() is zero for independent maps", () => {
  // p varies along rows only, q along columns only, over full periods: the joint factorises
  // for radius 0.
  const h = 4, w = 4;
  const pArr: number[] = [], qArr: number[] = [];
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      pArr.push(i % 2, 1 - (i % 2));
      qArr.push(j % 2, 1 - (j % 2));
    }
  }
  const p = tf.tensor4d(pArr, [1, h, w, 2]);
  const q = tf.tensor4d(qArr, [1, h, w, 2]);
  assertClose(mutualInformation(p, q, { radius: 0 }).dataSync()[0], 0, 1e-5);
  // Constant (uninformative) maps are independent of anything, at every displacement.
  const u = tf.fill([2, 5, 5, 3], 1 / 3) as tf.Tensor4D;
  const rnd = randomProbs([2, 5, 5, 3], 7);
  assertClose(mutualInformation(u, rnd, { radius: 1 }).dataSync()[0], 0, 1e-5);
  tf.dispose([p, q, u, rnd]);
});

Deno.test("mutualInformation() of identical one-hot maps equals the marginal entropy", () => {
  const labels = [0, 0, 1, 2, 2, 2, 1, 0, 2, 2, 1, 1];
  const p = oneHot(labels, [1, 3, 4], 3);
  const counts = [0, 1, 2].map((k) => labels.filter((l) => l === k).length / labels.length);
  const entropy = -counts.reduce((s, v) => s + v * Math.log(v), 0);
  assertClose(mutualInformation(p, p, { radius: 0 }).dataSync()[0], entropy, 1e-5);
  tf.dispose(p);
});

Deno.test("mutualInformation() with marginal weight 0.5 is minus the conditional entropy", () => {
  // Identical one-hot maps: the plain MI is the marginal entropy (it rewards balanced classes),
  // while w = 0.5 leaves -H(j | i) = 0 whatever the class proportions.
  const labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2];
  const p = oneHot(labels, [1, 3, 4], 3);
  // (the eps clamp of the six empty cells costs ~1e-5)
  assertClose(mutualInformation(p, p, { radius: 0, marginalWeight: 0.5 }).dataSync()[0], 0, 1e-4);
  assert.ok(mutualInformation(p, p, { radius: 0 }).dataSync()[0] > 0.7);
  // Random maps: -H(j | i) of the symmetrised joint, computed here by hand.
  const a = randomProbs([1, 4, 4, 3], 81), b = randomProbs([1, 4, 4, 3], 82);
  const pa = a.arraySync()[0].flat(), pb = b.arraySync()[0].flat();
  const J = [0, 1, 2].map((i) =>
    [0, 1, 2].map((j) => {
      let s = 0;
      for (let x = 0; x < pa.length; x++) s += (pa[x][i] * pb[x][j] + pa[x][j] * pb[x][i]) / 2;
      return s;
    })
  );
  const total = J.flat().reduce((x, y) => x + y, 0);
  let conditional = 0;
  for (let i = 0; i < 3; i++) {
    const row = J[i].reduce((x, y) => x + y, 0) / total;
    for (let j = 0; j < 3; j++) conditional -= (J[i][j] / total) * Math.log(J[i][j] / total / row);
  }
  assertClose(
    mutualInformation(a, b, { radius: 0, marginalWeight: 0.5 }).dataSync()[0],
    -conditional,
    1e-4,
  );
  tf.dispose([p, a, b]);
});

Deno.test("mutualInformation() is invariant to permuting one side's classes (unsymmetrised)", () => {
  const p = randomProbs([2, 6, 6, 4], 31);
  const q = randomProbs([2, 6, 6, 4], 32);
  const perm = tf.tensor1d([2, 0, 3, 1], "int32");
  const qPerm = tf.gather(q, perm, 3) as tf.Tensor4D;
  const opts = { symmetrize: false };
  assertClose(
    mutualInformation(p, qPerm, opts).dataSync()[0],
    mutualInformation(p, q, opts).dataSync()[0],
    1e-5,
  );
  // The symmetrised (IIC) form is invariant when both sides are permuted alike.
  const pPerm = tf.gather(p, perm, 3) as tf.Tensor4D;
  assertClose(
    mutualInformation(pPerm, qPerm).dataSync()[0],
    mutualInformation(p, q).dataSync()[0],
    1e-5,
  );
  // And the unsymmetrised form equals a brute-force loop too.
  assertClose(
    mutualInformation(p, q, { ...opts, radius: 1 }).dataSync()[0],
    bruteForceMI(
      p.dataSync() as Float32Array,
      q.dataSync() as Float32Array,
      [2, 6, 6, 4],
      1,
      1.1920929e-7,
      false,
    ),
    1e-4,
  );
  tf.dispose([p, q, perm, qPerm, pPerm]);
});

Deno.test("mutualInformation() respects the valid-pixel mask", () => {
  const p = randomProbs([1, 5, 5, 3], 41);
  const q = randomProbs([1, 5, 5, 3], 42);
  const maskArr = Array.from({ length: 25 }, (_, i) => (i % 5 < 3 ? 1 : 0));
  const mask = tf.tensor4d(maskArr, [1, 5, 5, 1]);
  const pm = tf.mul(p, mask) as tf.Tensor4D, qm = tf.mul(q, mask) as tf.Tensor4D;
  const expected = bruteForceMI(pm.dataSync() as Float32Array, qm.dataSync() as Float32Array, [
    1,
    5,
    5,
    3,
  ], 1);
  assertClose(mutualInformation(p, q, { mask }).dataSync()[0], expected, 1e-4);
  tf.dispose([p, q, mask, pm, qm]);
});

Deno.test("mutualInformation() gradient matches finite differences", () => {
  const logits = tf.randomNormal([1, 3, 3, 3], 0, 1.5, "float32", 51);
  const q = randomProbs([1, 3, 3, 3], 52);
  const f = (l: tf.Tensor) => mutualInformation(tf.softmax(l) as tf.Tensor4D, q, { radius: 1 });
  const g = tf.grad(f)(logits).dataSync();
  const base = logits.dataSync();
  const h = 1e-2;
  for (let i = 0; i < base.length; i++) {
    const plus = base.slice(), minus = base.slice();
    plus[i] += h;
    minus[i] -= h;
    const fd = tf.tidy(() =>
      (f(tf.tensor(plus, logits.shape)).dataSync()[0] -
        f(tf.tensor(minus, logits.shape)).dataSync()[0]) / (2 * h)
    );
    assertClose(g[i], fd, 5e-3, `d/dlogit[${i}]`);
  }
});

Deno.test("mutualInformation() leaks no tensors, with and without gradients", async () => {
  const p = randomProbs([2, 6, 6, 4], 61);
  const q = randomProbs([2, 6, 6, 4], 62);
  await assertNoLeak(() => {
    tf.dispose(mutualInformation(p, q, { radius: 2 }));
    tf.dispose(
      tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        mutualInformation(a as tf.Tensor4D, b as tf.Tensor4D)
      )([p, q]),
    );
  });
  tf.dispose([p, q]);
});

Deno.test("mutualInformation() with a marginal weight equals the brute-force IIC form", () => {
  const shape: [number, number, number, number] = [2, 5, 5, 3];
  const p = randomProbs(shape, 71);
  const q = randomProbs(shape, 72);
  for (const w of [0.5, 2]) {
    const got = mutualInformation(p, q, { radius: 1, marginalWeight: w }).dataSync()[0];
    const expected = bruteForceMI(
      p.dataSync() as Float32Array,
      q.dataSync() as Float32Array,
      shape,
      1,
      1.1920929e-7,
      true,
      w,
    );
    assertClose(got, expected, 1e-4, `weight ${w}`);
  }
  tf.dispose([p, q]);
});
