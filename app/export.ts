/**
 * What `eval` needs besides the trainer: evaluating on another dataset (`--data`) and writing
 * predictions as NIfTI (`--export`).
 *
 * Predictions are written **on the evaluated grid** (`[slices, size, size]` after the dataset's
 * preprocessing), not resampled back to the source grid: the NIfTI carries the volume's
 * spacing (the source spacing rescaled by the in-plane resizing) and, when the source file has
 * one, its affine composed with the resizing and slice-axis permutation, so viewers overlay the
 * prediction on the source image. Volumes without known spacing (the SSL4MIS HDF5 files) are
 * written with 1 mm voxels and a diagonal affine.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { datasets, type Volume } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe } from "../core/recipe.ts";
import { writeVolume } from "../io/volume.ts";

/** The file name of a volume's exported prediction: `<volume id>_pred.nii.gz`. */
export function predictionFileName(volumeId: string): string {
  return `${volumeId.replace(/[^A-Za-z0-9._-]+/g, "_")}_pred.nii.gz`;
}

/**
 * Write a volume's predicted labels as a gzipped NIfTI (uint8) in `dir` (created if needed),
 * with the volume's spacing and affine (see the module doc); returns the file's path.
 *
 * @throws {UserError} When the file cannot be written.
 */
export async function exportPrediction(
  dir: string,
  volume: Volume,
  prediction: Uint8Array,
): Promise<string> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new UserError(`Cannot write predictions to "${dir}": ${(error as Error).message}`);
  }
  const path = join(dir, predictionFileName(volume.id));
  await writeVolume(path, {
    data: prediction,
    shape: [...volume.shape],
    spacing: [...(volume.spacing ?? [1, 1, 1])],
    spacingKnown: volume.spacing !== undefined,
    ...(volume.affine ? { affine: volume.affine } : {}),
  }, { type: "uint8" });
  return path;
}

/**
 * The `--set` override of a run's recipe that makes `eval --data <data>` evaluate on another
 * dataset:
 *
 * - a **recipe file** (`.yaml` / `.yml`): its `dataset` section (after `extends` and `${VAR}`)
 *   replaces the run's, with `root` (and a `cache` folder) made absolute against that recipe's
 *   folder;
 * - a **directory**: the run's dataset type and options, with `root` replaced by it (absolute,
 *   from the current directory).
 *
 * @throws {UserError} When `data` does not exist, or the recipe has no dataset.
 */
export async function datasetOverride(
  data: string,
  options: {
    /** Environment lookup for the recipe's `${VAR}`s. @default {Deno.env.get} */
    env?: (name: string) => string | undefined;
    /** Receives the recipe files read (the recipe and its `extends:` chain). */
    files?: string[];
    /**
     * The run's dataset section: a folder can replace its `root` only when its plugin reads
     * one (a generated dataset, like the phantom, has none).
     */
    runDataset?: Record<string, unknown>;
  } = {},
): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(data);
  } catch {
    throw new UserError(
      `--data: "${data}" does not exist (looked for ${resolve(data)}; give a recipe file or a ` +
        `data folder)`,
    );
  }
  if (info.isDirectory) {
    const type = options.runDataset?.type;
    if (typeof type === "string" && datasets.has(type) && !readsRoot(datasets.get(type).options)) {
      throw new UserError(
        `--data "${data}": the run's dataset "${type}" reads no data folder (it has no root ` +
          `option), so a folder cannot stand in for it. Give a recipe file whose dataset ` +
          `section describes the data instead, e.g. one holding dataset: { type: folder, root: ` +
          `${resolve(data)} } (deno task plugins lists each dataset's options)`,
      );
    }
    return `dataset.root=${JSON.stringify(resolve(data))}`;
  }
  const loaded = await loadRecipe(data, { env: options.env });
  options.files?.push(...loaded.files);
  const dataset = { ...(loaded.resolved.dataset as Record<string, unknown> | undefined) };
  if (!dataset.type) throw new UserError(`--data: recipe "${data}" has no dataset section`);
  const base = dirname(loaded.file);
  if (typeof dataset.root === "string") dataset.root = resolve(base, dataset.root);
  if (typeof dataset.cache === "string") dataset.cache = resolve(base, dataset.cache);
  return `dataset=${JSON.stringify(dataset)}`;
}

/** Whether a dataset plugin's options take a `root` folder. */
function readsRoot(schema: { safeParse(value: unknown): { success: boolean; error?: unknown } }) {
  const result = schema.safeParse({ root: "/" });
  if (result.success) return true;
  const issues = (result.error as { issues?: Array<{ code: string; keys?: string[] }> }).issues;
  return !(issues ?? []).some((i) => i.code === "unrecognized_keys" && i.keys?.includes("root"));
}
