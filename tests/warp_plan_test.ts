// The warp's gather plan (core/warp.ts) is computed on the host with one flat loop; these tests
// hold it to the per-pixel version it replaced (copied below), bit for bit, through the same tf
// ops, on odd shapes and maps that put corners outside the image.
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { Rng } from "../core/rng.ts";
import { type Affine, sampleRandomAffine, validMaskAffine, warpAffine } from "../core/warp.ts";
import { useWasm } from "./_helpers.ts";

await useWasm();

// The reference: the plan as it was written before (a tuple per pixel, an array of corners).
function source(m: Affine, n: number, i: number, j: number, h: number, w: number) {
  const u = (2 * j + 1) / w - 1;
  const v = (2 * i + 1) / h - 1;
  const o = 6 * n;
  const su = m[o] * u + m[o + 1] * v + m[o + 2];
  const sv = m[o + 3] * u + m[o + 4] * v + m[o + 5];
  return [((su + 1) * w - 1) / 2, ((sv + 1) * h - 1) / 2];
}

function referencePlan(m: Affine, b: number, h: number, w: number, nearest: boolean) {
  const n = b * h * w;
  const corners = nearest ? 1 : 4;
  const indices = new Int32Array(corners * n);
  const weights = new Float32Array(corners * n);
  let p = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++, p++) {
        const [sx, sy] = source(m, bi, i, j, h, w);
        if (nearest) {
          const x = Math.round(sx), y = Math.round(sy);
          if (x >= 0 && x < w && y >= 0 && y < h) {
            indices[p] = (bi * h + y) * w + x;
            weights[p] = 1;
          }
          continue;
        }
        const x0 = Math.floor(sx), y0 = Math.floor(sy);
        const fx = sx - x0, fy = sy - y0;
        const cs: Array<[number, number, number]> = [
          [x0, y0, (1 - fx) * (1 - fy)],
          [x0 + 1, y0, fx * (1 - fy)],
          [x0, y0 + 1, (1 - fx) * fy],
          [x0 + 1, y0 + 1, fx * fy],
        ];
        for (let k = 0; k < 4; k++) {
          const [x, y, wt] = cs[k];
          if (x >= 0 && x < w && y >= 0 && y < h && wt > 0) {
            indices[k * n + p] = (bi * h + y) * w + x;
            weights[k * n + p] = wt;
          }
        }
      }
    }
  }
  return { indices, weights, corners };
}

function referenceWarp(x: tf.Tensor4D, m: Affine, nearest: boolean): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const { indices, weights, corners } = referencePlan(m, b, h, w, nearest);
  return tf.tidy(() => {
    const gathered = tf.mul(
      tf.gather(tf.reshape(x, [b * h * w, c]), tf.tensor1d(indices, "int32")),
      tf.tensor2d(weights, [corners * b * h * w, 1]),
    );
    const summed = corners === 1
      ? gathered
      : tf.sum(tf.reshape(gathered, [corners, b * h * w, c]), 0);
    return tf.reshape(summed, [b, h, w, c]) as tf.Tensor4D;
  });
}

function referenceMask(m: Affine, b: number, h: number, w: number): Float32Array {
  const out = new Float32Array(b * h * w);
  let p = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++, p++) {
        const [sx, sy] = source(m, bi, i, j, h, w);
        out[p] = sx >= -1e-6 && sx <= w - 1 + 1e-6 && sy >= -1e-6 && sy <= h - 1 + 1e-6 ? 1 : 0;
      }
    }
  }
  return out;
}

const SHAPES: Array<[number, number, number, number]> = [[3, 7, 13, 2], [2, 17, 9, 5], [
  1,
  1,
  3,
  1,
]];

Deno.test("warpAffine() and validMaskAffine() match the per-pixel plan bit for bit", () => {
  const rng = new Rng(11);
  for (const [b, h, w, c] of SHAPES) {
    for (const scale of [[0.9, 1.1], [0.4, 2.5]] as const) {
      const m = sampleRandomAffine(rng, b, {
        rotation: 40,
        shear: 15,
        scale,
        translate: 0.3,
        flipProbability: 0.5,
      });
      const x = tf.randomUniform([b, h, w, c], -1, 1, "float32", 5) as tf.Tensor4D;
      for (const nearest of [false, true]) {
        const got = warpAffine(x, m, nearest ? "nearest" : "bilinear");
        const want = referenceWarp(x, m, nearest);
        assert.deepEqual(got.dataSync(), want.dataSync(), `${b}x${h}x${w}x${c} nearest ${nearest}`);
        tf.dispose([got, want]);
      }
      const mask = validMaskAffine(m, b, h, w);
      assert.deepEqual(mask.dataSync(), referenceMask(m, b, h, w));
      tf.dispose([x, mask]);
    }
  }
});
