/**
 * The `acdc` dataset: ACDC cardiac cine MRI (classes background, RV, myocardium, LV) in either
 * of its two common layouts.
 *
 * - **SSL4MIS HDF5** (`format: hdf5`): `<root>/data/patientXXX_frameYY_slice_N.h5` training
 *   slices (also looked for in `<root>/data/slices/`) listed in `<root>/train_slices.list`
 *   (or volumes in `train.list`), and `<root>/data/patientXXX_frameYY.h5` volumes listed in
 *   `val.list` (and `test.list` when present). Each file holds `image` (float32 in [0, 1]) and
 *   `label` (uint8). No spacing is stored.
 * - **Challenge NIfTI** (`format: nifti`): `patientXXX/patientXXX_frameYY.nii.gz` with
 *   `patientXXX_frameYY_gt.nii.gz`, found up to three folders below `root` (e.g.
 *   `database/training/patient001/`). If `root` has SSL4MIS lists they define the split pools;
 *   otherwise every patient is in the pool and `split.validation` (default 10) are held out.
 *
 * Splits are by patient (both frames of a patient stay together), seeded with the run seed;
 * by default the `train.list` patients are the training pool (7 labeled, the rest unlabeled)
 * and the `val.list` volumes the validation set. Slices are resized to `size x size`
 * (bilinear images, nearest labels) and each volume is min-max normalised (the SSL4MIS images
 * already are). Preprocessed volumes are cached on disk.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "../../deps.ts";
import type { DatasetContext, DatasetFactory, SegmentationDataset } from "../../core/dataset.ts";
import { UserError } from "../../core/errors.ts";
import { readSsl4misHdf5 } from "../../io/hdf5.ts";
import { readNifti } from "../../io/nifti.ts";
import type { VolumeData } from "../../io/volume_data.ts";
import {
  type CommonDatasetOptions,
  commonOptionFields,
  fileDatasetAccess,
  filePreprocessing,
  type LayoutCase,
  listNames,
  loadSplitDataset,
  readList,
  resolveRoot,
} from "./file_dataset.ts";
import { splitOptionsSchema } from "./_split.ts";

/** Options of the `acdc` dataset. */
export interface AcdcOptions extends CommonDatasetOptions {
  /** Layout: `auto` picks `hdf5` when `<root>/data` holds `.h5` files. @default "auto" */
  format: "auto" | "hdf5" | "nifti";
}

/** Strict schema of {@linkcode AcdcOptions}. */
export const acdcOptions: z.ZodType<AcdcOptions, z.ZodTypeDef, unknown> = z.object({
  ...commonOptionFields(256),
  format: z.enum(["auto", "hdf5", "nifti"]).default("auto").describe(
    "Layout: `auto` picks `hdf5` when `<root>/data` holds `.h5` files.",
  ),
  split: splitOptionsSchema(7).default({ labeled: 7 }).describe(
    "Patient counts per split: `labeled` (a number or `all`), `unlabeled`, `validation`, `test`.",
  ),
}).strict();

/** ACDC class names, index = label value. */
export const ACDC_CLASSES = ["background", "RV", "Myo", "LV"];

/** The patient of a volume or slice name (`patient001_frame01_slice_3` -> `patient001`). */
export function acdcPatient(name: string): string {
  return /^(patient\d+)/i.exec(name)?.[1] ?? name.replace(/_frame.*$/, "");
}

/** A volume of the layout: its name and the files it is read from. */
interface AcdcVolume {
  name: string;
  patient: string;
  /** SSL4MIS: slice files in slice order, or one volume file. NIfTI: image then label. */
  files: string[];
  kind: "slices" | "h5" | "nifti";
}

/** What a layout offers the split: volumes and the patient pools. */
interface AcdcLayout {
  format: "hdf5" | "nifti";
  volumes: Map<string, AcdcVolume[]>; // by patient
  pool: string[];
  validationPool?: string[];
  testPool?: string[];
}

const stripH5 = (s: string) => s.replace(/\.h5$/i, "");

function addVolume(map: Map<string, AcdcVolume[]>, v: AcdcVolume): void {
  const list = map.get(v.patient) ?? [];
  if (!list.some((x) => x.name === v.name)) list.push(v);
  map.set(v.patient, list);
}

const patientsOf = (names: string[]) => [...new Set(names.map(acdcPatient))];

async function hdf5Layout(root: string): Promise<AcdcLayout> {
  const dataDir = join(root, "data");
  const slicesDir = join(dataDir, "slices");
  const slices = new Map<string, string>();
  const volumeFiles = new Map<string, string>();
  for (const dir of [dataDir, slicesDir]) {
    for (const name of await listNames(dir, "file")) {
      if (!/\.h5$/i.test(name)) continue;
      const stem = stripH5(name);
      if (/_slice_\d+$/.test(stem)) slices.set(stem, join(dir, name));
      else volumeFiles.set(stem, join(dir, name));
    }
  }
  const sliceList = await readList(join(root, "train_slices.list"));
  const trainList = await readList(join(root, "train.list"));
  const valList = await readList(join(root, "val.list"));
  const testList = await readList(join(root, "test.list"));
  const slicesOf = new Map<string, string[]>(); // volume -> slice names
  for (const s of slices.keys()) {
    const v = s.replace(/_slice_\d+$/, "");
    slicesOf.set(v, [...(slicesOf.get(v) ?? []), s]);
  }
  const volumes = new Map<string, AcdcVolume[]>();
  const sliceIndex = (s: string) => Number(/_slice_(\d+)$/.exec(s)![1]);
  const fromSlices = (name: string, names: string[]): AcdcVolume => {
    const files = [...names].sort((a, b) => sliceIndex(a) - sliceIndex(b)).map((s) => {
      const path = slices.get(s);
      if (!path) {
        throw new UserError(
          `Cannot load dataset "acdc": slice "${s}" is listed but "${join(dataDir, `${s}.h5`)}" ` +
            `does not exist`,
        );
      }
      return path;
    });
    return { name, patient: acdcPatient(name), files, kind: "slices" };
  };
  const volumeOf = (name: string, listFile: string): AcdcVolume => {
    const file = volumeFiles.get(name);
    if (file) return { name, patient: acdcPatient(name), files: [file], kind: "h5" };
    const own = slicesOf.get(name);
    if (own) return fromSlices(name, own);
    throw new UserError(
      `Cannot load dataset "acdc": "${name}" is listed in ${listFile} but ` +
        `"${join(dataDir, `${name}.h5`)}" does not exist`,
    );
  };

  const train: string[] = [];
  if (sliceList) {
    const grouped = new Map<string, string[]>();
    for (const s of sliceList.map(stripH5)) {
      const v = s.replace(/_slice_\d+$/, "");
      grouped.set(v, [...(grouped.get(v) ?? []), s]);
    }
    for (const [v, names] of grouped) addVolume(volumes, fromSlices(v, names)), train.push(v);
  } else if (trainList) {
    for (const v of trainList.map(stripH5)) {
      const own = slicesOf.get(v);
      addVolume(volumes, own ? fromSlices(v, own) : volumeOf(v, "train.list"));
      train.push(v);
    }
  } else {
    const heldOut = new Set([...(valList ?? []), ...(testList ?? [])].map(stripH5));
    for (const [v, names] of slicesOf) {
      if (!heldOut.has(v)) addVolume(volumes, fromSlices(v, names)), train.push(v);
    }
    for (const v of volumeFiles.keys()) {
      if (!heldOut.has(v) && !slicesOf.has(v)) {
        addVolume(volumes, volumeOf(v, "data/")), train.push(v);
      }
    }
  }
  for (const v of (valList ?? []).map(stripH5)) addVolume(volumes, volumeOf(v, "val.list"));
  for (const v of (testList ?? []).map(stripH5)) addVolume(volumes, volumeOf(v, "test.list"));
  return {
    format: "hdf5",
    volumes,
    pool: patientsOf(train),
    validationPool: valList ? patientsOf(valList) : undefined,
    testPool: testList ? patientsOf(testList) : undefined,
  };
}

/** Patient folders (`patientXXX`) up to `depth` levels below `dir`. */
async function findPatientDirs(dir: string, depth: number): Promise<string[]> {
  const out: string[] = [];
  for (const name of await listNames(dir, "dir")) {
    const path = join(dir, name);
    if (/^patient\d+$/i.test(name)) out.push(path);
    else if (depth > 1) out.push(...await findPatientDirs(path, depth - 1));
  }
  return out;
}

async function niftiLayout(root: string): Promise<AcdcLayout> {
  const volumes = new Map<string, AcdcVolume[]>();
  for (const dir of await findPatientDirs(root, 3)) {
    const names = new Set(await listNames(dir, "file"));
    for (const name of names) {
      const m = /^(patient\d+_frame\d+)\.nii(\.gz)?$/i.exec(name);
      if (!m) continue;
      const gt = [`${m[1]}_gt.nii.gz`, `${m[1]}_gt.nii`].find((g) => names.has(g));
      if (!gt) continue; // a frame without ground truth
      addVolume(volumes, {
        name: m[1],
        patient: acdcPatient(m[1]),
        files: [join(dir, name), join(dir, gt)],
        kind: "nifti",
      });
    }
  }
  const all = [...volumes.keys()];
  const lists = await Promise.all(
    ["train.list", "val.list", "test.list"].map((f) => readList(join(root, f))),
  );
  const known = new Set(all);
  const restrict = (list: string[] | null) =>
    list ? patientsOf(list.map(stripH5)).filter((p) => known.has(p)) : undefined;
  const [train, val, test] = lists.map(restrict);
  return {
    format: "nifti",
    volumes,
    pool: train ?? all.filter((p) => !(val ?? []).includes(p) && !(test ?? []).includes(p)),
    validationPool: val,
    testPool: test,
  };
}

async function readAcdcVolume(v: AcdcVolume, needsLabel: boolean) {
  if (v.kind === "nifti") {
    const [image, label] = await Promise.all([readNifti(v.files[0]), readNifti(v.files[1])]);
    return { image, label, imagePath: v.files[0], labelPath: v.files[1] };
  }
  if (v.kind === "h5") {
    const { image, label } = await readSsl4misHdf5(v.files[0], { requireLabel: needsLabel });
    return { image, label, imagePath: v.files[0], labelPath: v.files[0] };
  }
  // SSL4MIS training slices: stack them into one volume.
  const parts: { image: VolumeData; label: VolumeData | null }[] = [];
  for (const f of v.files) parts.push(await readSsl4misHdf5(f, { requireLabel: needsLabel }));
  const [h, w] = parts[0].image.shape.slice(-2);
  const n = h * w;
  const image = new Float32Array(parts.length * n);
  const hasLabels = parts.every((p) => p.label !== null);
  const label = hasLabels ? new Uint8Array(parts.length * n) : null;
  parts.forEach((p, k) => {
    const [ph, pw] = p.image.shape.slice(-2);
    if (p.image.data.length !== n || ph !== h || pw !== w) {
      throw new UserError(
        `Cannot load dataset "acdc": slice "${v.files[k]}" is [${p.image.shape.join(", ")}], ` +
          `but "${v.files[0]}" of the same volume is [${h}, ${w}]`,
      );
    }
    if (p.label && p.label.data.length !== n) {
      throw new UserError(
        `Cannot load dataset "acdc": in "${v.files[k]}" the image is ` +
          `[${p.image.shape.join(", ")}] but the label is [${p.label.shape.join(", ")}]`,
      );
    }
    image.set(p.image.data, k * n);
    if (label) label.set(p.label!.data, k * n);
  });
  const shape = [parts.length, h, w];
  const ones = { spacing: [1, 1, 1], spacingKnown: false };
  return {
    image: { data: image, shape, ...ones },
    label: label ? { data: label, shape, ...ones } : null,
    imagePath: v.files[0],
    labelPath: v.files[0],
  };
}

/**
 * The `acdc` dataset plugin.
 *
 * @example
 * ```ts ignore
 * import { acdcDataset, acdcOptions } from "./acdc.ts";
 * const data = await acdcDataset.load(
 *   acdcOptions.parse({ root: "../shared/data/acdc", size: 64, split: { labeled: 3 } }),
 *   { seed: 1, baseDir: "." },
 * );
 * data.splits.labeled.length; // 3
 * ```
 */
export const acdcDataset: DatasetFactory<AcdcOptions> = {
  id: "acdc",
  description:
    "ACDC cardiac MRI (RV, Myo, LV): SSL4MIS HDF5 or challenge NIfTI layout, split by patient",
  options: acdcOptions,
  access: fileDatasetAccess,
  pathOptions: ["root", "cache"],
  preprocessing: (options) => filePreprocessing(options),
  async load(options: AcdcOptions, context: DatasetContext): Promise<SegmentationDataset> {
    const root = await resolveRoot("acdc", options.root, context.baseDir);
    let format = options.format;
    if (format === "auto") {
      const h5 = (await listNames(join(root, "data"), "file")).some((n) => /\.h5$/i.test(n)) ||
        (await listNames(join(root, "data", "slices"), "file")).some((n) => /\.h5$/i.test(n));
      format = h5 ? "hdf5" : "nifti";
    }
    const layout = format === "hdf5" ? await hdf5Layout(root) : await niftiLayout(root);
    if (layout.pool.length === 0) {
      throw new UserError(
        `Cannot load dataset "acdc": no ACDC ${format === "hdf5" ? "HDF5 " : "NIfTI "}data in ` +
          `"${root}"; expected the SSL4MIS layout (data/patientXXX_frameYY_slice_N.h5, ` +
          `train_slices.list, val.list) or the challenge layout ` +
          `(patientXXX/patientXXX_frameYY.nii.gz with patientXXX_frameYY_gt.nii.gz)`,
      );
    }
    const cases: LayoutCase[] = [...layout.volumes.values()].flat().map((v) => ({
      id: v.name,
      patient: v.patient,
      files: v.files,
      read: (needsLabel: boolean) => readAcdcVolume(v, needsLabel),
    }));
    return await loadSplitDataset(
      {
        datasetId: "acdc",
        classNames: ACDC_CLASSES,
        root,
        cases,
        pool: layout.pool,
        validationPool: layout.validationPool,
        testPool: layout.testPool,
        defaultValidation: 10,
        cacheKey: { format: layout.format },
        layoutName: layout.format,
      },
      options,
      context,
    );
  },
};
