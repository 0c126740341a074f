/**
 * `predict`: segment scans that belong to no dataset with a trained run, and write each
 * prediction **on the scan's own grid**: same shape, spacing and affine as the scan, so a
 * viewer overlays it on the scan without help.
 *
 * Each scan goes through the run's preprocessing (its dataset's `size`, `fit`, `normalize`,
 * `sliceAxis` and `window`: its plugin's `preprocessing()`), the run's network (the one its
 * evaluation reports: a mean teacher's teacher) gives class probabilities on the network's grid,
 * and those are resampled back to the scan's grid (the inverse of the resize, bilinear) before
 * the argmax ({@linkcode LabelsOnScanGrid}).
 *
 * Inputs: NIfTI (`.nii`, `.nii.gz`), MetaImage (`.mhd`, `.mha`), HDF5 (`.h5`, `.hdf5`, the
 * `image` dataset), 2D PNG files, and folders: a folder's scans are its volume files and its
 * PNG slices grouped by name (`<volume>_<slice>.png`, or in an `img/` sub-folder). Outputs:
 * `<out>/<name>_pred.<same extension>` (a PNG slice group: a folder `<out>/<name>_pred/` of PNGs
 * with the slices' names), or `<out>/<name>_pred.nii.gz` with `format: "nifti"`. Labels are
 * uint8 class indices.
 *
 * A scan that cannot be read or segmented is reported and skipped; the others are written.
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import { initBackend } from "../runtime/backend.ts";
import { loadCheckpoint, restoreTensors } from "../core/checkpoint.ts";
import { datasetPreprocessing, type PreprocessOptions } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { RUN_FILES, RunDir } from "../core/run_dir.ts";
import { probabilities } from "../core/evaluate.ts";
import { loadRecipe, type Recipe, validatePluginOptions } from "../core/recipe.ts";
import { createNetworks, evaluationModelOf, networkTensors } from "../core/networks.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import type { SegmentationModel } from "../core/model.ts";
import { writeHdf5 } from "../io/hdf5.ts";
import { type MetaImageVolume, writeMetaImage } from "../io/metaimage.ts";
import { writeNifti } from "../io/nifti.ts";
import { readPngSliceGroup, writePng } from "../io/png_slices.ts";
import { readVolume, stripVolumeExtension, volumeFormat } from "../io/volume.ts";
import { isDirectory } from "./_fs.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { prepareScan } from "../plugins/datasets/preprocess.ts";
import { labelsOnScanGrid, rasAffine } from "../plugins/datasets/scan_grid.ts";

/** A trained run, ready to segment scans. */
export interface Predictor {
  /** The run directory. */
  runDir: string;
  /** The checkpoint the weights came from. */
  checkpoint: string;
  /** Class names, index 0 = background. */
  classNames: string[];
  /** The run's preprocessing of a scan. */
  prep: PreprocessOptions;
  /** The backend tfjs runs on. */
  backend: string;
  /** The network it segments with (a mean teacher's teacher). */
  model: SegmentationModel;
  /** The recipe's model plugin, its parsed options and the run's seed (to build it again). */
  modelSpec: { type: string; options: unknown; seed: number };
  /**
   * Softmax class probabilities of `n` preprocessed slices (`n * size * size` values):
   * `n * size * size * classes` values, channels last.
   */
  probabilities(images: Float32Array, n: number): Promise<Float32Array>;
  /** Free the networks. */
  dispose(): void;
}

/** Options of {@linkcode loadPredictor}. */
export interface LoadPredictorOptions {
  /** `best` or `latest`. @default "best" */
  checkpoint?: "best" | "latest";
  /** Another backend than the run's. */
  backend?: string;
}

/**
 * Load a run's network and preprocessing from its directory (`recipe.yaml`, `run.json` and a
 * checkpoint), without its dataset. The run's plugin modules are imported (they may define the
 * model or regularizers); the built-in plugins must be registered.
 *
 * @throws {UserError} For a missing or bad run directory or checkpoint.
 */
export async function loadPredictor(
  runDir: string,
  options: LoadPredictorOptions = {},
): Promise<Predictor> {
  const which = options.checkpoint ?? "best";
  if (which !== "best" && which !== "latest") {
    throw new UserError(`Unknown checkpoint "${which}"; use best or latest`);
  }
  const dir = new RunDir(runDir);
  const checkpoint = dir.checkpoint(which);
  if (!(await dir.has("recipe"))) {
    throw new UserError(`"${runDir}" is not a run directory (it has no ${RUN_FILES.recipe})`);
  }
  try {
    await Deno.stat(checkpoint);
  } catch {
    throw new UserError(`Cannot predict with "${runDir}": ${checkpoint} does not exist`);
  }
  const set = options.backend !== undefined ? [`backend=${options.backend}`] : [];
  const recipe: Recipe = (await loadRecipe(dir.file("recipe"), { set })).recipe;
  await loadPluginModules(recipe.plugins);
  const parsed = validatePluginOptions(recipe, dir.file("recipe"));
  const prep = datasetPreprocessing(recipe.dataset.type, parsed.dataset);
  const classNames = await dir.classNames();
  const ckpt = await loadCheckpoint(checkpoint);
  const backend = await initBackend(recipe.backend, { threads: recipe.threads });
  const networks = createNetworks(recipe, parsed, classNames.length);
  try {
    restoreTensors(ckpt, networkTensors(networks));
  } catch (error) {
    networks.dispose();
    throw error;
  }
  const model = evaluationModelOf(networks);
  const size = prep.size;
  return {
    runDir,
    checkpoint,
    classNames,
    prep,
    backend,
    model,
    modelSpec: { type: recipe.model.type, options: parsed.model, seed: recipe.seed },
    probabilities: (image, n) => probabilities(model, { image, shape: [n, size, size] }),
    dispose: () => networks.dispose(),
  };
}

/**
 * Segment one scan: labels in the scan's own shape and voxel order (uint8 class indices).
 *
 * @throws {UserError} When the scan is not a 2D or 3D volume.
 */
export async function segmentScan(
  predictor: Predictor,
  image: VolumeData,
  path: string,
): Promise<Uint8Array> {
  const { image: input, layout } = prepareScan(image, predictor.prep, path);
  const probs = await predictor.probabilities(input, layout.depth);
  return labelsOnScanGrid(probs, layout, predictor.classNames.length);
}

/** Write labels on a scan's grid as a gzipped NIfTI with the scan's geometry (RAS affine). */
export async function writeNiftiLabels(
  path: string,
  labels: Uint8Array,
  image: VolumeData,
  imagePath: string,
): Promise<void> {
  const affine = rasAffine(image, imagePath);
  await writeNifti(path, {
    data: labels,
    shape: [...image.shape],
    spacing: [...image.spacing],
    ...(affine ? { affine } : {}),
  }, { datatype: "uint8" });
}

/** One scan to segment. */
export interface Scan {
  /** The file, or for a PNG slice group its first slice. */
  path: string;
  /** The name its prediction is named after (`<name>_pred...`). */
  name: string;
  /** A PNG slice group: its slice files in order (`path` is the first). */
  slices?: string[];
}

/** A scan (or an input) that could not be segmented. */
export interface PredictFailure {
  input: string;
  message: string;
}

const SLICE_NAME = /^(.+)_(\d+)\.png$/i;

/** The scans of a folder: its volume files, and its PNGs grouped into slice groups by name. */
async function folderScans(dir: string): Promise<Scan[]> {
  const imageDir = await isDirectory(join(dir, "img")) ? join(dir, "img") : dir;
  const names: string[] = [];
  for await (const e of Deno.readDir(imageDir)) {
    if (e.name.startsWith(".")) continue;
    if (e.isFile || (e.isSymlink && !(await isDirectory(join(imageDir, e.name))))) {
      names.push(e.name);
    }
  }
  names.sort();
  const scans: Scan[] = [];
  const groups = new Map<string, { slice: number; name: string }[]>();
  for (const name of names) {
    const format = volumeFormat(name);
    if (format === null) continue; // .raw / .zraw data files, notes, ...
    const m = SLICE_NAME.exec(name);
    if (format === "png" && m) {
      groups.set(m[1], [...(groups.get(m[1]) ?? []), { slice: Number(m[2]), name }]);
      continue;
    }
    scans.push({ path: join(imageDir, name), name: stripVolumeExtension(name) });
  }
  for (const [id, list] of groups) {
    list.sort((a, b) => a.slice - b.slice);
    const slices = list.map((s) => join(imageDir, s.name));
    scans.push({ path: slices[0], name: id, slices });
  }
  return scans.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * The scans of the inputs (files and folders); an input that does not exist, has an unknown
 * format or is a folder without scans is a failure.
 */
export async function collectScans(
  inputs: string[],
): Promise<{ scans: Scan[]; failures: PredictFailure[] }> {
  const scans: Scan[] = [];
  const failures: PredictFailure[] = [];
  for (const input of inputs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(input);
    } catch {
      failures.push({ input, message: "no such file or folder" });
      continue;
    }
    if (info.isDirectory) {
      try {
        const found = await folderScans(input);
        if (found.length === 0) {
          failures.push({ input, message: "the folder holds no scan (.nii, .mhd, .h5, .png ...)" });
        }
        scans.push(...found);
      } catch (error) {
        failures.push({ input, message: (error as Error).message });
      }
      continue;
    }
    if (volumeFormat(input) === null) {
      failures.push({
        input,
        message: "unknown volume format (.nii, .nii.gz, .mhd, .mha, .h5, .hdf5, .png)",
      });
      continue;
    }
    scans.push({ path: input, name: stripVolumeExtension(basename(input)) });
  }
  return { scans, failures };
}

/** Read a scan: a volume file, or a PNG slice group stacked to `[slices, height, width]`. */
async function readScan(scan: Scan): Promise<VolumeData> {
  if (!scan.slices) return await readVolume(scan.path);
  const group = { id: scan.name, patient: scan.name, imageFiles: scan.slices, labelFiles: null };
  return (await readPngSliceGroup(group)).image;
}

/** The output format of `predict`: the input's own, or NIfTI for every scan. */
export type PredictFormat = "same" | "nifti";

/** The extension a scan's prediction is written with. */
function outputExtension(scan: Scan, format: PredictFormat): string {
  if (format === "nifti") return ".nii.gz";
  if (scan.slices) return "";
  const lower = scan.path.toLowerCase();
  return [".nii.gz", ".nii", ".mhd", ".mha", ".hdf5", ".h5", ".png"].find((e) =>
    lower.endsWith(e)
  )!;
}

/** Write a scan's labels in `format`, with the scan's geometry. */
async function writePrediction(
  out: string,
  scan: Scan,
  image: VolumeData,
  labels: Uint8Array,
  format: PredictFormat,
): Promise<void> {
  if (format === "nifti") return await writeNiftiLabels(out, labels, image, scan.path);
  if (scan.slices) {
    await Deno.mkdir(out, { recursive: true });
    const [, h, w] = image.shape;
    for (const [k, file] of scan.slices.entries()) {
      await writePng(join(out, basename(file)), {
        data: labels.subarray(k * h * w, (k + 1) * h * w),
        shape: [h, w],
        spacing: [1, 1],
      });
    }
    return;
  }
  const volume: VolumeData = {
    data: labels,
    shape: [...image.shape],
    spacing: [...image.spacing],
    spacingKnown: image.spacingKnown,
    ...(image.affine ? { affine: image.affine } : {}),
  };
  switch (volumeFormat(scan.path)) {
    case "nifti":
      return await writeNifti(out, volume, { datatype: "uint8" });
    case "metaimage": {
      const header = (image as Partial<MetaImageVolume>).header ?? {};
      const compressed = Object.entries(header).some(([k, v]) =>
        k.toLowerCase() === "compresseddata" && /^(true|1|yes)$/i.test(v.trim())
      );
      return await writeMetaImage(out, volume, { elementType: "MET_UCHAR", compress: compressed });
    }
    case "hdf5":
      return await writeHdf5(out, {
        label: {
          data: labels,
          shape: [...image.shape],
          ...(image.spacingKnown === false ? {} : { spacing: [...image.spacing] }),
        },
      });
    case "png":
      return await writePng(out, volume);
    default:
      throw new UserError(`Cannot write "${out}": unknown format`);
  }
}

/** The outcome of one scan. */
export interface PredictResult {
  input: string;
  output: string;
  /** The scan's (and the prediction's) shape. */
  shape: number[];
  /** Voxels of each class in the prediction. */
  voxels: Record<string, number>;
  seconds: number;
}

/** Options of {@linkcode predictScans}. */
export interface PredictOptions {
  /** Output folder (created). */
  out: string;
  /** @default "same" */
  format?: PredictFormat;
  /** Called after each scan (written or failed). */
  onResult?: (result: PredictResult | PredictFailure) => void;
}

/**
 * Segment every scan of `inputs` with `predictor` and write the predictions to `options.out`;
 * a scan that fails is reported and skipped.
 */
export async function predictScans(
  predictor: Predictor,
  inputs: string[],
  options: PredictOptions,
): Promise<{ written: PredictResult[]; failed: PredictFailure[] }> {
  const format = options.format ?? "same";
  const { scans: all, failures } = await collectScans(inputs);
  // the same scan named twice (a file and its folder) is segmented once
  const seen = new Set<string>();
  const scans = all.filter((s) => {
    const key = resolve(s.path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  for (const f of failures) options.onResult?.(f);
  const written: PredictResult[] = [];
  const failed = [...failures];
  try {
    await Deno.mkdir(options.out, { recursive: true });
  } catch (error) {
    throw new UserError(`Cannot write to "${options.out}": ${(error as Error).message}`);
  }
  const used = new Set<string>();
  for (const scan of scans) {
    const start = performance.now();
    let stem = `${scan.name.replace(/[^A-Za-z0-9._-]+/g, "_")}_pred`;
    for (let k = 2; used.has(stem); k++) stem = `${scan.name}_${k}_pred`;
    used.add(stem);
    const output = join(options.out, stem + outputExtension(scan, format));
    try {
      const image = await readScan(scan);
      const labels = await segmentScan(predictor, image, scan.path);
      await writePrediction(output, scan, image, labels, format);
      const counts = new Array(predictor.classNames.length).fill(0);
      for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
      const result: PredictResult = {
        input: scan.slices ? resolve(scan.path, "..") : scan.path,
        output,
        shape: [...image.shape],
        voxels: Object.fromEntries(predictor.classNames.map((c, i) => [c, counts[i]])),
        seconds: (performance.now() - start) / 1000,
      };
      if (scan.slices) result.input = `${result.input}/${scan.name}_*.png`;
      written.push(result);
      options.onResult?.(result);
    } catch (error) {
      const failure = { input: scan.path, message: (error as Error).message };
      failed.push(failure);
      options.onResult?.(failure);
    }
  }
  return { written, failed };
}
