import assert from "node:assert/strict";
import {
  hd95,
  nanMeanPerClass,
  percentile,
  squaredDistanceTransform,
  surfaceVoxels,
} from "../core/metrics.ts";
import { Rng } from "../core/rng.ts";
import { assertClose } from "./_helpers.ts";

type Shape = [number, number, number];

const coords = (
  i: number,
  [, h, w]: Shape,
) => [Math.floor(i / (h * w)), Math.floor(i / w) % h, i % w];

/** Surface by definition: in the mask, with a 6-neighbour outside the mask or the volume. */
function bruteSurface(mask: Uint8Array, shape: Shape): number[] {
  const out: number[] = [];
  const inside = (z: number, y: number, x: number) =>
    z >= 0 && y >= 0 && x >= 0 && z < shape[0] && y < shape[1] && x < shape[2] &&
    mask[(z * shape[1] + y) * shape[2] + x] === 1;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const [z, y, x] = coords(i, shape);
    const steps = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]];
    if (steps.some(([a, b, c]) => !inside(z + a, y + b, x + c))) out.push(i);
  }
  return out;
}

function distance(i: number, j: number, shape: Shape, sp: number[]): number {
  const a = coords(i, shape), b = coords(j, shape);
  return Math.hypot((a[0] - b[0]) * sp[0], (a[1] - b[1]) * sp[1], (a[2] - b[2]) * sp[2]);
}

/** HD95 by O(n^2) over surface pairs, numpy-style percentile written out. */
function bruteHd95(p: Uint8Array, t: Uint8Array, shape: Shape, sp: number[], c: number): number {
  const a = Uint8Array.from(p, (v) => (v === c ? 1 : 0));
  const b = Uint8Array.from(t, (v) => (v === c ? 1 : 0));
  const sa = bruteSurface(a, shape), sb = bruteSurface(b, shape);
  if (sa.length === 0 && sb.length === 0) return 0;
  if (sa.length === 0 || sb.length === 0) return NaN;
  const nearest = (i: number, set: number[]) =>
    Math.min(...set.map((j) => distance(i, j, shape, sp)));
  const all = [...sa.map((i) => nearest(i, sb)), ...sb.map((i) => nearest(i, sa))];
  all.sort((x, y) => x - y);
  const pos = 0.95 * (all.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, all.length - 1);
  return all[lo] + (all[hi] - all[lo]) * (pos - lo);
}

function randomLabels(rng: Rng, n: number, classes: number, p: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => (rng.next() < p ? 1 + rng.int(classes - 1) : 0));
}

/** A label volume with a box of `label` at `[z0, y0, x0]` of side `size` (per axis). */
function box(shape: Shape, origin: number[], size: number[], label = 1): Uint8Array {
  const out = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (let z = origin[0]; z < origin[0] + size[0]; z++) {
    for (let y = origin[1]; y < origin[1] + size[1]; y++) {
      for (let x = origin[2]; x < origin[2] + size[2]; x++) {
        out[(z * shape[1] + y) * shape[2] + x] = label;
      }
    }
  }
  return out;
}

Deno.test("surfaceVoxels() marks mask voxels with a 6-neighbour outside (border included)", () => {
  const rng = new Rng(11);
  for (const shape of [[3, 5, 4], [1, 6, 6], [5, 5, 5]] as Shape[]) {
    const n = shape[0] * shape[1] * shape[2];
    const mask = Uint8Array.from({ length: n }, () => (rng.next() < 0.7 ? 1 : 0));
    const s = surfaceVoxels(mask, shape);
    assert.deepEqual([...s.keys()].filter((i) => s[i]), bruteSurface(mask, shape));
  }
  // A 3 x 3 x 3 cube inside a 5^3 volume: 26 surface voxels, the centre is not one.
  const cube = box([5, 5, 5], [1, 1, 1], [3, 3, 3]);
  const s = surfaceVoxels(cube, [5, 5, 5]);
  assert.equal(s.reduce((a, v) => a + v, 0), 26);
  assert.equal(s[(2 * 5 + 2) * 5 + 2], 0);
});

Deno.test("squaredDistanceTransform() is the exact anisotropic EDT (brute force)", () => {
  const rng = new Rng(5);
  const shape: Shape = [4, 6, 5];
  const sp = [2.5, 0.7, 1.3];
  const n = 4 * 6 * 5;
  for (const density of [0.02, 0.1, 0.5]) {
    const feat = Uint8Array.from({ length: n }, () => (rng.next() < density ? 1 : 0));
    feat[rng.int(n)] = 1;
    const dt = squaredDistanceTransform(feat, shape, sp);
    const f = [...feat.keys()].filter((i) => feat[i]);
    for (let i = 0; i < n; i++) {
      const expected = Math.min(...f.map((j) => distance(i, j, shape, sp))) ** 2;
      assertClose(dt[i], expected, 1e-9, `voxel ${i}`);
    }
  }
  assert.ok(squaredDistanceTransform(new Uint8Array(8), [2, 2, 2]).every((v) => v === Infinity));
});

Deno.test("hd95() matches an O(n^2) computation on random 3D masks with anisotropic spacing", () => {
  const rng = new Rng(2024);
  const cases: Array<[Shape, number[]]> = [
    [[5, 7, 6], [3, 0.8, 1.1]],
    [[3, 9, 8], [10, 1.5, 1.5]],
    [[6, 5, 7], [1, 1, 1]],
  ];
  for (const [shape, sp] of cases) {
    const n = shape[0] * shape[1] * shape[2];
    for (let trial = 0; trial < 4; trial++) {
      const p = randomLabels(rng, n, 3, 0.15 + 0.2 * trial);
      const t = randomLabels(rng, n, 3, 0.1 + 0.2 * trial);
      for (const c of [1, 2]) {
        assertClose(hd95(p, t, shape, sp, c), bruteHd95(p, t, shape, sp, c), 1e-9, `case ${c}`);
      }
    }
  }
  // Smooth blobs (most voxels interior) as well as noise.
  const shape: Shape = [6, 12, 12];
  const sp = [4, 0.9, 1.2];
  const p = box(shape, [1, 2, 3], [4, 6, 5]);
  const t = box(shape, [2, 3, 2], [3, 7, 7]);
  assertClose(hd95(p, t, shape, sp, 1), bruteHd95(p, t, shape, sp, 1), 1e-9);
  // Masks on the volume's border (surface there) and small ones far from it (cropped box).
  const q = box(shape, [0, 0, 8], [2, 5, 4]);
  const r = box(shape, [0, 1, 9], [3, 3, 3]);
  assertClose(hd95(q, r, shape, sp, 1), bruteHd95(q, r, shape, sp, 1), 1e-9);
  const u = box(shape, [3, 5, 5], [2, 2, 2]);
  const v = box(shape, [2, 4, 6], [2, 3, 1]);
  assertClose(hd95(u, v, shape, sp, 1), bruteHd95(u, v, shape, sp, 1), 1e-9);
});

Deno.test("hd95() of two cubes shifted by k voxels along one axis is k * spacing", () => {
  const shape: Shape = [12, 14, 16];
  const sp = [2.5, 0.75, 1.25];
  for (let axis = 0; axis < 3; axis++) {
    for (const k of [3, 4, 6]) {
      const origin = [1, 1, 1];
      const shifted = origin.map((o, a) => (a === axis ? o + k : o));
      const a = box(shape, origin, [3, 3, 3], 2);
      const b = box(shape, shifted, [3, 3, 3], 2);
      assertClose(hd95(a, b, shape, sp, 2), k * sp[axis], 1e-12, `axis ${axis}, k ${k}`);
      assertClose(hd95(b, a, shape, sp, 2), k * sp[axis], 1e-12);
    }
  }
  // A single voxel shifted diagonally; without spacing, distances are in voxels.
  const a = box(shape, [2, 3, 4], [1, 1, 1]);
  const b = box(shape, [4, 6, 10], [1, 1, 1]);
  assertClose(hd95(a, b, shape, undefined, 1), Math.hypot(2, 3, 6), 1e-12);
  assertClose(hd95(a, a, shape, sp, 1), 0, 0);
});

Deno.test("hd95() empty rule: both empty -> 0, one empty -> NaN", () => {
  const shape: Shape = [2, 3, 3];
  const empty = new Uint8Array(18);
  const one = box(shape, [0, 1, 1], [1, 1, 1]);
  assert.equal(hd95(empty, empty, shape, [1, 1, 1], 1), 0);
  assert.ok(Number.isNaN(hd95(one, empty, shape, [1, 1, 1], 1)));
  assert.ok(Number.isNaN(hd95(empty, one, shape, [1, 1, 1], 1)));
  assert.throws(() => hd95(one, empty, [2, 3, 4], undefined, 1), /18 predicted/);
  // The mean of a class is taken over the volumes where it is defined.
  const m = nanMeanPerClass([[1, NaN, NaN], [3, 2, NaN]]);
  assert.deepEqual(m.mean.slice(0, 2), [2, 2]);
  assert.ok(Number.isNaN(m.mean[2]));
  assert.deepEqual(m.undefinedCount, [0, 1, 2]);
});

Deno.test("percentile() interpolates linearly as numpy", () => {
  assert.equal(percentile([4, 1, 3, 2], 50), 2.5);
  assert.equal(percentile([0, 10], 95), 9.5);
  assert.equal(percentile([7], 95), 7);
  assert.ok(Number.isNaN(percentile([], 95)));
});
