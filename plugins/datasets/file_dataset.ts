/**
 * The base of file-based dataset plugins (the built-in `acdc`, `promise12`, `spleen` and `folder`
 * use it; so can yours, see `examples/pairs_dataset.ts` and `docs/plugins.md`). A plugin only
 * says where its cases are; this module does the rest:
 *
 * - {@linkcode commonOptionFields}: the zod fields every file plugin shares (`root`, `size`,
 *   `fit`, `normalize`, `sliceAxis`, `labeledPatients`, `cache`, `seed`), to spread into the
 *   plugin's own `z.object({...})` beside its `split`;
 * - {@linkcode pairCase}: a case read from an image file and a label file in any format
 *   `readVolume` knows (NIfTI, MetaImage, HDF5, PNG slices), as a {@linkcode LayoutCase};
 * - {@linkcode loadSplitDataset}: the whole `load` of a plugin: split the patients (seeded, or
 *   the recipe's lists), read and preprocess the chosen cases through the on-disk cache, stack
 *   them into a `SegmentationDataset`, log the counts;
 * - {@linkcode fileDatasetAccess}: the plugin's `access` (what `deno task run` must let it read
 *   and write).
 *
 * Preprocessing, one case (volume) at a time, read through a {@linkcode CaseSource}, into
 * `[slices, size, size]` float32 intensities and uint8 labels:
 *
 * 1. squeeze to 3D (a 2D image is one slice) and check that image and label shapes agree;
 * 2. check labels: integers in `[0, classes)` (a PNG's `0/255` style is rescaled on request);
 * 3. put the through-plane axis first (`sliceAxis`, `auto` = the axis of largest spacing);
 * 4. clip to an intensity `window` (CT) and min-max normalise **per volume** to [0, 1];
 * 5. resize every slice to `size x size` (`fit`): bilinear for images, nearest for labels, on
 *    a corner-aligned grid as scipy's `zoom` in SSL4MIS; or keep the aspect ratio and pad or
 *    crop, or only pad / crop around the centre.
 *
 * {@linkcode loadCases} runs this through the on-disk cache and {@linkcode assembleDataset}
 * stacks the cases of each patient split into slice sets and validation / test volumes. Data
 * stay typed arrays: no tensors are made while loading.
 *
 * @module
 */
import { resolve } from "node:path";
import { z } from "../../deps.ts";
import { UserError } from "../../core/errors.ts";
import type {
  DatasetAccess,
  DatasetAccessContext,
  DatasetContext,
  SegmentationDataset,
  SliceSet,
  Volume,
  VolumeSource,
} from "../../core/dataset.ts";
import type { VolumeData } from "../../io/volume_data.ts";
import { readHdf5Datasets } from "../../io/hdf5.ts";
import { readVolume, volumeFormat } from "../../io/volume.ts";
import { CaseCache, resolveCacheDir, type SourceSignature, sourceSignature } from "./_cache.ts";
import { type PatientSplit, type SplitOptions, splitPatients } from "./_split.ts";

export { type SplitOptions, splitOptionsSchema } from "./_split.ts";

/** How a slice is brought to `size x size`. */
export type Fit = "stretch" | "pad" | "crop" | "center";

/** Preprocessing options common to the file-based dataset plugins. */
export interface PreprocessOptions {
  /** Side of the square slices in pixels. */
  size: number;
  /**
   * `stretch`: resize each axis to `size` (SSL4MIS); `pad`: scale the longer side to `size`,
   * zero-pad the other; `crop`: scale the shorter side to `size`, centre-crop the other;
   * `center`: no scaling, centre-crop or zero-pad. @default "stretch"
   */
  fit: Fit;
  /** `minmax`: per volume to [0, 1] (after the window); `none`: raw values. @default "minmax" */
  normalize: "minmax" | "none";
  /**
   * The through-plane axis, in the row-major order of the file (`0` = `z` for NIfTI and
   * MetaImage); `auto` = the axis of largest spacing, ties and unknown spacing -> 0.
   * @default "auto"
   */
  sliceAxis: "auto" | 0 | 1 | 2;
  /** Clip intensities to `[lo, hi]` before normalising (CT windows). */
  window?: [number, number];
}

/** The zod fields {@linkcode commonOptionFields} returns, to spread into a plugin's schema. */
export interface CommonOptionFields {
  /** Data folder, relative to the recipe's folder. */
  root: z.ZodString;
  /** Side of the square slices. */
  size: z.ZodDefault<z.ZodNumber>;
  /** How slices are brought to `size x size`. */
  fit: z.ZodDefault<z.ZodEnum<["stretch", "pad", "crop", "center"]>>;
  /** Per-volume intensity normalisation. */
  normalize: z.ZodDefault<z.ZodEnum<["minmax", "none"]>>;
  /** Through-plane axis. */
  sliceAxis: z.ZodDefault<
    z.ZodUnion<[z.ZodLiteral<"auto">, z.ZodLiteral<0>, z.ZodLiteral<1>, z.ZodLiteral<2>]>
  >;
  /** Explicit labeled patients. */
  labeledPatients: z.ZodOptional<z.ZodArray<z.ZodString>>;
  /** Cache folder, or `false`. */
  cache: z.ZodOptional<z.ZodUnion<[z.ZodString, z.ZodLiteral<false>]>>;
  /** Seed of the split. */
  seed: z.ZodOptional<z.ZodNumber>;
}

/**
 * Zod fields of {@linkcode PreprocessOptions} and of the options every file plugin has, with
 * `size` defaulting to `defaultSize`: spread them into the plugin's `z.object({...})`.
 */
export function commonOptionFields(defaultSize: number): CommonOptionFields {
  return {
    root: z.string().min(1, "root must name the data folder").describe(
      "Data folder, relative to the recipe's folder.",
    ),
    size: z.number().int()
      .min(16, "size must be at least 16 pixels")
      .max(1024, "size must be at most 1024 pixels")
      .default(defaultSize).describe("Side of the square slices in pixels."),
    fit: z.enum(["stretch", "pad", "crop", "center"]).default("stretch").describe(
      "How a slice is brought to `size x size`: `stretch` resizes each axis (SSL4MIS); `pad` " +
        "scales the longer side to `size` and zero-pads the other; `crop` scales the shorter " +
        "side and centre-crops the other; `center` crops or pads without scaling.",
    ),
    normalize: z.enum(["minmax", "none"]).default("minmax").describe(
      "`minmax`: per volume to [0, 1] (after the window); `none`: raw values.",
    ),
    sliceAxis: z.union([z.literal("auto"), z.literal(0), z.literal(1), z.literal(2)]).default(
      "auto",
    ).describe(
      "The through-plane axis, in the row-major order of the file (`0` = `z` for NIfTI and " +
        "MetaImage); `auto` = the axis of largest spacing, ties and unknown spacing -> 0.",
    ),
    labeledPatients: z.array(z.string().min(1)).min(1, "labeledPatients must not be empty")
      .optional().describe("Explicit labeled patients (instead of a seeded draw)."),
    cache: z.union([z.string().min(1), z.literal(false)]).optional().describe(
      "Cache directory, or `false` for none; the per-user cache (`~/.cache/mi-ssl`) when absent.",
    ),
    seed: z.number().int().optional().describe("Seed of the split; the run seed when absent."),
  };
}

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

/** A case (one volume) to load: its ids, its files and how to read them. */
export interface CaseSource {
  /** Volume id, unique in the dataset (`patient001_frame01`). */
  id: string;
  /** The patient it belongs to. */
  patient: string;
  /** Every file it is read from (their sizes and times key the cache). */
  files: string[];
  /** Whether the case must have labels (a cached entry without them is then re-read). */
  needsLabel?: boolean;
  /** Read the raw volumes. */
  read(): Promise<RawCase>;
}

/** A preprocessed case: `[slices, size, size]`, slice-major, row-major. */
export interface PreparedCase {
  id: string;
  patient: string;
  shape: [number, number, number];
  /** Voxel spacing in mm of the resized grid, `[slice, row, column]`, when known. */
  spacing?: [number, number, number];
  /** Voxel-to-world matrix of the resized grid (NIfTI RAS+), when the source has one. */
  affine?: number[][];
  /** Intensities (in [0, 1] with `minmax`). */
  image: Float32Array;
  /** Labels in `[0, classes)`, or `null` for an unlabeled case. */
  label: Uint8Array | null;
  /** Where it was read from (set by {@linkcode loadCases}; not cached). */
  source?: VolumeSource;
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
  let label: Uint8Array | null = null;
  if (raw.label) {
    const lb = as3d(raw.label);
    if (!lb || lb.shape.join() !== im.shape.join()) {
      throw fail(
        context,
        `image "${raw.imagePath}" is [${raw.image.shape.join(", ")}] but label ` +
          `"${raw.labelPath}" is [${raw.label.shape.join(", ")}]`,
      );
    }
    label = checkLabels(raw, context);
  }
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

/** Options of {@linkcode loadCases}. */
export interface LoadCasesOptions extends PrepareContext {
  /** Cache directory, or `null` for no cache. */
  cacheDir: string | null;
  /**
   * The data folder: source paths are keyed relative to it, so one folder reached by two paths
   * shares its cache entries.
   */
  root?: string;
  /** Extra values that change the output (e.g. the layout), added to the cache key. */
  cacheKey?: unknown;
  /** Progress messages. */
  log?: (message: string) => void;
  /** Called with each raw case read (not for cache hits); tests count reads with it. */
  onRead?: (id: string) => void;
}

/**
 * Read and preprocess cases, through the on-disk cache when one is given: an entry whose
 * source files changed, or that is truncated or corrupted, is rebuilt.
 *
 * @returns The cases in the order of `sources`.
 */
export async function loadCases(
  sources: CaseSource[],
  options: LoadCasesOptions,
): Promise<PreparedCase[]> {
  const start = performance.now();
  const { prep, numClasses, scaledLabels } = options;
  const cache = options.cacheDir
    ? await CaseCache.open(options.cacheDir, options.datasetId, {
      prep,
      numClasses,
      scaledLabels: scaledLabels ?? false,
      extra: options.cacheKey ?? null,
    })
    : null;
  const out: PreparedCase[] = [];
  let hits = 0, rebuilt = 0, cacheFailures = 0, built = 0;
  let lastLog = performance.now();
  for (const [i, source] of sources.entries()) {
    let signature: SourceSignature | null = null;
    if (cache) {
      signature = await sourceSignature(source.files, options.root);
      const found = await cache.read(source.id, signature);
      if (found.status === "hit" && !(source.needsLabel && !found.value.label)) {
        out.push({ ...found.value, source: volumeSource(source) });
        hits++;
        continue;
      }
      if (found.status === "corrupt") {
        rebuilt++;
        options.log?.(`Cache entry of "${source.id}" is corrupt (${found.reason}); rebuilding it`);
      }
    }
    const raw = await source.read();
    options.onRead?.(source.id);
    const prepared = prepareCase(raw, options, source);
    out.push({ ...prepared, source: volumeSource(source) });
    if (cache && signature) {
      if (built++ === 0) {
        options.log?.(
          `${options.datasetId}: caching the preprocessed volumes in ${cache.dir} ` +
            `(deno task cache --clear empties the cache)`,
        );
      }
      try {
        await cache.write(prepared, signature);
      } catch (error) {
        if (cacheFailures++ === 0) {
          options.log?.(`Cannot write the cache in "${cache.dir}": ${(error as Error).message}`);
        }
      }
    }
    if (performance.now() - lastLog > 5000) {
      lastLog = performance.now();
      options.log?.(`${options.datasetId}: ${i + 1} / ${sources.length} volumes prepared`);
    }
  }
  const ms = performance.now() - start;
  options.log?.(
    `${options.datasetId}: ${sources.length} volumes (${hits} from the cache` +
      (rebuilt ? `, ${rebuilt} rebuilt` : "") + `) in ${ms.toFixed(0)} ms` +
      (cache ? ` | cache ${cache.dir}` : ""),
  );
  return out;
}

/** A case's {@linkcode VolumeSource}: its image read again through the case's own reader. */
function volumeSource(source: CaseSource): VolumeSource {
  return {
    path: source.files[0],
    read: async () => (await source.read()).image,
  };
}

function sliceSet(cases: PreparedCase[], size: number, withLabels: boolean): SliceSet {
  const n = size * size;
  const count = cases.reduce((sum, c) => sum + c.shape[0], 0);
  const images = new Float32Array(count * n);
  const labels = withLabels ? new Uint8Array(count * n) : null;
  const patients: string[] = [];
  let k = 0;
  for (const c of cases) {
    images.set(c.image, k * n);
    if (labels) labels.set(c.label!, k * n);
    for (let s = 0; s < c.shape[0]; s++) patients.push(c.patient);
    k += c.shape[0];
  }
  return { count, height: size, width: size, images, labels, patients };
}

/** What {@linkcode assembleDataset} stacks. */
export interface AssembleInput {
  /** Dataset plugin id. */
  id: string;
  /** Class names, index 0 = background. */
  classNames: string[];
  /** Slice side. */
  size: number;
  /** Every loaded case. */
  cases: PreparedCase[];
  /** Patients of each split. */
  split: PatientSplit;
}

/**
 * Stack the cases of each split: labeled and unlabeled slices (ordered by patient, then volume
 * id) and one validation / test {@linkcode Volume} per case.
 *
 * @throws {UserError} When a labeled or validation case has no labels.
 */
export function assembleDataset(input: AssembleInput): SegmentationDataset {
  const byPatient = new Map<string, PreparedCase[]>();
  for (const c of input.cases) {
    const list = byPatient.get(c.patient) ?? [];
    list.push(c);
    byPatient.set(c.patient, list);
  }
  const casesOf = (patients: string[], needLabels: string | null) =>
    patients.flatMap((p) => {
      const list = (byPatient.get(p) ?? []).sort((a, b) => a.id.localeCompare(b.id));
      for (const c of list) {
        if (needLabels && !c.label) {
          throw new UserError(
            `Cannot load dataset "${input.id}": ${needLabels} volume "${c.id}" has no labels`,
          );
        }
      }
      return list;
    });
  const volumes = (patients: string[], split: string): Volume[] =>
    casesOf(patients, split).map((c) => ({
      id: c.id,
      patient: c.patient,
      shape: c.shape,
      ...(c.spacing ? { spacing: c.spacing } : {}),
      ...(c.affine ? { affine: c.affine } : {}),
      image: c.image,
      label: c.label!,
      ...(c.source ? { source: c.source } : {}),
    }));
  const { split } = input;
  const dataset: SegmentationDataset = {
    id: input.id,
    classNames: input.classNames,
    labeled: sliceSet(casesOf(split.labeled, "labeled"), input.size, true),
    unlabeled: sliceSet(casesOf(split.unlabeled, null), input.size, false),
    validation: volumes(split.validation, "validation"),
    splits: {
      labeled: split.labeled,
      unlabeled: split.unlabeled,
      validation: split.validation,
      ...(split.test.length ? { test: split.test } : {}),
    },
  };
  if (split.test.length) dataset.test = volumes(split.test, "test");
  return dataset;
}

/**
 * The absolute data folder: `root` resolved against the recipe's folder.
 *
 * @throws {UserError} When it does not exist or is not a folder.
 */
export async function resolveRoot(
  datasetId: string,
  root: string,
  baseDir: string,
): Promise<string> {
  const path = resolve(baseDir, root);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    const relative = resolve(root) !== path
      ? ` (a relative root is resolved against the recipe's folder "${baseDir}")`
      : "";
    throw new UserError(
      `Cannot load dataset "${datasetId}": the data folder "${path}" does not exist${relative}`,
    );
  }
  if (!info.isDirectory) {
    throw new UserError(`Cannot load dataset "${datasetId}": "${path}" is not a folder`);
  }
  return path;
}

/** Names in a folder (files and folders, hidden and AppleDouble `._` ones left out). */
export async function listNames(
  dir: string,
  kind: "file" | "dir" | "any" = "any",
): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".")) continue;
      const isDir = e.isDirectory ||
        (e.isSymlink && (await Deno.stat(`${dir}/${e.name}`).catch(() => null))?.isDirectory);
      if (kind === "file" && isDir) continue;
      if (kind === "dir" && !isDir) continue;
      out.push(e.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw error;
  }
  return out.sort();
}

/** The non-empty lines of a list file (`train.list`), or `null` when it does not exist. */
export async function readList(path: string): Promise<string[] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UserError(`Cannot read "${path}": ${(error as Error).message}`);
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith("#"));
}

/**
 * What a file-based dataset touches (its `access`): it reads `root`, and reads and writes its
 * cache, which is the `cache` option, or else the per-user cache folder (`context.cacheDir`,
 * see `defaultCacheDir` in core/dataset.ts).
 */
export function fileDatasetAccess(
  options: Pick<CommonDatasetOptions, "root" | "cache">,
  context: DatasetAccessContext,
): DatasetAccess {
  const root = resolve(context.baseDir, options.root);
  const caches = options.cache === false
    ? []
    : options.cache !== undefined
    ? [resolve(context.baseDir, options.cache)]
    : context.cacheDir
    ? [resolve(context.cacheDir)]
    : [];
  return { read: [root, ...caches], write: caches };
}

/** The options every file-based plugin shares (see {@linkcode commonOptionFields}). */
export interface CommonDatasetOptions {
  /** Data folder (relative paths are resolved against the recipe's folder). */
  root: string;
  /** Side of the square slices. @default the plugin's (256; spleen 512) */
  size: number;
  /** How slices are brought to `size x size`. @default "stretch" */
  fit: Fit;
  /** Per-volume intensity normalisation. @default "minmax" */
  normalize: "minmax" | "none";
  /** Through-plane axis (`auto`: the one with the largest spacing). @default "auto" */
  sliceAxis: "auto" | 0 | 1 | 2;
  /** Patients per split (defaults: see each plugin). */
  split: SplitOptions;
  /** Explicit labeled patients, instead of a seeded draw. */
  labeledPatients?: string[];
  /** Cache folder, or `false`. @default the per-user cache folder (`~/.cache/mi-ssl`) */
  cache?: string | false;
  /** Seed of the split. @default the run seed */
  seed?: number;
}

/** A case of a layout, before the split decides whether its labels are needed. */
export interface LayoutCase {
  /** Volume id. */
  id: string;
  /** Patient id. */
  patient: string;
  /** The files it is read from. */
  files: string[];
  /** Read it; `needsLabel` is false for unlabeled patients (a missing label is then fine). */
  read(needsLabel: boolean): Promise<RawCase>;
}

/** What {@linkcode loadSplitDataset} needs from a plugin. */
export interface SplitDatasetInput {
  /** The plugin's id, in messages and cache keys. */
  datasetId: string;
  /** Class names, background first (their count is the number of classes). */
  classNames: string[];
  /** The absolute data folder (for the default cache). */
  root: string;
  /** Every case of the layout. */
  cases: LayoutCase[];
  /** Training patients. */
  pool: string[];
  /** Patients kept for validation, when the layout names them (else drawn from `pool`). */
  validationPool?: string[];
  /** Patients kept for testing, when the layout names them. */
  testPool?: string[];
  /** Validation patients drawn from the pool when there is no `validationPool`. */
  defaultValidation: number;
  /** Test patients drawn from the pool when there is no `testPool`. @default {0} */
  defaultTest?: number;
  /** Intensity window. */
  window?: [number, number];
  /** Labels stored as evenly spaced grey levels (PNG). */
  scaledLabels?: boolean;
  /** Extra cache-key values (the layout). */
  cacheKey?: unknown;
  /** A short description of the layout for the log line. */
  layoutName?: string;
}

/**
 * The whole load of a file-based plugin: split the patients, read and preprocess (through the
 * cache) the cases of the chosen patients only, stack them, log the counts.
 *
 * @throws {UserError} For an empty layout, an impossible split or bad data.
 */
export async function loadSplitDataset(
  input: SplitDatasetInput,
  options: CommonDatasetOptions,
  context: DatasetContext,
): Promise<SegmentationDataset> {
  const { datasetId } = input;
  const split = splitPatients({
    datasetId,
    pool: input.pool,
    validationPool: input.validationPool,
    testPool: input.testPool,
    split: options.split,
    defaultValidation: input.defaultValidation,
    defaultTest: input.defaultTest ?? 0,
    labeledPatients: options.labeledPatients,
    seed: options.seed ?? context.seed,
  });
  const byPatient = new Map<string, LayoutCase[]>();
  for (const c of input.cases) byPatient.set(c.patient, [...(byPatient.get(c.patient) ?? []), c]);
  const unlabeled = new Set(split.unlabeled);
  const sources: CaseSource[] = [];
  for (const p of [...split.labeled, ...split.unlabeled, ...split.validation, ...split.test]) {
    for (const c of byPatient.get(p) ?? []) {
      const needsLabel = !unlabeled.has(p);
      sources.push({
        id: c.id,
        patient: p,
        files: c.files,
        needsLabel,
        read: () => c.read(needsLabel),
      });
    }
  }
  const cacheDir = await resolveCacheDir(options.cache, input.root, context.baseDir, context.log);
  const cases = await loadCases(sources, {
    datasetId,
    prep: {
      size: options.size,
      fit: options.fit,
      normalize: options.normalize,
      sliceAxis: options.sliceAxis,
      ...(input.window ? { window: input.window } : {}),
    },
    numClasses: input.classNames.length,
    classNames: input.classNames,
    scaledLabels: input.scaledLabels,
    cacheDir,
    root: input.root,
    cacheKey: input.cacheKey,
    log: context.log,
  });
  const dataset = assembleDataset({
    id: datasetId,
    classNames: input.classNames,
    size: options.size,
    cases,
    split,
  });
  context.log?.(
    `${datasetId}${input.layoutName ? ` (${input.layoutName})` : ""}: ` +
      `${split.labeled.length} labeled patients / ${dataset.labeled.count} slices, ` +
      `${split.unlabeled.length} unlabeled / ${dataset.unlabeled.count} slices, ` +
      `${split.validation.length} validation patients / ${dataset.validation.length} volumes` +
      (split.test.length
        ? `, ${split.test.length} test patients / ${dataset.test!.length} volumes`
        : ""),
  );
  return dataset;
}

/**
 * A case read from an image file and a label file in any format {@linkcode readVolume} knows.
 *
 * @param label The label file, or `null` for an image without labels.
 */
export function pairCase(
  datasetId: string,
  ids: { id: string; patient: string },
  image: string,
  label: string | null,
): LayoutCase {
  return {
    ...ids,
    files: label ? [image, label] : [image],
    read: async (needsLabel) => {
      if (needsLabel && !label) {
        throw new UserError(
          `Cannot load dataset "${datasetId}": image "${image}" has no label file`,
        );
      }
      const readLabel = async (path: string) => {
        if (volumeFormat(path) !== "hdf5") return await readVolume(path);
        // An HDF5 label file: its `label` dataset, else its only `image` one.
        const sets = await readHdf5Datasets(path, ["label", "image"], {
          optional: ["label", "image"],
        });
        const found = sets.label ?? sets.image;
        if (!found) {
          throw new UserError(
            `Cannot read "${path}": it has neither a "label" nor an "image" dataset`,
          );
        }
        return found;
      };
      const [im, lb] = await Promise.all([readVolume(image), label ? readLabel(label) : null]);
      return { image: im, label: lb, imagePath: image, ...(label ? { labelPath: label } : {}) };
    },
  };
}
