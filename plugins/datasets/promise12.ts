/**
 * The `promise12` dataset: PROMISE12 prostate T2w MRI (classes background, prostate) in either
 * of two layouts.
 *
 * - **MetaImage** (`format: mhd`): the challenge download, `CaseNN.mhd` (+ `.raw`) with
 *   `CaseNN_segmentation.mhd`, found up to three folders below `root` (e.g.
 *   `TrainingData_Part1/`). Cases without a segmentation (the test set) are left out.
 * - **PNG slices** (`format: png`): the authors' preprocessed slices, `img/CaseNN_0_SS.png` and
 *   `gt/CaseNN_0_SS.png`, either directly in `root` or in `root/train` and `root/val` (and
 *   `root/test`), whose patients are then the training pool and the validation (test) sets.
 *   Label PNGs stored as `0/255` are read as `0/1`.
 *
 * The paper's split is the default: 7 labeled, the other training patients (33 of 50)
 * unlabeled, 10 validation patients.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "../../deps.ts";
import type { DatasetContext, DatasetFactory, SegmentationDataset } from "../../core/dataset.ts";
import { UserError } from "../../core/errors.ts";
import { listPngSlices, type PngSliceGroup, readPngSliceGroup } from "../../io/png_slices.ts";
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

/** Options of the `promise12` dataset. */
export interface Promise12Options extends CommonDatasetOptions {
  /** Layout: `auto` picks `png` when `img/` or `train/img/` exists. @default "auto" */
  format: "auto" | "mhd" | "png";
}

/** Strict schema of {@linkcode Promise12Options}. */
export const promise12Options: z.ZodType<Promise12Options, z.ZodTypeDef, unknown> = z.object({
  ...commonOptionFields(256),
  format: z.enum(["auto", "mhd", "png"]).default("auto").describe(
    "Layout: `auto` picks `png` when `img/` or `train/img/` exists.",
  ),
  split: splitOptionsSchema(7).default({ labeled: 7 }).describe(
    "Patient counts per split: `labeled` (a number or `all`), `unlabeled`, `validation`, `test`.",
  ),
}).strict();

/** PROMISE12 class names. */
export const PROMISE12_CLASSES = ["background", "prostate"];

async function findMetaImages(dir: string, depth: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await listNames(dir, "any")) {
    const path = join(dir, name);
    if (/\.(mhd|mha)$/i.test(name)) out.set(name, path);
    else if (depth > 1 && (await Deno.stat(path).catch(() => null))?.isDirectory) {
      for (const [k, v] of await findMetaImages(path, depth - 1)) out.set(k, v);
    }
  }
  return out;
}

async function mhdCases(root: string): Promise<LayoutCase[]> {
  const files = await findMetaImages(root, 3);
  const lower = new Map([...files].map(([k, v]) => [k.toLowerCase(), v]));
  const cases: LayoutCase[] = [];
  for (const [name, path] of files) {
    const m = /^(case\d+)\.(mhd|mha)$/i.exec(name);
    if (!m) continue;
    const seg = lower.get(`${m[1].toLowerCase()}_segmentation.mhd`) ??
      lower.get(`${m[1].toLowerCase()}_segmentation.mha`);
    if (!seg) continue;
    cases.push(pairCase("promise12", { id: m[1], patient: m[1] }, path, seg));
  }
  return cases.sort((a, b) => a.id.localeCompare(b.id));
}

function pngCase(group: PngSliceGroup): LayoutCase {
  return {
    id: group.id,
    patient: group.patient,
    files: [...group.imageFiles, ...(group.labelFiles ?? [])],
    read: async () => {
      const { image, label } = await readPngSliceGroup(group);
      return {
        image,
        label,
        imagePath: group.imageFiles[0],
        labelPath: group.labelFiles?.[0],
      };
    },
  };
}

async function isDir(path: string): Promise<boolean> {
  return (await Deno.stat(path).catch(() => null))?.isDirectory ?? false;
}

/**
 * The `promise12` dataset plugin.
 *
 * @example
 * ```ts ignore
 * import { promise12Dataset, promise12Options } from "./promise12.ts";
 * const data = await promise12Dataset.load(
 *   promise12Options.parse({ root: "data/promise12", size: 128 }),
 *   { seed: 1, baseDir: "." },
 * );
 * ```
 */
export const promise12Dataset: DatasetFactory<Promise12Options> = {
  id: "promise12",
  description: "PROMISE12 prostate MRI: MetaImage cases or PNG slice folders, split by patient",
  options: promise12Options,
  access: fileDatasetAccess,
  pathOptions: ["root", "cache"],
  preprocessing: (options) => filePreprocessing(options),
  async load(options: Promise12Options, context: DatasetContext): Promise<SegmentationDataset> {
    const root = await resolveRoot("promise12", options.root, context.baseDir);
    let format = options.format;
    if (format === "auto") {
      format = (await isDir(join(root, "img"))) || (await isDir(join(root, "train", "img")))
        ? "png"
        : "mhd";
    }
    let cases: LayoutCase[];
    let validationPool: string[] | undefined, testPool: string[] | undefined;
    let pool: string[];
    if (format === "png") {
      const flat = await isDir(join(root, "img"));
      const part = async (dir: string) => (await listPngSlices(dir)).map(pngCase);
      if (flat) {
        cases = await part(root);
        pool = cases.map((c) => c.patient);
      } else {
        if (!(await isDir(join(root, "train", "img")))) {
          throw new UserError(
            `Cannot load dataset "promise12": no PNG slices in "${root}" (expected img/ and gt/, ` +
              `or train/img/ and train/gt/)`,
          );
        }
        const train = await part(join(root, "train"));
        const val = (await isDir(join(root, "val"))) ? await part(join(root, "val")) : [];
        const test = (await isDir(join(root, "test"))) ? await part(join(root, "test")) : [];
        cases = [...train, ...val, ...test];
        pool = train.map((c) => c.patient);
        if (val.length) validationPool = val.map((c) => c.patient);
        if (test.length) testPool = test.map((c) => c.patient);
      }
    } else {
      cases = await mhdCases(root);
      pool = cases.map((c) => c.patient);
    }
    if (cases.length === 0) {
      throw new UserError(
        `Cannot load dataset "promise12": no PROMISE12 cases in "${root}"; expected ` +
          `CaseNN.mhd with CaseNN_segmentation.mhd, or PNG slices in img/ and gt/ ` +
          `(CaseNN_0_SS.png)`,
      );
    }
    return await loadSplitDataset(
      {
        datasetId: "promise12",
        classNames: PROMISE12_CLASSES,
        root,
        cases,
        pool: [...new Set(pool)],
        validationPool,
        testPool,
        defaultValidation: 10,
        scaledLabels: format === "png",
        cacheKey: { format },
        layoutName: format,
      },
      options,
      context,
    );
  },
};
