/**
 * What the browser page does with a scan, written with the framework's own modules so that the
 * page segments exactly as `predict` does: the run's preprocessing (`prepareScan`), its network
 * through `probabilities()`, the prediction brought back to the scan's grid
 * (`labelsOnScanGrid`) and written as NIfTI with the scan's geometry (`rasAffine`,
 * `encodeNifti`). Nothing here touches the DOM or the file system, so Deno runs it too.
 *
 * @module
 */
import { decodeCheckpoint, restoreTensors } from "../core/checkpoint.ts";
import type { PreprocessOptions } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { probabilities } from "../core/evaluate.ts";
import { models, type SegmentationModel } from "../core/model.ts";
import { parseMetaImage } from "../io/metaimage.ts";
import { decodeNifti, encodeNifti, isGzip } from "../io/nifti.ts";
import { stripVolumeExtension } from "../io/volume.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { prepareScan } from "../plugins/datasets/preprocess.ts";
import { labelsOnScanGrid, rasAffine } from "../plugins/datasets/scan_grid.ts";
import { unetModel } from "../plugins/models/unet.ts";

/** What `serve` tells the page about its run (`model.json`). */
export interface PageModel {
  /** The run's folder name. */
  run: string;
  /** The checkpoint the weights came from (`best.ckpt`). */
  checkpoint: string;
  /** Class names, index 0 = background. */
  classNames: string[];
  /** The run's preprocessing (its dataset's `preprocessing()`). */
  prep: PreprocessOptions;
  /** The model plugin, its parsed options and the run's seed. */
  model: { type: string; options: unknown; seed: number };
}

/** The name the page's weights carry (the student's, whichever network the run evaluates). */
export const PAGE_MODEL_NAME = "student";

/** The built-in models the page can build (a run's own plugin modules are not in the bundle). */
const PAGE_MODELS = [unetModel];

/**
 * Build the run's network from `model.json` and the weights `serve` sends (a checkpoint file).
 *
 * @throws {UserError} For a model the page does not have, or weights that do not fit it.
 */
export function buildPageModel(meta: PageModel, weights: Uint8Array): SegmentationModel {
  for (const m of PAGE_MODELS) if (!models.has(m.id)) models.register(m);
  if (!models.has(meta.model.type)) {
    throw new UserError(
      `The page cannot build model "${meta.model.type}": only the built-in models ` +
        `(${PAGE_MODELS.map((m) => m.id).join(", ")}) are in the browser bundle`,
    );
  }
  const model = models.get(meta.model.type).create(meta.model.options, {
    inChannels: 1,
    numClasses: meta.classNames.length,
    seed: meta.model.seed,
    name: PAGE_MODEL_NAME,
    scope: "page/",
  });
  try {
    restoreTensors(
      decodeCheckpoint(weights, "weights.ckpt"),
      new Map([...model.trainable, ...model.state]),
    );
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

/** Gunzip `bytes` when they are gzipped (with the platform's `DecompressionStream`). */
export async function gunzipIfNeeded(bytes: Uint8Array): Promise<Uint8Array> {
  if (!isGzip(bytes)) return bytes;
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Gzip `bytes` (with the platform's `CompressionStream`). */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Inflate a zlib (or gzip) stream with the platform's `DecompressionStream`. */
async function inflate(bytes: Uint8Array): Promise<Uint8Array> {
  const format = isGzip(bytes) ? "gzip" : "deflate";
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A file the user opened: its name and bytes (the page reads them from `File`s). */
export interface PageFile {
  /** The file's name, without a folder. */
  name: string;
  /** Its contents. */
  bytes(): Promise<Uint8Array>;
}

const SCAN = /\.(nii|nii\.gz|mha|mhd)$/i;

/**
 * Read the scan among the files the user opened together: a NIfTI (`.nii`, `.nii.gz`), a
 * MetaImage `.mha`, or a `.mhd` whose data file (`ElementDataFile`) is one of the other files.
 * Returns the scan and its file's name.
 *
 * @throws {UserError} `Cannot read "<name>": ...` for a corrupt file, a `.mhd` without its data
 * file, or no scan among the files.
 */
export async function readScanFiles(
  files: PageFile[],
): Promise<{ image: VolumeData; name: string }> {
  const scan = files.find((f) => SCAN.test(f.name));
  if (!scan) {
    const names = files.map((f) => f.name).join(", ");
    throw new UserError(
      `Cannot read "${names}": the page opens NIfTI scans (.nii, .nii.gz) and MetaImage ` +
        `(.mha, or a .mhd with its data file)`,
    );
  }
  const name = scan.name;
  let bytes: Uint8Array;
  try {
    bytes = await gunzipIfNeeded(await scan.bytes());
  } catch (error) {
    throw new UserError(`Cannot read "${name}": corrupt gzip stream (${(error as Error).message})`);
  }
  if (/\.nii(\.gz)?$/i.test(name)) return { image: decodeNifti(bytes, name), name };
  const image = await parseMetaImage(bytes, name, {
    dataFile: async (wanted) => {
      const base = wanted.split(/[\\/]/).pop()!;
      const file = files.find((f) => f.name === base);
      if (!file) {
        throw new UserError(
          `Cannot read "${name}": its data file "${base}" was not given; open (or drop) ` +
            `${name} and ${base} together`,
        );
      }
      return await file.bytes();
    },
    inflate,
  });
  return { image, name };
}

/** The name of the page's download for a scan: `<scan>_pred.nii.gz`, as `predict` names it. */
export function predictionName(scan: string): string {
  return `${stripVolumeExtension(scan)}_pred.nii.gz`;
}

/** A scan's segmentation, on its own grid. */
export interface PageResult {
  /** Labels (uint8 class indices) in the scan's shape and voxel order. */
  labels: Uint8Array;
  /** Voxels of each class. */
  voxels: number[];
  /** Millilitres of each class (voxels times the voxel volume from the header's spacing). */
  millilitres: number[];
  /** The prediction as a gzipped NIfTI, with the scan's shape, spacing and affine. */
  nifti: Uint8Array;
}

/**
 * Segment a scan as `predict` does and encode the prediction as `predict` writes it
 * (`writeNiftiLabels`: uint8, the scan's shape, spacing and RAS affine).
 */
export async function segmentScanInPage(
  model: SegmentationModel,
  meta: PageModel,
  image: VolumeData,
  name: string,
  progress: (line: string) => void = () => {},
): Promise<PageResult> {
  const classes = meta.classNames.length;
  progress("preprocessing");
  const { image: input, layout } = prepareScan(image, meta.prep, name);
  progress(`running the network on ${layout.depth} slices`);
  const probs = await probabilities(model, {
    image: input,
    shape: [layout.depth, meta.prep.size, meta.prep.size],
  });
  progress("bringing the prediction back to the scan's grid");
  const labels = labelsOnScanGrid(probs, layout, classes);
  const voxels = new Array(classes).fill(0);
  for (let i = 0; i < labels.length; i++) voxels[labels[i]]++;
  const voxelMm3 = image.spacing.slice(-3).reduce((a, b) => a * b, 1);
  const affine = rasAffine(image, name);
  const nifti = await gzip(encodeNifti({
    data: labels,
    shape: [...image.shape],
    spacing: [...image.spacing],
    ...(affine ? { affine } : {}),
  }, { datatype: "uint8" }));
  return { labels, voxels, millilitres: voxels.map((v) => (v * voxelMm3) / 1000), nifti };
}
