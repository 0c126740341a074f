// A dataset plugin built on the file-dataset base (the one the built-in acdc, promise12, spleen
// and folder datasets use): one folder per patient, each holding `image.<ext>` and, for labeled
// patients, `mask.<ext>` in any format the io readers know (.nii.gz, .nii, .mha/.mhd, .h5).
// The base reads, preprocesses (resize, normalise), caches and splits by patient.
// Use it from a recipe with `plugins: ["./pairs_dataset.ts"]` and
// `dataset: { type: pairs, root: data/my-study, classes: [background, tumour] }`.
// Outside this repository, import mod.ts by its URL instead of "../mod.ts".
import {
  type CommonDatasetOptions,
  commonOptionFields,
  type DatasetFactory,
  datasets,
  fileDatasetAccess,
  filePreprocessing,
  type LayoutCase,
  listNames,
  loadSplitDataset,
  type OptionsSchema,
  pairCase,
  resolveRoot,
  splitOptionsSchema,
  UserError,
  volumeFormat,
  z,
} from "../mod.ts";

/** Options of the `pairs` dataset: the shared ones (root, size, split, cache, ...) and classes. */
export interface PairsOptions extends CommonDatasetOptions {
  /** Class names, background first. */
  classes: string[];
}

const options: OptionsSchema<PairsOptions> = z.object({
  ...commonOptionFields(64),
  classes: z.array(z.string().min(1)).min(2).default(["background", "foreground"]),
  split: splitOptionsSchema(1),
}).strict();

/** The `pairs` dataset plugin. */
export const pairsDataset: DatasetFactory<PairsOptions> = {
  id: "pairs",
  description: "One folder per patient with image.<ext> and mask.<ext> (any volume format)",
  options,
  // What the run reads and writes (the data folder, its cache): `deno task run` grants these.
  access: (opts, context) => fileDatasetAccess(opts, context),
  // Options that are paths: given with --set, they are relative to where the command is typed.
  pathOptions: ["root", "cache"],
  // How `predict` preprocesses a new scan for a run on this dataset: as `load` does.
  preprocessing: (opts) => filePreprocessing(opts),
  async load(opts, context) {
    const root = await resolveRoot("pairs", opts.root, context.baseDir);
    const cases: LayoutCase[] = [];
    for (const patient of await listNames(root, "dir")) {
      const files = await listNames(`${root}/${patient}`, "file");
      const find = (stem: string) =>
        files.find((f) => f.startsWith(`${stem}.`) && volumeFormat(f) !== null);
      const image = find("image");
      if (image === undefined) {
        throw new UserError(`Cannot load dataset "pairs": no image file in "${root}/${patient}"`);
      }
      const mask = find("mask");
      cases.push(
        pairCase(
          "pairs",
          { id: patient, patient },
          `${root}/${patient}/${image}`,
          mask === undefined ? null : `${root}/${patient}/${mask}`,
        ),
      );
    }
    return await loadSplitDataset(
      {
        datasetId: "pairs",
        classNames: opts.classes,
        root,
        cases,
        pool: cases.map((c) => c.patient),
        defaultValidation: 1,
        layoutName: "<patient>/image + mask",
      },
      opts,
      context,
    );
  },
};

if (!datasets.has(pairsDataset.id)) datasets.register(pairsDataset);
