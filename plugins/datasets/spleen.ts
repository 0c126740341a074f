/**
 * The `spleen` dataset: Medical Segmentation Decathlon Task09 Spleen, portal-venous CT
 * (classes background, spleen), as downloaded: `imagesTr/spleen_N.nii.gz`,
 * `labelsTr/spleen_N.nii.gz` and `dataset.json` (whose `training` list, when present, names
 * the pairs; macOS `._` files of the archive are ignored).
 *
 * Intensities are clipped to a CT window (default [-160, 240] HU) and min-max normalised to
 * [0, 1] per volume; slices are axial (the axis of largest spacing). The paper's split is the
 * default: 4 labeled, the other training patients (32 of 41) unlabeled, 5 validation patients.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "../../deps.ts";
import type { DatasetContext, DatasetFactory, SegmentationDataset } from "../../core/dataset.ts";
import { UserError } from "../../core/errors.ts";
import { stripVolumeExtension, volumeFormat } from "../../io/volume.ts";
import {
  type CommonDatasetOptions,
  commonOptionFields,
  fileDatasetAccess,
  filePreprocessing,
  type LayoutCase,
  listNames,
  loadSplitDataset,
  pairCase,
  resolveRoot,
} from "./file_dataset.ts";
import { splitOptionsSchema } from "./_split.ts";

/** Options of the `spleen` dataset. */
export interface SpleenOptions extends CommonDatasetOptions {
  /** CT window `[lo, hi]` in HU, applied before normalising; `null` for none. @default {[-160, 240]} */
  window: [number, number] | null;
}

/** Strict schema of {@linkcode SpleenOptions}. */
export const spleenOptions: z.ZodType<SpleenOptions, z.ZodTypeDef, unknown> = z.object({
  ...commonOptionFields(512),
  window: z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo < hi, {
    message: "window must be [lo, hi] with lo < hi",
  }).nullable().default([-160, 240]).describe(
    "CT window `[lo, hi]` in HU, applied before normalising; `null` for none.",
  ),
  split: splitOptionsSchema(4).default({ labeled: 4 }).describe(
    "Patient counts per split: `labeled` (a number or `all`), `unlabeled`, `validation`, `test`.",
  ),
}).strict();

/** Spleen class names. */
export const SPLEEN_CLASSES = ["background", "spleen"];

/** Image / label pairs from `dataset.json` (`training`), or by name in imagesTr / labelsTr. */
export async function msdPairs(
  datasetId: string,
  root: string,
): Promise<{ id: string; image: string; label: string }[]> {
  const jsonPath = join(root, "dataset.json");
  let json: { training?: { image?: string; label?: string }[] } | null = null;
  try {
    json = JSON.parse(await Deno.readTextFile(jsonPath));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new UserError(`Cannot read "${jsonPath}": ${(error as Error).message}`);
    }
  }
  if (json?.training?.length) {
    return json.training.map((entry, i) => {
      if (typeof entry.image !== "string" || typeof entry.label !== "string") {
        throw new UserError(`Cannot read "${jsonPath}": training[${i}] needs "image" and "label"`);
      }
      const image = join(root, entry.image), label = join(root, entry.label);
      return { id: stripVolumeExtension(image.split("/").pop()!), image, label };
    });
  }
  const images = (await listNames(join(root, "imagesTr"), "file")).filter((n) => volumeFormat(n));
  const labels = new Set(
    (await listNames(join(root, "labelsTr"), "file")).filter((n) => volumeFormat(n)),
  );
  if (images.length === 0) {
    throw new UserError(
      `Cannot load dataset "${datasetId}": no volumes in "${join(root, "imagesTr")}" ` +
        `(expected the MSD layout: imagesTr/, labelsTr/, dataset.json)`,
    );
  }
  return images.map((name) => {
    if (!labels.has(name)) {
      throw new UserError(
        `Cannot load dataset "${datasetId}": "${join(root, "imagesTr", name)}" has no label ` +
          `"${join(root, "labelsTr", name)}"`,
      );
    }
    return {
      id: stripVolumeExtension(name),
      image: join(root, "imagesTr", name),
      label: join(root, "labelsTr", name),
    };
  });
}

/**
 * The `spleen` dataset plugin.
 *
 * @example
 * ```ts ignore
 * import { spleenDataset, spleenOptions } from "./spleen.ts";
 * const data = await spleenDataset.load(
 *   spleenOptions.parse({ root: "data/Task09_Spleen", size: 256 }),
 *   { seed: 1, baseDir: "." },
 * );
 * ```
 */
export const spleenDataset: DatasetFactory<SpleenOptions> = {
  id: "spleen",
  description: "MSD Task09 spleen CT (NIfTI), windowed and min-max normalised, split by patient",
  options: spleenOptions,
  access: fileDatasetAccess,
  pathOptions: ["root", "cache"],
  preprocessing: (options) => filePreprocessing(options, options.window),
  async load(options: SpleenOptions, context: DatasetContext): Promise<SegmentationDataset> {
    const root = await resolveRoot("spleen", options.root, context.baseDir);
    const pairs = await msdPairs("spleen", root);
    const cases: LayoutCase[] = pairs.map((p) =>
      pairCase("spleen", { id: p.id, patient: p.id }, p.image, p.label)
    );
    return await loadSplitDataset(
      {
        datasetId: "spleen",
        classNames: SPLEEN_CLASSES,
        root,
        cases,
        pool: cases.map((c) => c.patient),
        defaultValidation: 5,
        window: options.window ?? undefined,
        layoutName: "MSD Task09",
      },
      options,
      context,
    );
  },
};
