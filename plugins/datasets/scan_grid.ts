/**
 * A prediction brought back to a scan's own grid: class probabilities on the network's grid (a
 * scan preprocessed by `prepareScan` in `preprocess.ts`, with its dataset's `preprocessing()`)
 * resampled in-plane by the inverse of the resize (bilinear) and turned into labels by argmax
 * ({@linkcode LabelsOnScanGrid}), which keeps boundaries smoother than resampling labels by
 * nearest neighbour. The result has the scan's own shape and voxel order, so it is written with
 * the scan's own spacing and affine ({@linkcode rasAffine}).
 *
 * @module
 */
import { UserError } from "../../core/errors.ts";
import type { PreprocessOptions } from "../../core/dataset.ts";
import type { VolumeData } from "../../io/volume_data.ts";
import { volumeFormat } from "../../io/volume.ts";
import { type ScanLayout, scanLayout } from "./preprocess.ts";

/**
 * Where the network-grid rows (or columns) are that the scan's `n` rows (columns) sit on: the
 * inverse of the corner-aligned resize of `n` samples to `r`, shifted by the padding `origin`.
 */
function networkCoordinates(n: number, r: number, origin: number, size: number) {
  const index0 = new Int32Array(n), index1 = new Int32Array(n);
  const t = new Float32Array(n);
  const inside = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    // a single source row was stretched over all r rows: read their middle
    const c = origin + (n > 1 && r > 1 ? (i * (r - 1)) / (n - 1) : (r - 1) / 2);
    // outside the network's pixels (cropped away): never seen
    if (c < -0.5 - 1e-6 || c > size - 0.5 + 1e-6) continue;
    const clamped = Math.min(Math.max(c, 0), size - 1);
    const lo = Math.floor(clamped);
    index0[i] = lo;
    index1[i] = Math.min(lo + 1, size - 1);
    t[i] = clamped - lo;
    inside[i] = 1;
  }
  return { index0, index1, t, inside };
}

/**
 * Labels on a scan's own grid, built one network slice at a time from class probabilities on
 * the network's grid: `add(k, probabilities)` for each slice `k`, then `labels()`.
 *
 * Voxels that the network's grid does not cover (`fit: crop`) are background (0).
 */
export class LabelsOnScanGrid {
  readonly #layout: ScanLayout;
  readonly #classes: number;
  readonly #out: Uint8Array;
  readonly #rows: ReturnType<typeof networkCoordinates>;
  readonly #cols: ReturnType<typeof networkCoordinates>;

  constructor(layout: ScanLayout, numClasses: number) {
    this.#layout = layout;
    this.#classes = numClasses;
    const { depth, height, width, size, geometry: g } = layout;
    this.#out = new Uint8Array(depth * height * width);
    this.#rows = networkCoordinates(height, g.rh, g.top, size);
    this.#cols = networkCoordinates(width, g.rw, g.left, size);
  }

  /**
   * Add network slice `k`: `probabilities[offset ...]` holds `size * size * classes` values,
   * channels last (a softmax output).
   */
  add(k: number, probabilities: Float32Array, offset = 0): void {
    const { height: h, width: w, size } = this.#layout;
    const C = this.#classes;
    const rows = this.#rows, cols = this.#cols;
    const base = k * h * w;
    for (let y = 0; y < h; y++) {
      if (!rows.inside[y]) continue;
      const r0 = offset + rows.index0[y] * size * C, r1 = offset + rows.index1[y] * size * C;
      const ty = rows.t[y];
      for (let x = 0; x < w; x++) {
        if (!cols.inside[x]) continue;
        const c0 = cols.index0[x] * C, c1 = cols.index1[x] * C;
        const tx = cols.t[x];
        const w00 = (1 - ty) * (1 - tx), w01 = (1 - ty) * tx, w10 = ty * (1 - tx), w11 = ty * tx;
        let best = -Infinity, label = 0;
        for (let c = 0; c < C; c++) {
          const v = w00 * probabilities[r0 + c0 + c] + w01 * probabilities[r0 + c1 + c] +
            w10 * probabilities[r1 + c0 + c] + w11 * probabilities[r1 + c1 + c];
          if (v > best) {
            best = v;
            label = c;
          }
        }
        this.#out[base + y * w + x] = label;
      }
    }
  }

  /** The labels in the scan's own voxel order (for its stored shape). */
  labels(): Uint8Array {
    const { axis, shape3d } = this.#layout;
    return sliceAxisBack(this.#out, shape3d, axis);
  }
}

/**
 * Network-grid probabilities (`[depth, size, size, classes]`, channels last) as labels on the
 * scan's grid: what `predict` writes, and the browser page.
 */
export function labelsOnScanGrid(
  probabilities: Float32Array,
  layout: ScanLayout,
  numClasses: number,
): Uint8Array {
  const labels = new LabelsOnScanGrid(layout, numClasses);
  const n = layout.size * layout.size;
  for (let k = 0; k < layout.depth; k++) labels.add(k, probabilities, k * n * numClasses);
  return labels.labels();
}

/**
 * A dataset volume's network-grid `probabilities` (`[D, H, W, classes]`, those its evaluation
 * took the argmax of) as labels on the grid of the file it was prepared from with `prep`
 * ({@linkcode labelsOnScanGrid}): `eval --grid source` scores and exports these, and `predict`
 * goes through the same resampling.
 *
 * @param image The volume's image file as stored.
 * @param volume The volume's id, network-grid shape and file (to check that the file still
 *   gives that grid, and for the message).
 * @throws {UserError} When the file no longer gives the volume's grid.
 */
export function volumeOnScanGrid(
  image: VolumeData,
  prep: PreprocessOptions,
  probabilities: Float32Array,
  numClasses: number,
  volume: { id: string; shape: readonly number[]; path: string },
): { labels: Uint8Array; layout: ScanLayout } {
  const layout = scanLayout(image, prep);
  const [d, h, w] = volume.shape;
  if (!layout || layout.depth !== d || layout.size !== h || layout.size !== w) {
    throw new UserError(
      `"${volume.path}" no longer gives volume "${volume.id}" ` +
        `([${image.shape.join(", ")}] for [${volume.shape.join(", ")}]); was it changed?`,
    );
  }
  return { labels: labelsOnScanGrid(probabilities, layout, numClasses), layout };
}

/** The inverse of moving `axis` of `shape` first: `[shape[axis], ...others]` back to `shape`. */
export function sliceAxisBack(data: Uint8Array, shape: number[], axis: number): Uint8Array {
  if (axis === 0) return data;
  const [d0, d1, d2] = shape;
  const out = new Uint8Array(data.length);
  let k = 0;
  if (axis === 1) {
    // data is [d1, d0, d2]
    for (let j = 0; j < d1; j++) {
      for (let i = 0; i < d0; i++) {
        const base = (i * d1 + j) * d2;
        for (let l = 0; l < d2; l++) out[base + l] = data[k++];
      }
    }
  } else {
    // data is [d2, d0, d1]
    for (let l = 0; l < d2; l++) {
      for (let i = 0; i < d0; i++) {
        for (let j = 0; j < d1; j++) out[(i * d1 + j) * d2 + l] = data[k++];
      }
    }
  }
  return out;
}

/**
 * A scan's affine in NIfTI's RAS+ convention (MetaImage stores LPS+), or `undefined` when the
 * scan has none; for writing a NIfTI prediction of a scan in another format.
 */
export function rasAffine(image: VolumeData, path: string): number[][] | undefined {
  const a = image.affine;
  if (!a || image.spacingKnown === false) return undefined;
  if (volumeFormat(path) !== "metaimage") return a.map((row) => [...row]);
  return a.map((row, r) => r < 2 ? row.map((v) => (v === 0 ? 0 : -v)) : [...row]);
}
