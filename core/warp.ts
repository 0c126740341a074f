/**
 * Affine sampling maps and the bilinear / nearest warp they drive: the geometry behind the
 * trainer's augmentation and the `affine`, `flip` and `compose` transform plugins.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { Rng } from "./rng.ts";

/**
 * Affine maps per image in normalised coordinates (PyTorch `affine_grid`, `align_corners=False`):
 * the output pixel at normalised `(u, v)` samples the input at `(a u + b v + tx, c u + d v + ty)`.
 * Six numbers per image: `[a, b, tx, c, d, ty]`.
 */
export type Affine = Float64Array;

/** The identity for `batch` images. */
export function identityAffine(batch: number): Affine {
  const m = new Float64Array(6 * batch);
  for (let i = 0; i < batch; i++) {
    m[6 * i] = 1;
    m[6 * i + 4] = 1;
  }
  return m;
}

/** `first` then `second` applied to an image: sampling maps compose as `first ∘ second`. */
export function composeAffine(first: Affine, second: Affine): Affine {
  // T2(T1(x))(p) = T1(x)(A2 p) = x(A1 A2 p): the sampling map of the composition is A1 A2.
  const out = new Float64Array(first.length);
  for (let i = 0; i < first.length; i += 6) {
    const [a1, b1, x1, c1, d1, y1] = first.subarray(i, i + 6);
    const [a2, b2, x2, c2, d2, y2] = second.subarray(i, i + 6);
    out[i] = a1 * a2 + b1 * c2;
    out[i + 1] = a1 * b2 + b1 * d2;
    out[i + 2] = a1 * x2 + b1 * y2 + x1;
    out[i + 3] = c1 * a2 + d1 * c2;
    out[i + 4] = c1 * b2 + d1 * d2;
    out[i + 5] = c1 * x2 + d1 * y2 + y1;
  }
  return out;
}

/** The inverse sampling maps. */
export function invertAffine(m: Affine): Affine {
  const out = new Float64Array(m.length);
  for (let i = 0; i < m.length; i += 6) {
    const [a, b, tx, c, d, ty] = m.subarray(i, i + 6);
    const det = a * d - b * c;
    if (Math.abs(det) < 1e-12) throw new Error("Cannot invert a singular affine map");
    const ia = d / det, ib = -b / det, ic = -c / det, id = a / det;
    out[i] = ia;
    out[i + 1] = ib;
    out[i + 2] = -(ia * tx + ib * ty);
    out[i + 3] = ic;
    out[i + 4] = id;
    out[i + 5] = -(ic * tx + id * ty);
  }
  return out;
}

/** Gather indices and weights of a warp, computed once per batch on the host. */
interface WarpPlan {
  indices: Int32Array;
  weights: Float32Array;
  corners: number;
}

/**
 * The gather plan of a warp: for each output pixel `(i, j)` of image `bi`, the flat indices of
 * its source pixels and their weights (zero weight and index 0 where a corner falls outside).
 * Output pixel `(i, j)` is at normalised `(u, v) = ((2j + 1) / w - 1, (2i + 1) / h - 1)` and
 * samples pixel `(sx, sy) = (((a u + b v + tx) + 1) w - 1) / 2, ((c u + d v + ty) + 1) h - 1) / 2)`.
 * One loop without per-pixel arrays (it runs on the host twice per training step; the version
 * that built a tuple per pixel and an array of corners took ~7 ms of a 500 ms ACDC-CPU step),
 * with the same floating-point operations in the same order, so the same plan to the bit.
 */
function plan(m: Affine, b: number, h: number, w: number, nearest: boolean): WarpPlan {
  const n = b * h * w;
  const corners = nearest ? 1 : 4;
  const indices = new Int32Array(corners * n);
  const weights = new Float32Array(corners * n);
  const n2 = 2 * n, n3 = 3 * n;
  let p = 0;
  for (let bi = 0; bi < b; bi++) {
    const o = 6 * bi;
    const m0 = m[o], m1 = m[o + 1], m2 = m[o + 2], m3 = m[o + 3], m4 = m[o + 4], m5 = m[o + 5];
    const base = bi * h * w;
    for (let i = 0; i < h; i++) {
      const v = (2 * i + 1) / h - 1;
      const m1v = m1 * v, m4v = m4 * v;
      for (let j = 0; j < w; j++, p++) {
        const u = (2 * j + 1) / w - 1;
        const sx = ((m0 * u + m1v + m2 + 1) * w - 1) / 2;
        const sy = ((m3 * u + m4v + m5 + 1) * h - 1) / 2;
        if (nearest) {
          const x = Math.round(sx), y = Math.round(sy);
          if (x >= 0 && x < w && y >= 0 && y < h) {
            indices[p] = base + y * w + x;
            weights[p] = 1;
          }
          continue;
        }
        const x0 = Math.floor(sx), y0 = Math.floor(sy);
        const fx = sx - x0, fy = sy - y0;
        const gx = 1 - fx, gy = 1 - fy;
        const x1 = x0 + 1, y1 = y0 + 1;
        const inX0 = x0 >= 0 && x0 < w, inX1 = x1 >= 0 && x1 < w;
        const inY0 = y0 >= 0 && y0 < h, inY1 = y1 >= 0 && y1 < h;
        const row0 = base + y0 * w, row1 = row0 + w;
        let wt = gx * gy;
        if (inX0 && inY0 && wt > 0) {
          indices[p] = row0 + x0;
          weights[p] = wt;
        }
        wt = fx * gy;
        if (inX1 && inY0 && wt > 0) {
          indices[n + p] = row0 + x1;
          weights[n + p] = wt;
        }
        wt = gx * fy;
        if (inX0 && inY1 && wt > 0) {
          indices[n2 + p] = row1 + x0;
          weights[n2 + p] = wt;
        }
        wt = fx * fy;
        if (inX1 && inY1 && wt > 0) {
          indices[n3 + p] = row1 + x1;
          weights[n3 + p] = wt;
        }
      }
    }
  }
  return { indices, weights, corners };
}

/**
 * Warp `x` `[B, H, W, C]` by the sampling maps `m` (bilinear or nearest, zeros outside).
 * Differentiable in `x`: the gradient of the gather is a segment sum.
 */
export function warpAffine(
  x: tf.Tensor4D,
  m: Affine,
  interpolation: "bilinear" | "nearest" = "bilinear",
): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  if (m.length !== 6 * b) throw new Error(`warpAffine: ${m.length / 6} maps for ${b} images`);
  const { indices, weights, corners } = plan(m, b, h, w, interpolation === "nearest");
  return tf.tidy(() => {
    const flat = tf.reshape(x, [b * h * w, c]);
    const idx = tf.tensor1d(indices, "int32");
    const wts = tf.tensor2d(weights, [corners * b * h * w, 1]);
    const gathered = tf.mul(tf.gather(flat, idx), wts);
    const summed = corners === 1
      ? gathered
      : tf.sum(tf.reshape(gathered, [corners, b * h * w, c]), 0);
    return tf.reshape(summed, [b, h, w, c]) as tf.Tensor4D;
  });
}

/**
 * `[B, H, W, 1]` mask: 1 where the sampling map `m` reads only pixels inside the image (all
 * bilinear corners inside, up to half a pixel of tolerance), else 0.
 */
export function validMaskAffine(m: Affine, b: number, h: number, w: number): tf.Tensor4D {
  const out = new Float32Array(b * h * w);
  let p = 0;
  for (let bi = 0; bi < b; bi++) {
    const o = 6 * bi;
    const m0 = m[o], m1 = m[o + 1], m2 = m[o + 2], m3 = m[o + 3], m4 = m[o + 4], m5 = m[o + 5];
    for (let i = 0; i < h; i++) {
      const v = (2 * i + 1) / h - 1;
      const m1v = m1 * v, m4v = m4 * v;
      for (let j = 0; j < w; j++, p++) {
        // (sx, sy) as in plan()
        const u = (2 * j + 1) / w - 1;
        const sx = ((m0 * u + m1v + m2 + 1) * w - 1) / 2;
        const sy = ((m3 * u + m4v + m5 + 1) * h - 1) / 2;
        out[p] = sx >= -1e-6 && sx <= w - 1 + 1e-6 && sy >= -1e-6 && sy <= h - 1 + 1e-6 ? 1 : 0;
      }
    }
  }
  return tf.tensor4d(out, [b, h, w, 1]);
}

/** The ranges {@linkcode sampleRandomAffine} draws from (the `affine` transform's options). */
export interface AffineSampling {
  /** Rotation drawn uniformly in [-rotation, rotation] degrees. */
  rotation: number;
  /** Shear drawn uniformly in [-shear, shear] degrees. */
  shear: number;
  /** Scale drawn uniformly in [min, max]. */
  scale: readonly [number, number];
  /** Translation drawn uniformly in [-translate, translate] (fraction of the half side). */
  translate: number;
  /** Probability of a left-right flip. */
  flipProbability: number;
}

const DEG = Math.PI / 180;

/**
 * The IIC matrix `[[cos a * s, -sin(a + sh) * s], [sin a * s, cos(a + sh) * s]]`, with a
 * translation and an optional flip, for each image.
 */
export function sampleRandomAffine(rng: Rng, batch: number, o: AffineSampling): Affine {
  const m = new Float64Array(6 * batch);
  for (let i = 0; i < batch; i++) {
    const a = rng.uniform(-o.rotation, o.rotation) * DEG;
    const sh = rng.uniform(-o.shear, o.shear) * DEG;
    const s = rng.uniform(o.scale[0], o.scale[1]);
    const tx = rng.uniform(-o.translate, o.translate);
    const ty = rng.uniform(-o.translate, o.translate);
    const flip = o.flipProbability > 0 && rng.next() < o.flipProbability ? -1 : 1;
    m.set([
      Math.cos(a) * s * flip,
      -Math.sin(a + sh) * s,
      tx,
      Math.sin(a) * s * flip,
      Math.cos(a + sh) * s,
      ty,
    ], 6 * i);
  }
  return m;
}
