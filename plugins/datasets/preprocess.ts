/**
 * The pure preprocessing of the file-based datasets, and of `predict`: one case (volume) at a
 * time, a {@linkcode RawCase} into `[slices, size, size]` float32 intensities and uint8 labels
 * ({@linkcode prepareCase}; a scan that belongs to no dataset, for `predict`:
 * {@linkcode prepareScan}):
 *
 * 1. squeeze to 3D (a 2D image is one slice) and check that image and label shapes agree;
 * 2. check labels: integers in `[0, classes)` (a PNG's `0/255` style is rescaled on request);
 * 3. put the through-plane axis first (`sliceAxis`, `auto` = the axis of largest spacing);
 * 4. clip to an intensity `window` (CT) and min-max normalise **per volume** to [0, 1];
 * 5. resize every slice to `size x size` (`fit`): bilinear for images, nearest for labels, on
 *    a corner-aligned grid as scipy's `zoom` in SSL4MIS; or keep the aspect ratio and pad or
 *    crop, or only pad / crop around the centre.
 *
 * The voxel-to-world matrix of the resized grid follows the same steps. Nothing here reads a
 * file or makes a tensor.
 *
 * @module
 */
import { UserError } from "../../core/errors.ts";
import type { Fit, PreprocessOptions, Volume } from "../../core/dataset.ts";
import type { VolumeData } from "../../io/volume_data.ts";
import { volumeFormat } from "../../io/volume.ts";

// The options are the dataset interface's (core), the type of DatasetFactory.preprocessing().
export type { Fit, PreprocessOptions } from "../../core/dataset.ts";

/** A case as read from its files, before preprocessing. */
export interface RawCase {
  /** Intensities (any numeric type), 2D or 3D (singleton axes are squeezed). */
  image: VolumeData;
  /** Labels of the same shape, or `null` for an unlabeled case. */
  label: VolumeData | null;
  /** The image's file, for error messages. */
  imagePath: string;
  /** The label's file, for error messages. */
  labelPath?: string;
}

/**
 * A preprocessed case: a core `Volume` (`[slices, size, size]`, slice-major, row-major, on the
 * resized grid, intensities in [0, 1] with `minmax`) whose labels may be missing. Its `source`
 * is set by `loadCases` and never cached.
 */
export interface PreparedCase extends Omit<Volume, "label"> {
  /** Labels in `[0, classes)`, or `null` for an unlabeled case. */
  label: Uint8Array | null;
}

/** What {@linkcode prepareCase} needs besides the raw case. */
export interface PrepareContext {
  /** Dataset id, for error messages. */
  datasetId: string;
  /** Preprocessing options. */
  prep: PreprocessOptions;
  /** Number of classes; labels must be in `[0, classes)`. */
  numClasses: number;
  /** Class names, for error messages. */
  classNames?: string[];
  /**
   * Labels stored as evenly spaced grey levels (`0/255`, `0/85/170/255` in PNGs): divide by
   * `maxValue / (classes - 1)` when every value is such a level. @default {false}
   */
  scaledLabels?: boolean;
}

function fail(context: PrepareContext, message: string): UserError {
  return new UserError(`Cannot load dataset "${context.datasetId}": ${message}`);
}

/** Squeeze singleton axes down to 3D (2D -> one slice); `null` when it cannot be made 3D. */
function as3d(v: VolumeData): { shape: number[]; spacing: number[] } | null {
  let shape = [...v.shape], spacing = [...v.spacing];
  for (let i = 0; shape.length > 3 && i < shape.length;) {
    if (shape[i] === 1) {
      shape.splice(i, 1);
      spacing.splice(i, 1);
    } else i++;
  }
  if (shape.length === 2) (shape = [1, ...shape], spacing = [1, ...spacing]);
  return shape.length === 3 ? { shape, spacing } : null;
}

/** Check and convert labels to uint8 in `[0, classes)`. */
function checkLabels(raw: RawCase, context: PrepareContext): Uint8Array {
  const data = raw.label!.data;
  const c = context.numClasses;
  const path = raw.labelPath ?? raw.imagePath;
  let max = 0;
  for (let i = 0; i < data.length; i++) if (data[i] > max) max = data[i];
  let step = 1;
  if (context.scaledLabels && max > c - 1 && c > 1) {
    const top = max > 255 ? 65535 : 255;
    step = top / (c - 1);
  }
  const out = new Uint8Array(data.length);
  const names = context.classNames ? ` (${context.classNames.join(", ")})` : "";
  for (let i = 0; i < data.length; i++) {
    const scaled = data[i] / step;
    const v = Math.round(scaled);
    if (Math.abs(scaled - v) > 1e-3 * Math.max(1, Math.abs(v)) || v < 0 || v >= c) {
      const what = Math.abs(scaled - v) > 1e-3 ? "non-integer value" : "value";
      throw fail(
        context,
        `label "${path}" has ${what} ${data[i]} at voxel ${i}, outside the classes 0..${c - 1}` +
          names,
      );
    }
    out[i] = v;
  }
  return out;
}

/** Bilinear (images) or nearest (labels) resampling of one slice onto a `size x size` grid. */
function resampleSlice(
  src: ArrayLike<number>,
  srcOffset: number,
  h: number,
  w: number,
  out: Float32Array | Uint8Array,
  outOffset: number,
  size: number,
  geometry: SliceGeometry,
  nearest: boolean,
): void {
  const { rh, rw, top, left } = geometry;
  const fy = rh > 1 ? (h - 1) / (rh - 1) : 0;
  const fx = rw > 1 ? (w - 1) / (rw - 1) : 0;
  for (let oy = 0; oy < size; oy++) {
    const ry = oy - top;
    const row = outOffset + oy * size;
    if (ry < 0 || ry >= rh) continue; // zero padding
    const sy = ry * fy;
    const y0 = Math.floor(sy), y1 = Math.min(y0 + 1, h - 1), ty = sy - y0;
    const yn = Math.round(sy);
    for (let ox = 0; ox < size; ox++) {
      const rx = ox - left;
      if (rx < 0 || rx >= rw) continue;
      const sx = rx * fx;
      if (nearest) {
        out[row + ox] = src[srcOffset + yn * w + Math.round(sx)];
        continue;
      }
      const x0 = Math.floor(sx), x1 = Math.min(x0 + 1, w - 1), tx = sx - x0;
      const a = src[srcOffset + y0 * w + x0], b = src[srcOffset + y0 * w + x1];
      const c = src[srcOffset + y1 * w + x0], d = src[srcOffset + y1 * w + x1];
      out[row + ox] = (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty;
    }
  }
}

/** Where a resized `rh x rw` slice lies in the `size x size` output. */
export interface SliceGeometry {
  rh: number;
  rw: number;
  top: number;
  left: number;
}

/** The resized size and placement of an `h x w` slice for a fit mode. */
export function sliceGeometry(h: number, w: number, size: number, fit: Fit): SliceGeometry {
  let rh = size, rw = size;
  if (fit === "pad" || fit === "crop") {
    const s = fit === "pad" ? size / Math.max(h, w) : size / Math.min(h, w);
    rh = Math.max(1, Math.round(h * s));
    rw = Math.max(1, Math.round(w * s));
  } else if (fit === "center") {
    rh = h;
    rw = w;
  }
  return { rh, rw, top: Math.floor((size - rh) / 2), left: Math.floor((size - rw) / 2) };
}

/** Permute a `[d0, d1, d2]` array so that `axis` comes first (the others keep their order). */
function sliceAxisFirst<T extends Float32Array | Uint8Array>(
  data: T,
  shape: number[],
  axis: number,
): T {
  if (axis === 0) return data;
  const [d0, d1, d2] = shape;
  const out = new (data.constructor as { new (n: number): T })(data.length);
  let k = 0;
  if (axis === 1) {
    // new [d1, d0, d2]
    for (let j = 0; j < d1; j++) {
      for (let i = 0; i < d0; i++) {
        const base = (i * d1 + j) * d2;
        for (let l = 0; l < d2; l++) out[k++] = data[base + l];
      }
    }
  } else {
    // new [d2, d0, d1]
    for (let l = 0; l < d2; l++) {
      for (let i = 0; i < d0; i++) {
        for (let j = 0; j < d1; j++) out[k++] = data[(i * d1 + j) * d2 + l];
      }
    }
  }
  return out;
}

/**
 * How {@linkcode prepareCase} lays a scan out on the network's grid: what it squeezes, which
 * axis it makes the slice axis and where each resized slice lies. Undoing the preprocessing
 * (a prediction written back on the scan's own grid) needs exactly this.
 */
export interface ScanLayout {
  /** The scan's shape as stored, slowest axis first. */
  sourceShape: number[];
  /** The 3D shape after squeezing singleton axes (a 2D image is one slice), slowest first. */
  shape3d: [number, number, number];
  /** The spacing of `shape3d`'s axes. */
  spacing3d: [number, number, number];
  /** The axis of `shape3d` that becomes the slice axis. */
  axis: 0 | 1 | 2;
  /** The axes of `shape3d` in network order: `[slice, row, column]`. */
  order: [number, number, number];
  /** Slices of the scan. */
  depth: number;
  /** Rows of a slice of the scan (before resizing). */
  height: number;
  /** Columns of a slice of the scan (before resizing). */
  width: number;
  /** The side of the network's square slices. */
  size: number;
  /** Where a resized slice lies in the `size x size` network slice. */
  geometry: SliceGeometry;
}

/**
 * The {@linkcode ScanLayout} of `image` under `prep`, or `null` when it is not a 2D or 3D volume
 * (after squeezing singleton axes). The slice axis is `prep.sliceAxis`, or with `auto` the axis
 * of largest spacing (ties and unknown spacing: axis 0).
 */
export function scanLayout(image: VolumeData, prep: PreprocessOptions): ScanLayout | null {
  const im = as3d(image);
  if (!im) return null;
  let axis: 0 | 1 | 2 = prep.sliceAxis === "auto" ? 0 : prep.sliceAxis;
  if (prep.sliceAxis === "auto" && image.spacingKnown !== false) {
    const s = im.spacing;
    const top = Math.max(...s);
    if (s.filter((v) => v === top).length === 1) axis = s.indexOf(top) as 0 | 1 | 2;
  }
  const order: [number, number, number] = axis === 0
    ? [0, 1, 2]
    : axis === 1
    ? [1, 0, 2]
    : [2, 0, 1];
  const [depth, height, width] = order.map((i) => im.shape[i]);
  return {
    sourceShape: [...image.shape],
    shape3d: im.shape as [number, number, number],
    spacing3d: im.spacing as [number, number, number],
    axis,
    order,
    depth,
    height,
    width,
    size: prep.size,
    geometry: sliceGeometry(height, width, prep.size, prep.fit),
  };
}

/**
 * A raw case's label as stored, checked as {@linkcode prepareCase} checks it (the image's shape
 * once squeezed, class indices in `[0, classes)`, grey levels rescaled with `scaledLabels`):
 * uint8 class indices in the file's voxel order, or `null` for a case without a label. The
 * truth that `eval --grid source` scores against.
 *
 * @throws {UserError} For a label whose shape is not the image's or with values outside the
 *   classes, naming the file.
 */
export function storedLabel(
  raw: RawCase,
  context: PrepareContext,
  layout: ScanLayout | null = scanLayout(raw.image, context.prep),
): Uint8Array | null {
  if (!raw.label) return null;
  const lb = as3d(raw.label);
  if (!layout || !lb || lb.shape.join() !== layout.shape3d.join()) {
    throw fail(
      context,
      `image "${raw.imagePath}" is [${raw.image.shape.join(", ")}] but label ` +
        `"${raw.labelPath}" is [${raw.label.shape.join(", ")}]`,
    );
  }
  return checkLabels(raw, context);
}

/**
 * Preprocess one raw case (see the module doc). Pure and synchronous.
 *
 * @throws {UserError} For a volume that is not 2D / 3D, image and label shapes that differ, or
 *   labels outside `[0, classes)`, naming the file.
 */
export function prepareCase(
  raw: RawCase,
  context: PrepareContext,
  ids: { id: string; patient: string },
): PreparedCase {
  const { prep } = context;
  const layout = scanLayout(raw.image, prep);
  if (!layout) {
    throw fail(
      context,
      `image "${raw.imagePath}" has shape [${raw.image.shape.join(", ")}]; ` +
        `expected a 2D or 3D volume`,
    );
  }
  const im = { shape: layout.shape3d, spacing: layout.spacing3d };
  let label = storedLabel(raw, context, layout);
  const spacingKnown = raw.image.spacingKnown !== false;
  const { axis, order, depth: d, height: h, width: w, geometry } = layout;
  const spacing = order.map((i) => im.spacing[i]);

  let image = Float32Array.from(raw.image.data);
  if (prep.window) {
    const [lo, hi] = prep.window;
    for (let i = 0; i < image.length; i++) {
      image[i] = image[i] < lo ? lo : image[i] > hi ? hi : image[i];
    }
  }
  if (prep.normalize === "minmax") {
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < image.length; i++) {
      const v = image[i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = max - min;
    if (!(range > 0) || !Number.isFinite(range)) image.fill(0);
    else for (let i = 0; i < image.length; i++) image[i] = (image[i] - min) / range;
  }
  image = sliceAxisFirst(image, im.shape, axis);
  if (label) label = sliceAxisFirst(label, im.shape, axis);

  const size = prep.size;
  const n = size * size;
  const outImage = new Float32Array(d * n);
  const outLabel = label ? new Uint8Array(d * n) : null;
  for (let k = 0; k < d; k++) {
    resampleSlice(image, k * h * w, h, w, outImage, k * n, size, geometry, false);
    if (label && outLabel) {
      resampleSlice(label, k * h * w, h, w, outLabel, k * n, size, geometry, true);
    }
  }
  const scale = (old: number, from: number, to: number) =>
    from > 1 && to > 1 ? (old * (from - 1)) / (to - 1) : (old * from) / to;
  const affine = sourceAffine(raw, im.shape);
  return {
    id: ids.id,
    patient: ids.patient,
    shape: [d, size, size],
    spacing: spacingKnown
      ? [spacing[0], scale(spacing[1], h, geometry.rh), scale(spacing[2], w, geometry.rw)]
      : undefined,
    ...(affine
      ? {
        affine: resampledAffine(affine, order, geometry, [
          scale(1, h, geometry.rh),
          scale(1, w, geometry.rw),
        ]),
      }
      : {}),
    image: outImage,
    label: outLabel,
  };
}

/**
 * The source image's voxel-to-world matrix in NIfTI's RAS+ convention, or `undefined` when the
 * format has none (HDF5, PNG) or when squeezing to 3D dropped one of its last three axes.
 * MetaImage affines (ITK's LPS+) are flipped to RAS+.
 */
function sourceAffine(raw: RawCase, shape3d: number[]): number[][] | undefined {
  const a = raw.image.affine;
  if (!a || a.length < 3 || raw.image.spacingKnown === false) return undefined;
  const s = raw.image.shape;
  if (s.length > 3 && s.slice(-3).join() !== shape3d.join()) return undefined;
  const rows = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => a[r][c] ?? 0));
  if (volumeFormat(raw.imagePath) === "metaimage") {
    for (const r of [0, 1]) rows[r] = rows[r].map((v) => (v === 0 ? 0 : -v));
  }
  return [...rows, [0, 0, 0, 1]];
}

/**
 * The voxel-to-world matrix of the preprocessed grid: `affine` (source voxel indices, fastest
 * first) times the map from a preprocessed voxel `(column, row, slice)` to the source voxel it
 * was sampled from (slice axis moved first by `order`, in-plane scaled by `factors` =
 * `[row, column]` source voxels per output voxel, shifted by the padding of `geometry`).
 */
function resampledAffine(
  affine: number[][],
  order: number[],
  geometry: SliceGeometry,
  factors: [number, number],
): number[][] {
  const [fy, fx] = factors;
  const m = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
  m[3][3] = 1;
  // Source axis fastest first = 2 - (its slowest-first index order[p]).
  m[2 - order[0]][2] = 1;
  m[2 - order[1]][1] = fy;
  m[2 - order[1]][3] = -fy * geometry.top;
  m[2 - order[2]][0] = fx;
  m[2 - order[2]][3] = -fx * geometry.left;
  return affine.map((row) => [0, 1, 2, 3].map((c) => row.reduce((s, v, k) => s + v * m[k][c], 0)));
}

/** A scan on the network's grid. */
export interface PreparedScan {
  /** `[slices, size, size]` intensities, preprocessed as the run's dataset. */
  image: Float32Array;
  /** How the scan was laid out, to bring predictions back. */
  layout: ScanLayout;
}

/**
 * Preprocess a scan as a dataset with `prep` does (squeeze, slice axis first, window,
 * normalise, resize).
 *
 * @throws {UserError} When the scan is not a 2D or 3D volume.
 */
export function prepareScan(
  image: VolumeData,
  prep: PreprocessOptions,
  path: string,
): PreparedScan {
  const layout = scanLayout(image, prep);
  if (!layout) {
    throw new UserError(
      `"${path}" has shape [${image.shape.join(", ")}]; expected a 2D or 3D volume`,
    );
  }
  const prepared = prepareCase({ image, label: null, imagePath: path }, {
    datasetId: "predict",
    prep,
    numClasses: 1,
  }, { id: path, patient: path });
  return { image: prepared.image, layout };
}
