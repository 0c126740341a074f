/**
 * Segmentation metrics on label volumes.
 *
 * @module
 */

/**
 * Dice of each class `1..numClasses-1` between two label arrays of one 3D volume.
 *
 * Empty cases: when both the prediction and the truth lack a class, its Dice is **1** (nothing
 * to find, nothing found); when only one of them has it, the Dice is 0.
 *
 * @example
 * ```ts
 * import { diceScores } from "./metrics.ts";
 * diceScores(new Uint8Array([0, 1, 1]), new Uint8Array([0, 1, 0]), 2); // [2/3]
 * ```
 */
export function diceScores(pred: Uint8Array, truth: Uint8Array, numClasses: number): number[] {
  if (pred.length !== truth.length) {
    throw new Error(`diceScores: ${pred.length} predicted voxels for ${truth.length} labels`);
  }
  const inter = new Float64Array(numClasses);
  const np = new Float64Array(numClasses);
  const nt = new Float64Array(numClasses);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i], t = truth[i];
    np[p]++;
    nt[t]++;
    if (p === t) inter[p]++;
  }
  const out: number[] = [];
  for (let c = 1; c < numClasses; c++) {
    const denom = np[c] + nt[c];
    out.push(denom === 0 ? 1 : (2 * inter[c]) / denom);
  }
  return out;
}

/** Mean of the per-volume scores, per class. */
export function meanPerClass(rows: number[][]): number[] {
  if (rows.length === 0) return [];
  return rows[0].map((_, c) => rows.reduce((s, r) => s + r[c], 0) / rows.length);
}

/**
 * The surface of a binary mask: voxels of the mask with at least one of their 6 face
 * neighbours outside it. Neighbours beyond the volume count as outside (as MedPy's
 * `binary_erosion` with `border_value=0`), so mask voxels on the border are surface voxels.
 *
 * @param mask Non-zero = inside, `d * h * w` values, row-major `[d, h, w]`.
 */
export function surfaceVoxels(mask: ArrayLike<number>, shape: readonly number[]): Uint8Array {
  const [d, h, w] = shape;
  const hw = h * w;
  const out = new Uint8Array(d * hw);
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const row = z * hw + y * w;
      for (let x = 0; x < w; x++) {
        const i = row + x;
        if (!mask[i]) continue;
        out[i] = z === 0 || z === d - 1 || y === 0 || y === h - 1 || x === 0 || x === w - 1 ||
            !mask[i - hw] || !mask[i + hw] || !mask[i - w] || !mask[i + w] || !mask[i - 1] ||
            !mask[i + 1]
          ? 1
          : 0;
      }
    }
  }
  return out;
}

/**
 * One pass of the Felzenszwalb-Huttenlocher lower-envelope transform along a line:
 * `out[i] = min_q f[q] + ((i - q) * step)^2`, with `Infinity` for points outside the feature
 * set. `v` and `z` are scratch buffers of at least `n` and `n + 1` values.
 */
function edt1d(
  f: Float64Array,
  n: number,
  step: number,
  out: Float64Array,
  v: Int32Array,
  z: Float64Array,
): void {
  let k = -1;
  const s2 = step * step;
  for (let q = 0; q < n; q++) {
    const fq = f[q];
    if (fq === Infinity) continue;
    const cq = fq + q * q * s2;
    while (k >= 0) {
      const p = v[k];
      // Abscissa (in index units) where the parabolas of p and q cross.
      const s = (cq - (f[p] + p * p * s2)) / (2 * s2 * (q - p));
      if (s <= z[k]) k--;
      else {
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = Infinity;
        break;
      }
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -Infinity;
      z[1] = Infinity;
    }
  }
  if (k < 0) {
    out.fill(Infinity, 0, n);
    return;
  }
  let j = 0;
  for (let q = 0; q < n; q++) {
    while (z[j + 1] < q) j++;
    const dq = (q - v[j]) * step;
    out[q] = dq * dq + f[v[j]];
  }
}

/**
 * Exact squared Euclidean distance from every voxel to the nearest non-zero voxel of
 * `features`, in physical units (`spacing`, `[d, h, w]`), by the separable algorithm of
 * Felzenszwalb and Huttenlocher (one 1D lower-envelope pass per axis, linear time). Voxels are
 * `Infinity` when `features` is empty.
 */
export function squaredDistanceTransform(
  features: ArrayLike<number>,
  shape: readonly number[],
  spacing: readonly number[] = [1, 1, 1],
): Float64Array {
  const [d, h, w] = shape;
  const n = d * h * w;
  const dist = new Float64Array(n);
  for (let i = 0; i < n; i++) dist[i] = features[i] ? 0 : Infinity;
  const longest = Math.max(d, h, w);
  const f = new Float64Array(longest);
  const out = new Float64Array(longest);
  const v = new Int32Array(longest);
  const z = new Float64Array(longest + 1);
  // Axis (length, stride, spacing) and the starts of its lines.
  const axes: [number, number, number, number[]][] = [];
  const starts = (outer: number, outerStride: number, inner: number, innerStride: number) => {
    const s: number[] = [];
    for (let a = 0; a < outer; a++) {
      for (let b = 0; b < inner; b++) s.push(a * outerStride + b * innerStride);
    }
    return s;
  };
  axes.push([w, 1, spacing[2], starts(d, h * w, h, w)]);
  axes.push([h, w, spacing[1], starts(d, h * w, w, 1)]);
  axes.push([d, h * w, spacing[0], starts(h, w, w, 1)]);
  for (const [len, stride, step, lineStarts] of axes) {
    if (len === 0) continue;
    for (const start of lineStarts) {
      let any = false;
      for (let i = 0; i < len; i++) {
        const val = dist[start + i * stride];
        f[i] = val;
        if (val !== Infinity) any = true;
      }
      if (!any) continue;
      edt1d(f, len, step, out, v, z);
      for (let i = 0; i < len; i++) dist[start + i * stride] = out[i];
    }
  }
  return dist;
}

/** The `q`-th percentile (0-100) of `values` with linear interpolation (numpy's default). */
export function percentile(values: Float64Array | number[], q: number): number {
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const pos = (q / 100) * (n - 1);
  const lo = Math.floor(pos), hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Write into `out` (from `offset`) the distances from every surface voxel of `from` to the
 * nearest surface voxel of `to`, given the squared distance transform of `to`'s surface;
 * returns the next offset.
 */
function surfaceDistances(
  fromSurface: Uint8Array,
  toSquaredDistance: Float64Array,
  out: Float64Array,
  offset: number,
): number {
  for (let i = 0; i < fromSurface.length; i++) {
    if (fromSurface[i]) out[offset++] = Math.sqrt(toSquaredDistance[i]);
  }
  return offset;
}

const count = (mask: Uint8Array) => mask.reduce((s, v) => s + v, 0);

/**
 * 95th percentile Hausdorff distance (HD95) of class `classId` between two label volumes, as
 * MedPy's `hd95`: the surfaces of both masks are their voxels with a 6-neighbour outside the
 * mask ({@linkcode surfaceVoxels}); the distances from each surface voxel of the prediction to
 * the truth's surface and from each of the truth's to the prediction's are pooled, and their
 * 95th percentile (linear interpolation) is returned. Distances come from an exact Euclidean
 * distance transform ({@linkcode squaredDistanceTransform}), in mm when `spacing` is given,
 * else in voxels.
 *
 * Empty cases: when the class is absent from **both** volumes the HD95 is **0** (nothing to
 * find, nothing found); when it is absent from only one of them it is undefined and **`NaN`**
 * is returned (MedPy raises; the evaluation reports `NaN` per volume, `null` in JSON, and
 * averages a class's HD95 over the volumes where it is defined).
 *
 * @param pred Predicted labels, `d * h * w` values, row-major `[d, h, w]`.
 * @param truth Reference labels, same layout.
 * @param shape `[d, h, w]`.
 * @param spacing Voxel size `[d, h, w]` in mm; `undefined` = 1 (distances in voxels).
 * @param classId The label value of the class.
 *
 * @example
 * ```ts
 * import { hd95 } from "./metrics.ts";
 * const a = new Uint8Array(4 * 4 * 4), b = new Uint8Array(4 * 4 * 4);
 * a[0] = 1; // voxel (0, 0, 0)
 * b[2] = 1; // voxel (0, 0, 2)
 * hd95(a, b, [4, 4, 4], [3, 2, 0.5], 1); // 1 (2 voxels x 0.5 mm)
 * ```
 */
export function hd95(
  pred: ArrayLike<number>,
  truth: ArrayLike<number>,
  shape: readonly [number, number, number] | readonly number[],
  spacing: readonly number[] | undefined,
  classId: number,
): number {
  const [d, h, w] = shape;
  const n = d * h * w;
  if (pred.length !== n || truth.length !== n) {
    throw new Error(
      `hd95: shape [${shape.join(", ")}] has ${n} voxels, got ${pred.length} predicted and ` +
        `${truth.length} reference labels`,
    );
  }
  // Bounding box of both masks, grown by one voxel: distances between voxels of the box only
  // involve features inside it, so the transform on the box is exact, and much smaller.
  let na = 0, nb = 0;
  const lo = [d, h, w], hi = [-1, -1, -1];
  for (let z = 0, i = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const inA = pred[i] === classId, inB = truth[i] === classId;
        if (!inA && !inB) continue;
        if (inA) na++;
        if (inB) nb++;
        if (z < lo[0]) lo[0] = z;
        if (z > hi[0]) hi[0] = z;
        if (y < lo[1]) lo[1] = y;
        if (y > hi[1]) hi[1] = y;
        if (x < lo[2]) lo[2] = x;
        if (x > hi[2]) hi[2] = x;
      }
    }
  }
  if (na === 0 && nb === 0) return 0;
  if (na === 0 || nb === 0) return NaN;
  const from = lo.map((v) => Math.max(v - 1, 0));
  const box = hi.map((v, k) => Math.min(v + 1, shape[k] - 1) - from[k] + 1);
  const a = new Uint8Array(box[0] * box[1] * box[2]), b = new Uint8Array(a.length);
  for (let z = 0, j = 0; z < box[0]; z++) {
    for (let y = 0; y < box[1]; y++) {
      const row = ((z + from[0]) * h + y + from[1]) * w + from[2];
      for (let x = 0; x < box[2]; x++, j++) {
        if (pred[row + x] === classId) a[j] = 1;
        if (truth[row + x] === classId) b[j] = 1;
      }
    }
  }
  shape = box;
  const sa = surfaceVoxels(a, shape), sb = surfaceVoxels(b, shape);
  const sp = spacing ?? [1, 1, 1];
  const distances = new Float64Array(count(sa) + count(sb));
  const k = surfaceDistances(sa, squaredDistanceTransform(sb, shape, sp), distances, 0);
  surfaceDistances(sb, squaredDistanceTransform(sa, shape, sp), distances, k);
  return percentile(distances, 95);
}

/**
 * Mean of the per-volume scores of each class over the volumes where the score is defined
 * (not `NaN`), and the number of volumes where it is not. A class undefined everywhere has a
 * `NaN` mean.
 */
export function nanMeanPerClass(rows: number[][]): { mean: number[]; undefinedCount: number[] } {
  if (rows.length === 0) return { mean: [], undefinedCount: [] };
  const mean: number[] = [], undefinedCount: number[] = [];
  for (let c = 0; c < rows[0].length; c++) {
    let sum = 0, count = 0;
    for (const r of rows) if (!Number.isNaN(r[c])) (sum += r[c]), count++;
    mean.push(count > 0 ? sum / count : NaN);
    undefinedCount.push(rows.length - count);
  }
  return { mean, undefinedCount };
}
