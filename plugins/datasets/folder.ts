/**
 * The `folder` dataset: image / label volume pairs matched by name, `images/X.nii.gz` with
 * `labels/X.nii.gz`, in any format `readVolume` knows (NIfTI, MetaImage, HDF5; the two files
 * of a pair may differ in format). Every pair is one case; its patient is its name, or the
 * first capture group of `patientPattern` (so that e.g. two frames of one patient stay in one
 * split).
 *
 * Classes: `classes` (a count or the names); else the `labels` of a `dataset.json` in `root`
 * (MSD style); else the largest label value loaded + 1.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { z } from "../../deps.ts";
import type {
  DatasetAccess,
  DatasetAccessContext,
  DatasetContext,
  DatasetFactory,
  SegmentationDataset,
} from "../../core/dataset.ts";
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

/** Options of the `folder` dataset. */
export interface FolderOptions extends CommonDatasetOptions {
  /** Sub-folder of the images. @default "images" */
  images: string;
  /** Sub-folder of the labels. @default "labels" */
  labels: string;
  /** Number of classes (background included) or their names. @default see the module doc */
  classes?: number | string[];
  /** Regular expression whose first group (or whole match) is a case's patient. */
  patientPattern?: string;
  /** CT-style intensity window `[lo, hi]` applied before normalising. */
  window?: [number, number];
}

/** Strict schema of {@linkcode FolderOptions}. */
export const folderOptions: z.ZodType<FolderOptions, z.ZodTypeDef, unknown> = z.object({
  ...commonOptionFields(256),
  images: z.string().min(1).default("images").describe("Sub-folder of the images."),
  labels: z.string().min(1).default("labels").describe("Sub-folder of the labels."),
  classes: z.union([
    z.number().int().min(2, "classes must be at least 2 (background and one class)").max(256),
    z.array(z.string().min(1)).min(2, "classes must name at least 2 classes").max(256),
  ]).optional().describe(
    "Number of classes (background included) or their names; by default read from " +
      "`dataset.json`, else the largest label + 1.",
  ),
  patientPattern: z.string().min(1).refine((s) => {
    try {
      new RegExp(s);
      return true;
    } catch {
      return false;
    }
  }, { message: "patientPattern must be a valid regular expression" }).optional().describe(
    "Regular expression whose first group (or whole match) is a case's patient.",
  ),
  window: z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo < hi, {
    message: "window must be [lo, hi] with lo < hi",
  }).optional().describe("CT-style intensity window `[lo, hi]` applied before normalising."),
  split: splitOptionsSchema(1).describe(
    "Patient counts per split: `labeled` (a number or `all`), `unlabeled`, `validation`, `test`.",
  ),
}).strict();

async function classNamesFromJson(root: string): Promise<string[] | null> {
  try {
    const json = JSON.parse(await Deno.readTextFile(join(root, "dataset.json")));
    const labels = json?.labels as Record<string, string> | undefined;
    if (!labels || typeof labels !== "object") return null;
    const entries = Object.entries(labels).map(([k, v]) => [Number(k), String(v)] as const);
    if (entries.some(([k]) => !Number.isInteger(k) || k < 0)) return null;
    const count = Math.max(...entries.map(([k]) => k)) + 1;
    const names = Array.from({ length: count }, (_, i) => `class${i}`);
    for (const [k, v] of entries) names[k] = v;
    return names;
  } catch {
    return null;
  }
}

/**
 * The `folder` dataset plugin.
 *
 * @example
 * ```ts ignore
 * import { folderDataset, folderOptions } from "./folder.ts";
 * const data = await folderDataset.load(
 *   folderOptions.parse({ root: "../shared/data/hippocampus", size: 32, split: { labeled: 2 } }),
 *   { seed: 1, baseDir: "." },
 * );
 * ```
 */
export const folderDataset: DatasetFactory<FolderOptions> = {
  id: "folder",
  description: "Image / label volume pairs matched by name (images/X + labels/X, any format)",
  options: folderOptions,
  pathOptions: ["root", "cache"],
  access(options: FolderOptions, context: DatasetAccessContext): DatasetAccess {
    // images / labels are joined to root and may point beside it ("../labels")
    const access = fileDatasetAccess(options, context);
    const root = resolve(context.baseDir, options.root);
    access.read.push(join(root, options.images), join(root, options.labels));
    return access;
  },
  preprocessing: (options) => filePreprocessing(options, options.window),
  async load(options: FolderOptions, context: DatasetContext): Promise<SegmentationDataset> {
    const root = await resolveRoot("folder", options.root, context.baseDir);
    const imageDir = join(root, options.images), labelDir = join(root, options.labels);
    const isVolume = (n: string) => volumeFormat(n) !== null;
    const images = (await listNames(imageDir, "file")).filter(isVolume);
    const labels = (await listNames(labelDir, "file")).filter(isVolume);
    if (images.length === 0) {
      throw new UserError(
        `Cannot load dataset "folder": no image volumes in "${imageDir}" ` +
          `(expected ${options.images}/X.nii.gz with ${options.labels}/X.nii.gz)`,
      );
    }
    const labelOf = new Map<string, string>();
    for (const name of labels) {
      const stem = stripVolumeExtension(name);
      if (labelOf.has(stem)) {
        throw new UserError(
          `Cannot load dataset "folder": two label files for "${stem}" in "${labelDir}"`,
        );
      }
      labelOf.set(stem, name);
    }
    const pattern = options.patientPattern ? new RegExp(options.patientPattern) : null;
    const seen = new Set<string>();
    const cases: LayoutCase[] = images.map((name) => {
      const id = stripVolumeExtension(name);
      if (seen.has(id)) {
        throw new UserError(
          `Cannot load dataset "folder": two image files for "${id}" in "${imageDir}"`,
        );
      }
      seen.add(id);
      const label = labelOf.get(id);
      if (!label) {
        throw new UserError(
          `Cannot load dataset "folder": image "${join(imageDir, name)}" has no label ` +
            `"${join(labelDir, `${id}.*`)}"`,
        );
      }
      const m = pattern?.exec(id);
      const patient = m ? (m[1] ?? m[0]) : id;
      return pairCase("folder", { id, patient }, join(imageDir, name), join(labelDir, label));
    });
    const orphan = [...labelOf.keys()].filter((stem) => !seen.has(stem));
    if (orphan.length) {
      throw new UserError(
        `Cannot load dataset "folder": label "${join(labelDir, labelOf.get(orphan[0])!)}" has no ` +
          `image in "${imageDir}"`,
      );
    }
    let classNames = typeof options.classes === "number"
      ? ["background", ...Array.from({ length: options.classes - 1 }, (_, i) => `class${i + 1}`)]
      : options.classes ?? await classNamesFromJson(root);
    const inferred = classNames === null;
    classNames ??= Array.from({ length: 256 }, (_, i) => `class${i}`);
    const patients = [...new Set(cases.map((c) => c.patient))];
    const dataset = await loadSplitDataset(
      {
        datasetId: "folder",
        classNames,
        root,
        cases,
        pool: patients,
        defaultValidation: Math.max(1, Math.round(patients.length / 5)),
        window: options.window,
        cacheKey: {
          images: options.images,
          labels: options.labels,
          patientPattern: options.patientPattern,
        },
        layoutName: `${cases.length} pairs`,
      },
      options,
      context,
    );
    if (inferred) {
      let max = 1;
      const scan = (labels: Uint8Array | null) => {
        if (labels) {
          for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i];
        }
      };
      scan(dataset.labeled.labels);
      for (const v of [...dataset.validation, ...(dataset.test ?? [])]) scan(v.label);
      dataset.classNames = [
        "background",
        ...Array.from({ length: max }, (_, i) => `class${i + 1}`),
      ];
      context.log?.(
        `folder: ${max + 1} classes, from the largest label value (set "classes" to name them)`,
      );
    }
    return dataset;
  },
};
