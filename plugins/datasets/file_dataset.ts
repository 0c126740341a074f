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
 * - {@linkcode filePreprocessing}: the plugin's `preprocessing` (how `predict` brings a scan
 *   onto the network's grid), the very options `loadSplitDataset` preprocesses the cases with.
 *
 * The steps live in their own modules: the pure preprocessing in `preprocess.ts` (also what
 * `predict` uses), loading through the cache in `case_loader.ts`, stacking in `assemble.ts`, the
 * file layout in `layout.ts` and the shared options in `options.ts`; this module re-exports
 * them.
 *
 * @module
 */
import { resolve } from "node:path";
import type {
  DatasetAccess,
  DatasetAccessContext,
  DatasetContext,
  SegmentationDataset,
} from "../../core/dataset.ts";
import { resolveCacheDir } from "./_cache.ts";
import { splitPatients } from "./_split.ts";
import { assembleDataset } from "./assemble.ts";
import { type CaseSource, loadCases } from "./case_loader.ts";
import type { LayoutCase } from "./layout.ts";
import { type CommonDatasetOptions, filePreprocessing } from "./options.ts";

export { type SplitOptions, splitOptionsSchema } from "./_split.ts";
export {
  type CommonDatasetOptions,
  type CommonOptionFields,
  commonOptionFields,
  filePreprocessing,
} from "./options.ts";
export {
  type Fit,
  prepareCase,
  type PrepareContext,
  type PreparedCase,
  type PreparedScan,
  prepareScan,
  type PreprocessOptions,
  type RawCase,
  type ScanLayout,
  scanLayout,
  type SliceGeometry,
  sliceGeometry,
} from "./preprocess.ts";
export { type CaseSource, loadCases, type LoadCasesOptions } from "./case_loader.ts";
export { assembleDataset, type AssembleInput } from "./assemble.ts";
export { type LayoutCase, listNames, pairCase, readList, resolveRoot } from "./layout.ts";

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
    prep: filePreprocessing(options, input.window),
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
