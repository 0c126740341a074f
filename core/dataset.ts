/**
 * The dataset interface: decoded 2D slices for training and 3D volumes for evaluation, split by
 * patient. Data are held as typed arrays; the trainer builds tensors per batch.
 *
 * @module
 */
import type { OptionsSchema } from "./types.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { UserError } from "./errors.ts";
import { type Registry, sharedRegistry } from "./registry.ts";

/** A set of 2D slices of one size, stored contiguously (slice-major, row-major, 1 channel). */
export interface SliceSet {
  /** Number of slices. */
  count: number;
  /** Slice height in pixels. */
  height: number;
  /** Slice width in pixels. */
  width: number;
  /** Intensities, `count * height * width` values, roughly in [0, 1]. */
  images: Float32Array;
  /** Labels in `[0, numClasses)`, same layout as `images`; `null` for unlabeled sets. */
  labels: Uint8Array | null;
  /** The patient id of each slice (slices of one patient never cross splits). */
  patients: string[];
}

/** A 3D volume for evaluation: `depth` slices of `height x width`, stacked back. */
export interface Volume {
  /** Unique id (e.g. `patient003_frame01`). */
  id: string;
  /** The patient it belongs to. */
  patient: string;
  /** `[depth, height, width]`. */
  shape: [number, number, number];
  /** Voxel spacing in mm, `[depth, height, width]`, when known. */
  spacing?: [number, number, number];
  /**
   * 4 x 4 voxel-to-world matrix (row-major, NIfTI RAS+ millimetres) of **this** grid, when the
   * source file has one: it maps voxel indices fastest axis first, `(column, row, slice)`, to
   * world coordinates, the resizing and slice-axis permutation of preprocessing included, so
   * that a prediction written with it overlays the source image.
   */
  affine?: number[][];
  /** Intensities, `depth * height * width` values. */
  image: Float32Array;
  /** Labels, same layout as `image`. */
  label: Uint8Array;
  /**
   * The file the volume was read from, to write a prediction on the volume's own grid
   * (`eval --export DIR --grid source`); absent for generated data, whose grid is this one.
   */
  source?: VolumeSource;
}

/** Where a {@linkcode Volume} was read from. */
export interface VolumeSource {
  /** The image file (the first slice's, for a volume stacked from slice files). */
  path: string;
  /** Read the image again as stored: its own shape, spacing and affine. */
  read(): Promise<VolumeData>;
  /**
   * Read the label again as stored: class indices (uint8, checked and rescaled as loading does)
   * in the file's own shape and voxel order; `null` for a case without a label. Absent when
   * the dataset cannot read it again.
   */
  readLabel?(): Promise<VolumeData | null>;
  /**
   * The volume's class probabilities on the network's grid (`[D, H, W, classes]`, channels
   * last, as evaluated) brought back onto this file's grid by the inverse of the dataset's
   * preprocessing (bilinear in-plane, then the argmax), with the file's stored label: what
   * `eval --grid source` scores and exports. Absent when the dataset cannot undo its
   * preprocessing.
   */
  toSourceGrid?(probabilities: Float32Array, numClasses: number): Promise<SourceGridPrediction>;
}

/** A prediction on a volume's source grid ({@linkcode VolumeSource.toSourceGrid}). */
export interface SourceGridPrediction {
  /** Predicted labels in the file's own voxel order. */
  labels: Uint8Array;
  /** The stored label, same layout (class indices), or `null` for a case without a label. */
  label: Uint8Array | null;
  /** The image as stored (its shape, spacing and affine, to write the prediction with). */
  image: VolumeData;
  /** The file's 3D shape (singleton axes squeezed, a 2D image is one slice), slowest first. */
  shape: [number, number, number];
  /** The spacing of `shape`'s axes in mm, when the file records it. */
  spacing?: [number, number, number];
}

/** A segmentation dataset split by patient. */
export interface SegmentationDataset {
  /** Dataset plugin id. */
  id: string;
  /** Class names, index = label value; index 0 is background. */
  classNames: string[];
  /** Labeled training slices. */
  labeled: SliceSet;
  /** Unlabeled training slices (labels, if any, are never used). */
  unlabeled: SliceSet;
  /** Validation volumes. */
  validation: Volume[];
  /** Test volumes, when the dataset has a test split. */
  test?: Volume[];
  /** Patient ids of each split, as written to the run directory. */
  splits: Record<string, string[]>;
}

/** What a dataset factory gets besides its own options. */
export interface DatasetContext {
  /** The run's seed (for splits and procedural data). */
  seed: number;
  /** Directory of the recipe file, to resolve relative paths. */
  baseDir: string;
  /** Progress messages (loading, caching). */
  log?: (message: string) => void;
}

/**
 * The files a dataset touches with given options: what `deno task run` grants the run (and
 * nothing else on disk besides the recipes, the package cache and the run folder).
 */
export interface DatasetAccess {
  /** Files and folders `load` reads (absolute). */
  read: string[];
  /** Folders `load` may write, e.g. its cache (absolute). */
  write: string[];
}

/** What {@linkcode DatasetFactory.access} resolves paths against. */
export interface DatasetAccessContext {
  /** Directory of the recipe file, as in {@linkcode DatasetContext}. */
  baseDir: string;
  /** The temporary folder (`$TMPDIR`, else `/tmp`). */
  tmpDir: string;
  /** The per-user dataset cache folder ({@linkcode defaultCacheDir}), `null` when unknown. */
  cacheDir?: string | null;
}

/** The variable that names the dataset cache folder, overriding the XDG default. */
export const CACHE_DIR_ENV = "MISSL_CACHE_DIR";

/**
 * The per-user folder of preprocessed datasets: `$MISSL_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/mi-ssl`, else `$HOME/.cache/mi-ssl`; `null` when none of them is set (or
 * readable). Entries are keyed by content (each source file's path inside the data folder, size
 * and modification time, and the preprocessing options), so one data folder reached by two
 * paths shares its entries; `deno task cache --clear` empties the folder.
 */
export function defaultCacheDir(
  env: (name: string) => string | undefined = (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  },
): string | null {
  const own = env(CACHE_DIR_ENV);
  if (own) return own;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/mi-ssl`;
  const home = env("HOME");
  return home ? `${home.replace(/\/+$/, "")}/.cache/mi-ssl` : null;
}

/** How a slice is brought to `size x size`. */
export type Fit = "stretch" | "pad" | "crop" | "center";

/**
 * How a dataset brings a scan onto the network's grid: the options of the file-based datasets'
 * preprocessing, and what {@linkcode DatasetFactory.preprocessing} returns so that `predict`
 * (and `eval --grid source`) preprocess a scan as training did.
 */
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

/** A dataset plugin. */
export interface DatasetFactory<O = Record<string, unknown>> {
  /** The id recipes name the plugin by (`type: <id>`), unique among plugins of its kind. */
  readonly id: string;
  /** One line shown by `deno task plugins`. */
  readonly description: string;
  /** Strict schema of the plugin's options (its recipe entry without `type`), with defaults. */
  readonly options: OptionsSchema<O>;
  /** Load (or generate) the data. */
  load(options: O, context: DatasetContext): Promise<SegmentationDataset>;
  /**
   * The files and folders `load` reads and writes with `options` (a pure function: it must not
   * touch the disk). `deno task run` calls it, for the built-in datasets only, to grant a run
   * exactly these; a dataset from a plugin module gets no file access unless the user grants it
   * (`deno task run --grant read=/data ...`). Omit it for data that needs no files.
   */
  access?(options: O, context: DatasetAccessContext): DatasetAccess;
  /**
   * The options that are file or folder paths, e.g. `["root", "cache"]`. A relative path written
   * in a recipe is the plugin's to resolve, against `context.baseDir` (the recipe's folder); one
   * given on the command line (`--set dataset.root=data`) is relative to where the command is
   * typed, so `loadRecipe` makes it absolute against its `cwd`. Omit it when no option is a path.
   */
  readonly pathOptions?: readonly string[];
  /**
   * How a scan that belongs to no dataset is preprocessed for a network trained on this dataset
   * with `options` (a pure function): `predict` and `eval --grid source` read it to bring scans
   * onto the network's grid and back. Omit it for data that a new scan cannot be prepared like
   * (`predict` then refuses runs on it).
   */
  preprocessing?(options: O): PreprocessOptions;
}

/** All dataset plugins, by id. */
// Plugins of one kind have different option types; each validates its own options.
// deno-lint-ignore no-explicit-any
export const datasets: Registry<DatasetFactory<any>> = sharedRegistry("dataset");

/**
 * How a run whose dataset is `datasetType` with (parsed) `options` preprocesses a scan: the
 * plugin's {@linkcode DatasetFactory.preprocessing}.
 *
 * @throws {UserError} When the dataset is unknown or its plugin has no `preprocessing()`.
 */
export function datasetPreprocessing(datasetType: string, options: unknown): PreprocessOptions {
  const factory = datasets.get(datasetType);
  if (!factory.preprocessing) {
    throw new UserError(
      `dataset "${datasetType}" does not say how a scan is preprocessed (its plugin has no ` +
        `preprocessing()), so the network's input size is unknown`,
    );
  }
  return factory.preprocessing(options);
}
