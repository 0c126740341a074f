import assert from "node:assert/strict";
import type { DatasetFactory, SegmentationDataset } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { acdcDataset, acdcOptions } from "../plugins/datasets/acdc.ts";
import { folderDataset, folderOptions } from "../plugins/datasets/folder.ts";
import { promise12Dataset, promise12Options } from "../plugins/datasets/promise12.ts";
import { spleenDataset, spleenOptions } from "../plugins/datasets/spleen.ts";
import {
  prepareCase,
  type PrepareContext,
  sliceGeometry,
} from "../plugins/datasets/file_dataset.ts";
import { splitPatients } from "../plugins/datasets/_split.ts";
import { writeHdf5 } from "../io/hdf5.ts";
import { writeMetaImage } from "../io/metaimage.ts";
import { writeNifti } from "../io/nifti.ts";
import { writePng } from "../io/png_slices.ts";
import { cpuMilliseconds, moduleTempDir } from "./_helpers.ts";

const SHARED = new URL("../../shared/data/", import.meta.url).pathname;
const ACDC = Deno.env.get("ACDC_ROOT") ?? `${SHARED}acdc`;
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ?? `${SHARED}hippocampus`;
const hasAcdc = await Deno.stat(`${ACDC}/data`).then(() => true, () => false);
const hasHippocampus = await Deno.stat(`${HIPPOCAMPUS}/images`).then(() => true, () => false);
if (!hasAcdc) {
  console.log(`datasets_test: skipping the real ACDC tests: no data at ${ACDC} (set ACDC_ROOT)`);
}
if (!hasHippocampus) {
  console.log(`datasets_test: skipping the hippocampus tests: no data at ${HIPPOCAMPUS}`);
}

const tmp = moduleTempDir("missl-datasets-test-");
let dirCount = 0;
async function tmpDir(name: string): Promise<string> {
  const dir = `${tmp}/${++dirCount}-${name}`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

interface Loaded {
  data: SegmentationDataset;
  logs: string[];
  ms: number;
}

async function load<O>(
  factory: DatasetFactory<O>,
  options: Record<string, unknown>,
  seed = 1,
): Promise<Loaded> {
  const logs: string[] = [];
  let data: SegmentationDataset | undefined;
  const ms = await cpuMilliseconds(async () => {
    data = await factory.load(factory.options.parse(options), {
      seed,
      baseDir: ".",
      log: (m) => logs.push(m),
    });
  });
  return { data: data!, logs, ms };
}

async function assertUserError(
  promise: Promise<unknown>,
  ...patterns: (RegExp | string)[]
): Promise<void> {
  await assert.rejects(promise, (error: Error) => {
    assert.ok(
      error instanceof UserError,
      `expected a UserError, got ${error.name}: ${error.message}`,
    );
    for (const p of patterns) {
      if (typeof p === "string") {
        assert.ok(error.message.includes(p), `"${error.message}" lacks "${p}"`);
      } else assert.match(error.message, p);
    }
    return true;
  });
}

/** Split invariants every dataset must meet. */
function checkDataset(d: SegmentationDataset, size: number, numClasses: number): void {
  const { labeled, unlabeled, validation } = d.splits;
  const all = [...labeled, ...unlabeled, ...validation, ...(d.splits.test ?? [])];
  assert.equal(
    new Set(all).size,
    all.length,
    `a patient is in two splits: ${JSON.stringify(d.splits)}`,
  );
  assert.deepEqual([...new Set(d.labeled.patients)].sort(), [...labeled].sort());
  assert.deepEqual([...new Set(d.unlabeled.patients)].sort(), [...unlabeled].sort());
  assert.deepEqual([...new Set(d.validation.map((v) => v.patient))].sort(), [...validation].sort());
  assert.equal(d.labeled.patients.length, d.labeled.count);
  assert.equal(d.labeled.images.length, d.labeled.count * size * size);
  assert.equal(d.labeled.labels?.length, d.labeled.count * size * size);
  assert.equal(d.unlabeled.labels, null);
  assert.equal(d.unlabeled.images.length, d.unlabeled.count * size * size);
  assert.equal(d.classNames.length, numClasses);
  for (const l of d.labeled.labels!) assert.ok(l < numClasses, `label ${l}`);
  for (const x of d.labeled.images) assert.ok(x >= 0 && x <= 1, `intensity ${x}`);
  for (const v of [...d.validation, ...(d.test ?? [])]) {
    assert.equal(v.shape[1], size);
    assert.equal(v.shape[2], size);
    assert.equal(v.image.length, v.shape[0] * size * size);
    assert.equal(v.label.length, v.image.length);
    for (const l of v.label) assert.ok(l < numClasses);
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic layouts, written with our own writers.

/** A tiny heart-like label volume `[z, y, x]`: rings of classes 1..(classes - 1). */
function ringLabels(z: number, y: number, x: number, classes: number, seed: number): Uint8Array {
  const out = new Uint8Array(z * y * x);
  for (let k = 0; k < z; k++) {
    for (let j = 0; j < y; j++) {
      for (let i = 0; i < x; i++) {
        const r = Math.hypot(j - y / 2 - (seed % 3), i - x / 2) / (Math.min(x, y) / 2);
        out[(k * y + j) * x + i] = r < 0.9
          ? Math.min(classes - 1, 1 + Math.floor(r * (classes - 1)))
          : 0;
      }
    }
  }
  return out;
}

function intensities(labels: Uint8Array, offset: number, scale: number): Int16Array {
  return Int16Array.from(labels, (l, i) => offset + scale * l + (i % 5));
}

async function makeAcdcNifti(root: string, patients: number): Promise<void> {
  for (let p = 1; p <= patients; p++) {
    const id = `patient${String(p).padStart(3, "0")}`;
    const dir = `${root}/database/training/${id}`;
    await Deno.mkdir(dir, { recursive: true });
    for (const frame of ["frame01", "frame12"]) {
      const label = ringLabels(4, 24, 20, 4, p);
      const volume = { shape: [4, 24, 20], spacing: [10, 1.5, 1.4] };
      await writeNifti(`${dir}/${id}_${frame}.nii.gz`, {
        data: intensities(label, 40, 200),
        ...volume,
      });
      await writeNifti(`${dir}/${id}_${frame}_gt.nii.gz`, { data: label, ...volume });
    }
    await Deno.writeTextFile(`${dir}/Info.cfg`, "ED: 1\nES: 12\n");
  }
}

async function makeAcdcHdf5(root: string, train: number[], val: number[]): Promise<void> {
  await Deno.mkdir(`${root}/data`, { recursive: true });
  const sliceNames: string[] = [];
  for (const p of train) {
    for (const frame of ["frame01", "frame02"]) {
      const label = ringLabels(3, 20, 16, 4, p);
      for (let k = 0; k < 3; k++) {
        const name = `patient${String(p).padStart(3, "0")}_${frame}_slice_${k + 1}`;
        sliceNames.push(name);
        const part = label.subarray(k * 320, (k + 1) * 320);
        await writeHdf5(`${root}/data/${name}.h5`, {
          image: { data: Float32Array.from(part, (l) => l / 3), shape: [20, 16] },
          label: { data: part.slice(), shape: [20, 16] },
        });
      }
    }
  }
  const volumes: string[] = [];
  for (const p of val) {
    for (const frame of ["frame01", "frame02"]) {
      const name = `patient${String(p).padStart(3, "0")}_${frame}`;
      volumes.push(name);
      const label = ringLabels(3, 20, 16, 4, p);
      await writeHdf5(`${root}/data/${name}.h5`, {
        image: { data: Float32Array.from(label, (l) => l / 3), shape: [3, 20, 16] },
        label: { data: label, shape: [3, 20, 16] },
      });
    }
  }
  await Deno.writeTextFile(`${root}/train_slices.list`, sliceNames.join("\n") + "\n");
  await Deno.writeTextFile(`${root}/val.list`, volumes.join("\n") + "\n");
}

// ---------------------------------------------------------------------------------------------
// Options.

Deno.test("acdc options have the documented defaults and reject unknown keys", () => {
  assert.deepEqual(acdcOptions.parse({ root: "data/acdc" }), {
    root: "data/acdc",
    format: "auto",
    size: 256,
    fit: "stretch",
    normalize: "minmax",
    sliceAxis: "auto",
    split: { labeled: 7 },
  });
  const bad = acdcOptions.safeParse({ root: "x", sise: 64 });
  assert.equal(bad.success, false);
  assert.match(bad.error!.issues[0].message, /Unrecognized key.*'sise'/);
  assert.equal(acdcOptions.safeParse({}).success, false, "root is required");
  assert.equal(acdcOptions.safeParse({ root: "x", split: { labeled: 0 } }).success, false);
  assert.equal(acdcOptions.safeParse({ root: "x", format: "dicom" }).success, false);
  assert.equal(acdcOptions.safeParse({ root: "x", size: 8 }).success, false);
  assert.deepEqual(spleenOptions.parse({ root: "s" }).window, [-160, 240]);
  assert.equal(spleenOptions.parse({ root: "s" }).size, 512);
  assert.equal(spleenOptions.safeParse({ root: "s", window: [240, -160] }).success, false);
  assert.deepEqual(promise12Options.parse({ root: "p" }).split, { labeled: 7 });
  assert.equal(folderOptions.safeParse({ root: "f" }).success, false, "folder needs a split");
  assert.equal(
    folderOptions.safeParse({ root: "f", split: { labeled: 1 }, patientPattern: "(" }).success,
    false,
  );
});

// ---------------------------------------------------------------------------------------------
// Splits and preprocessing.

Deno.test("splitPatients is seeded, keeps splits disjoint and draws labeled before unlabeled", () => {
  const pool = Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, "0")}`);
  const a = splitPatients({
    datasetId: "t",
    pool,
    split: { labeled: 3, unlabeled: 5, validation: 4 },
    seed: 7,
  });
  const b = splitPatients({
    datasetId: "t",
    pool,
    split: { labeled: 3, unlabeled: 5, validation: 4 },
    seed: 7,
  });
  const c = splitPatients({
    datasetId: "t",
    pool,
    split: { labeled: 3, unlabeled: 5, validation: 4 },
    seed: 8,
  });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.equal(a.labeled.length, 3);
  assert.equal(a.unlabeled.length, 5);
  assert.equal(a.validation.length, 4);
  const all = [...a.labeled, ...a.unlabeled, ...a.validation];
  assert.equal(new Set(all).size, all.length);
  const more = splitPatients({
    datasetId: "t",
    pool,
    split: { labeled: 3, validation: 4 },
    seed: 7,
  });
  assert.deepEqual(
    more.labeled,
    a.labeled,
    "the labeled set does not depend on the unlabeled count",
  );
  assert.equal(more.unlabeled.length, 13, "unlabeled defaults to every other training patient");
  const own = splitPatients({
    datasetId: "t",
    pool,
    validationPool: ["v1", "v2"],
    split: { labeled: 2 },
    labeledPatients: ["p04", "p09"],
    seed: 1,
  });
  assert.deepEqual(own.validation, ["v1", "v2"]);
  assert.deepEqual(own.labeled, ["p04", "p09"]);
  assert.equal(own.unlabeled.length, 18);
  assert.throws(
    () => splitPatients({ datasetId: "t", pool, split: { labeled: 30 }, seed: 1 }),
    /Cannot split dataset "t": split.labeled is 30, but the training pool has 20 patients/,
  );
  assert.throws(
    () =>
      splitPatients({
        datasetId: "t",
        pool,
        split: { labeled: 1 },
        labeledPatients: ["nobody"],
        seed: 1,
      }),
    /labeledPatients "nobody" not in the training pool/,
  );
});

Deno.test("slices are resized bilinearly (images) and by nearest neighbour (labels) on a corner-aligned grid", () => {
  const context: PrepareContext = {
    datasetId: "t",
    prep: { size: 3, fit: "stretch", normalize: "none", sliceAxis: "auto" },
    numClasses: 4,
  };
  const raw = {
    image: { data: new Float32Array([0, 1, 2, 3]), shape: [1, 2, 2], spacing: [5, 2, 2] },
    label: { data: new Uint8Array([0, 1, 2, 3]), shape: [1, 2, 2], spacing: [5, 2, 2] },
    imagePath: "i",
    labelPath: "l",
  };
  const out = prepareCase(raw, context, { id: "a", patient: "a" });
  assert.deepEqual(out.shape, [1, 3, 3]);
  assert.deepEqual([...out.image], [0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]);
  assert.deepEqual([...out.label!], [0, 1, 1, 2, 3, 3, 2, 3, 3]);
  assert.deepEqual(out.spacing, [5, 1, 1], "corners stay put: 2 mm x (2 - 1) / (3 - 1)");
  const norm = prepareCase(raw, {
    ...context,
    prep: { ...context.prep, normalize: "minmax", size: 2 },
  }, {
    id: "a",
    patient: "a",
  });
  assert.deepEqual(norm.image, Float32Array.from([0, 1 / 3, 2 / 3, 1]));
});

Deno.test("the slice axis is the axis of largest spacing, and fit pads or crops around the centre", () => {
  const context: PrepareContext = {
    datasetId: "t",
    prep: { size: 4, fit: "center", normalize: "none", sliceAxis: "auto" },
    numClasses: 2,
  };
  // [2, 3, 5] with the largest spacing on the last axis: 5 slices of 2 x 3.
  const data = Float32Array.from({ length: 30 }, (_, i) => i);
  const out = prepareCase(
    { image: { data, shape: [2, 3, 5], spacing: [1, 1, 4] }, label: null, imagePath: "i" },
    context,
    { id: "a", patient: "a" },
  );
  assert.deepEqual(out.shape, [5, 4, 4]);
  // Slice l = 1 holds data[(i * 3 + j) * 5 + 1], padded from 2 x 3 into 4 x 4 at (1, 0).
  const slice = [...out.image.subarray(16, 32)];
  assert.deepEqual(slice, [0, 0, 0, 0, 1, 6, 11, 0, 16, 21, 26, 0, 0, 0, 0, 0]);
  assert.deepEqual(sliceGeometry(100, 50, 64, "pad"), { rh: 64, rw: 32, top: 0, left: 16 });
  assert.deepEqual(sliceGeometry(100, 50, 64, "crop"), { rh: 128, rw: 64, top: -32, left: 0 });
  assert.deepEqual(sliceGeometry(100, 50, 64, "stretch"), { rh: 64, rw: 64, top: 0, left: 0 });
});

// ---------------------------------------------------------------------------------------------
// ACDC, real data.

Deno.test({
  name:
    "acdc loads the shared SSL4MIS HDF5 data split by patient, labels 0..3, volumes [D, 64, 64]",
  ignore: !hasAcdc,
  fn: async () => {
    const cache = await tmpDir("acdc-cache");
    const { data, logs } = await load(acdcDataset, {
      root: ACDC,
      size: 64,
      split: { labeled: 3, unlabeled: 2, validation: 2 },
      cache,
    });
    checkDataset(data, 64, 4);
    assert.equal(data.splits.labeled.length, 3);
    assert.equal(data.splits.unlabeled.length, 2);
    assert.equal(data.splits.validation.length, 2);
    assert.equal(data.validation.length, 4, "two frames per validation patient");
    const trainPatients = new Set(
      (await Deno.readTextFile(`${ACDC}/train.list`)).split("\n").filter(Boolean).map((l) =>
        l.slice(0, 10)
      ),
    );
    const valPatients = new Set(
      (await Deno.readTextFile(`${ACDC}/val.list`)).split("\n").filter(Boolean).map((l) =>
        l.slice(0, 10)
      ),
    );
    for (const p of [...data.splits.labeled, ...data.splits.unlabeled]) {
      assert.ok(trainPatients.has(p), p);
    }
    for (const p of data.splits.validation) assert.ok(valPatients.has(p), p);
    const seen = new Set(data.labeled.labels);
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
    for (const v of data.validation) {
      assert.match(v.id, /^patient\d{3}_frame0[12]$/);
      assert.ok(v.shape[0] >= 5 && v.shape[0] <= 25, `${v.id} has ${v.shape[0]} slices`);
    }
    assert.ok(logs.some((l) => /3 labeled patients \/ \d+ slices/.test(l)), logs.join("\n"));
    const again = await load(acdcDataset, {
      root: ACDC,
      size: 64,
      split: { labeled: 3, unlabeled: 2, validation: 2 },
      cache,
    });
    assert.deepEqual(again.data.splits, data.splits, "same seed, same split");
    const other = await load(acdcDataset, {
      root: ACDC,
      size: 64,
      split: { labeled: 3, unlabeled: 2, validation: 2 },
      cache,
    }, 2);
    assert.notDeepEqual(other.data.splits, data.splits, "another seed, another split");
  },
});

Deno.test({
  name: "acdc takes val.list as the validation set and train.list as the training pool by default",
  ignore: !hasAcdc,
  fn: async () => {
    const { data } = await load(acdcDataset, {
      root: ACDC,
      size: 16,
      split: { labeled: 1, unlabeled: 1 },
      cache: false,
    });
    const val = (await Deno.readTextFile(`${ACDC}/val.list`)).split("\n").filter(Boolean);
    assert.deepEqual(data.validation.map((v) => v.id).sort(), [...val].sort());
    assert.equal(data.splits.validation.length, new Set(val.map((l) => l.slice(0, 10))).size);
    checkDataset(data, 16, 4);
  },
});

Deno.test({
  name: "the acdc cache makes a second load faster and a corrupted cache entry is not reused",
  ignore: !hasAcdc,
  fn: async () => {
    const cache = await tmpDir("acdc-cache-2");
    const options = {
      root: ACDC,
      size: 48,
      split: { labeled: 2, unlabeled: 2, validation: 1 },
      cache,
    };
    const first = await load(acdcDataset, options, 3);
    assert.ok(first.logs.some((l) => /\(0 from the cache\)/.test(l)), first.logs.join("\n"));
    const second = await load(acdcDataset, options, 3);
    const volumes = second.data.validation.length + new Set(
          [...second.data.labeled.patients, ...second.data.unlabeled.patients],
        ).size * 2;
    assert.ok(
      second.logs.some((l) => l.includes(`(${volumes} from the cache)`)),
      second.logs.join("\n"),
    );
    assert.ok(
      second.ms < first.ms,
      `cached ${second.ms.toFixed(0)} ms vs ${first.ms.toFixed(0)} ms`,
    );
    assert.deepEqual(second.data.labeled.images, first.data.labeled.images);
    assert.deepEqual(second.data.validation[0].label, first.data.validation[0].label);

    const dir = (await Array.fromAsync(Deno.readDir(cache)))[0].name;
    const entries = (await Array.fromAsync(Deno.readDir(`${cache}/${dir}`))).map((e) => e.name)
      .sort();
    const flip = `${cache}/${dir}/${entries[0]}`;
    const bytes = await Deno.readFile(flip);
    bytes[bytes.length - 100] ^= 0xff;
    await Deno.writeFile(flip, bytes);
    const cut = `${cache}/${dir}/${entries[1]}`;
    const cutBytes = await Deno.readFile(cut);
    await Deno.writeFile(cut, cutBytes.subarray(0, cutBytes.length - 1000));
    const third = await load(acdcDataset, options, 3);
    assert.ok(
      third.logs.some((l) => /corrupt \(checksum mismatch\)/.test(l)),
      third.logs.join("\n"),
    );
    assert.ok(
      third.logs.some((l) => /corrupt \(\d+ bytes, expected \d+\)/.test(l)),
      third.logs.join("\n"),
    );
    assert.ok(
      third.logs.some((l) => l.includes(`(${volumes - 2} from the cache, 2 rebuilt)`)),
      third.logs.join("\n"),
    );
    assert.deepEqual(third.data.labeled.images, first.data.labeled.images);
    assert.deepEqual(third.data.unlabeled.images, first.data.unlabeled.images);
    const fourth = await load(acdcDataset, options, 3);
    assert.ok(
      fourth.logs.some((l) => l.includes(`(${volumes} from the cache)`)),
      "the rebuilt entries are reused",
    );
  },
});

// ---------------------------------------------------------------------------------------------
// Hippocampus (NIfTI) through the folder plugin.

Deno.test({
  name: "folder loads the shared hippocampus NIfTI pairs with 3 classes",
  ignore: !hasHippocampus,
  fn: async () => {
    const { data } = await load(folderDataset, {
      root: HIPPOCAMPUS,
      size: 32,
      split: { labeled: 2, unlabeled: 6, validation: 4 },
      cache: false,
    });
    checkDataset(data, 32, 3);
    assert.deepEqual(data.classNames, ["background", "class1", "class2"]);
    assert.equal(data.splits.labeled.length, 2);
    assert.equal(data.splits.unlabeled.length, 6);
    assert.equal(data.validation.length, 4);
    for (const v of data.validation) {
      assert.match(v.id, /^hippocampus_\d{3}$/);
      assert.equal(v.spacing?.[0], 1);
    }
    const named = await load(folderDataset, {
      root: HIPPOCAMPUS,
      size: 16,
      classes: ["background", "anterior", "posterior"],
      split: { labeled: 1, unlabeled: 0, validation: 1 },
      cache: false,
    });
    assert.deepEqual(named.data.classNames, ["background", "anterior", "posterior"]);
  },
});

// ---------------------------------------------------------------------------------------------
// Synthetic layouts.

Deno.test("acdc loads the challenge NIfTI layout, both frames of a patient in one split", async () => {
  const root = await tmpDir("acdc-nifti");
  await makeAcdcNifti(root, 6);
  const { data } = await load(acdcDataset, {
    root,
    size: 32,
    split: { labeled: 2, unlabeled: 2, validation: 2 },
    cache: `${root}/cache`,
  });
  checkDataset(data, 32, 4);
  assert.equal(data.validation.length, 4);
  assert.deepEqual(data.validation.map((v) => v.shape), [[4, 32, 32], [4, 32, 32], [4, 32, 32], [
    4,
    32,
    32,
  ]]);
  // In-plane spacing of the resized grid: corners stay put, (n - 1) gaps become 31 (float32 header).
  const expected = [10, 1.5 * 23 / 31, 1.4 * 19 / 31];
  data.validation[0].spacing!.forEach((s, i) =>
    assert.ok(Math.abs(s - expected[i]) < 1e-6, `${s}`)
  );
  assert.equal(data.labeled.count, 2 * 2 * 4);
  assert.equal(data.unlabeled.count, 2 * 2 * 4);
  await Deno.remove(`${root}/database/training/patient003/patient003_frame12_gt.nii.gz`);
  const partial = await load(acdcDataset, {
    root,
    size: 16,
    split: { labeled: 4, unlabeled: 1, validation: 1 },
    cache: false,
  });
  const slices = partial.data.labeled.count + partial.data.unlabeled.count +
    partial.data.validation.reduce((n, v) => n + v.shape[0], 0);
  assert.equal(slices, 11 * 4, "a frame without ground truth is left out");
});

Deno.test("acdc loads a synthetic SSL4MIS layout, and a labeled slice without label is a UserError", async () => {
  const root = await tmpDir("acdc-h5");
  await makeAcdcHdf5(root, [1, 2, 3, 4], [5, 6]);
  const { data } = await load(acdcDataset, { root, size: 16, split: { labeled: 2 }, cache: false });
  checkDataset(data, 16, 4);
  assert.deepEqual(data.splits.validation, ["patient005", "patient006"]);
  assert.equal(data.labeled.count, 2 * 2 * 3);
  assert.equal(data.unlabeled.count, 2 * 2 * 3);
  const bad = `${root}/data/patient001_frame02_slice_2.h5`;
  await writeHdf5(bad, { image: { data: new Float32Array(320), shape: [20, 16] } });
  await assertUserError(
    load(acdcDataset, {
      root,
      size: 16,
      split: { labeled: 1 },
      labeledPatients: ["patient001"],
      cache: false,
    }),
    `Cannot read "${bad}": it has no "label" dataset (it has: image)`,
  );
  // As an unlabeled patient, the same slice is fine.
  const ok = await load(acdcDataset, {
    root,
    size: 16,
    split: { labeled: 1 },
    labeledPatients: ["patient002"],
    cache: false,
  });
  assert.ok(ok.data.splits.unlabeled.includes("patient001"));
});

Deno.test("promise12 loads CaseNN.mhd with CaseNN_segmentation.mhd, raw and zraw", async () => {
  const root = await tmpDir("promise12");
  await Deno.mkdir(`${root}/TrainingData_Part1`);
  for (let c = 0; c < 6; c++) {
    const id = `Case${String(c).padStart(2, "0")}`;
    const label = ringLabels(5, 24, 24, 2, c);
    const volume = { shape: [5, 24, 24], spacing: [3.6, 0.625, 0.625] };
    await writeMetaImage(`${root}/TrainingData_Part1/${id}.mhd`, {
      data: intensities(label, 100, 300),
      ...volume,
    }, {
      compress: c % 2 === 0,
    });
    await writeMetaImage(`${root}/TrainingData_Part1/${id}_segmentation.mhd`, {
      data: label,
      ...volume,
    });
  }
  await writeMetaImage(`${root}/TrainingData_Part1/Case50.mhd`, {
    data: new Int16Array(8),
    shape: [2, 2, 2],
    spacing: [1, 1, 1],
  });
  const { data, logs } = await load(promise12Dataset, {
    root,
    size: 32,
    split: { labeled: 1, unlabeled: 3, validation: 2 },
    cache: `${root}/.cache`,
  });
  checkDataset(data, 32, 2);
  assert.deepEqual(data.classNames, ["background", "prostate"]);
  assert.equal(data.labeled.count, 5);
  assert.equal(data.unlabeled.count, 15);
  assert.ok(
    !JSON.stringify(data.splits).includes("Case50"),
    "a case without segmentation is left out",
  );
  assert.ok(logs.some((l) => l.includes("promise12 (mhd)")), logs.join("\n"));
  assert.deepEqual([...new Set(data.labeled.labels)].sort(), [0, 1]);
});

Deno.test("promise12 loads PNG slice folders, with train / val folders and 0/255 labels", async () => {
  const root = await tmpDir("promise12-png");
  for (const [part, cases] of [["train", [0, 1, 2, 3]], ["val", [4, 5]]] as const) {
    await Deno.mkdir(`${root}/${part}/img`, { recursive: true });
    await Deno.mkdir(`${root}/${part}/gt`, { recursive: true });
    for (const c of cases) {
      for (let s = 0; s < 3; s++) {
        const name = `Case${String(c).padStart(2, "0")}_0_${String(s).padStart(2, "0")}.png`;
        const label = ringLabels(1, 20, 20, 2, c + s);
        await writePng(`${root}/${part}/img/${name}`, {
          data: Uint8Array.from(label, (l, i) => 40 + 150 * l + (i % 9)),
          shape: [20, 20],
          spacing: [1, 1],
        });
        await writePng(`${root}/${part}/gt/${name}`, {
          data: Uint8Array.from(label, (l) => 255 * l),
          shape: [20, 20],
          spacing: [1, 1],
        });
      }
    }
  }
  const { data } = await load(promise12Dataset, {
    root,
    size: 16,
    split: { labeled: 2 },
    cache: false,
  });
  checkDataset(data, 16, 2);
  assert.deepEqual(data.splits.validation, ["Case04", "Case05"]);
  assert.equal(data.labeled.count, 6);
  assert.equal(data.unlabeled.count, 6);
  assert.deepEqual([...new Set(data.validation[0].label)].sort(), [0, 1]);
  assert.equal(data.validation[0].spacing, undefined, "PNG slices have no spacing");
});

Deno.test("spleen loads the MSD layout, windows CT to [-160, 240] and ignores ._ files", async () => {
  const root = await tmpDir("spleen");
  await Deno.mkdir(`${root}/imagesTr`);
  await Deno.mkdir(`${root}/labelsTr`);
  const training = [];
  for (let c = 1; c <= 6; c++) {
    const label = ringLabels(3, 16, 16, 2, c);
    // Spleen at 100 HU, background from -1000 (air) to 1000 (bone).
    const ct = Int16Array.from(label, (l, i) => (l ? 100 : i % 2 ? -1000 : 1000));
    const volume = { shape: [3, 16, 16], spacing: [5, 0.8, 0.8] };
    await writeNifti(`${root}/imagesTr/spleen_${c}.nii.gz`, { data: ct, ...volume });
    await writeNifti(`${root}/labelsTr/spleen_${c}.nii.gz`, { data: label, ...volume });
    training.push({
      image: `./imagesTr/spleen_${c}.nii.gz`,
      label: `./labelsTr/spleen_${c}.nii.gz`,
    });
  }
  await Deno.writeFile(`${root}/imagesTr/._spleen_1.nii.gz`, new Uint8Array(10));
  await Deno.writeTextFile(
    `${root}/dataset.json`,
    JSON.stringify({ name: "Spleen", labels: { 0: "background", 1: "spleen" }, training }),
  );
  const { data } = await load(spleenDataset, {
    root,
    size: 16,
    split: { labeled: 2, validation: 2 },
    cache: false,
  });
  checkDataset(data, 16, 2);
  assert.equal(data.splits.unlabeled.length, 2);
  const v = data.validation[0];
  for (let i = 0; i < v.image.length; i++) {
    if (v.label[i]) {
      assert.ok(Math.abs(v.image[i] - 260 / 400) < 1e-6, `spleen voxel ${v.image[i]}`);
    }
  }
  assert.ok(v.image.includes(0) && v.image.includes(1), "air clips to 0, bone to 1");
  await Deno.remove(`${root}/dataset.json`);
  const byName = await load(spleenDataset, {
    root,
    size: 16,
    split: { labeled: 1, validation: 1 },
    cache: false,
  });
  assert.equal(byName.data.splits.unlabeled.length, 4, "pairs found by name without dataset.json");
});

Deno.test("the default cache is the per-user folder, keyed by content: one data folder reached by two paths hits the same entries, and the data folder is never written", async () => {
  const root = await tmpDir("default-cache");
  await makeAcdcNifti(root, 3);
  const cache = await tmpDir("user-cache");
  const before = Deno.env.get("MISSL_CACHE_DIR");
  Deno.env.set("MISSL_CACHE_DIR", cache);
  try {
    const options = { root, size: 16, split: { labeled: 1, unlabeled: 1, validation: 1 } };
    const first = await load(acdcDataset, options);
    // where the cache is, said when it is built
    assert.ok(
      first.logs.some((l) => l.includes(`caching the preprocessed volumes in ${cache}/acdc-`)),
      first.logs.join("\n"),
    );
    assert.ok(first.logs.some((l) => /\(0 from the cache\)/.test(l)), first.logs.join("\n"));
    for await (const e of Deno.readDir(root)) {
      assert.ok(!e.name.includes("cache"), `wrote ${e.name} into the data folder`);
    }
    // the same folder through a symbolic link: every volume from the cache
    const link = `${await tmpDir("link")}/acdc`;
    await Deno.symlink(root, link);
    const second = await load(acdcDataset, { ...options, root: link });
    const n = second.data.validation.length + second.data.splits.labeled.length * 2 +
      second.data.splits.unlabeled.length * 2;
    assert.ok(
      second.logs.some((l) => new RegExp(`: ${n} volumes \\(${n} from the cache\\)`).test(l)),
      second.logs.join("\n"),
    );
    assert.ok(!second.logs.some((l) => l.includes("caching the preprocessed")), "nothing rebuilt");
  } finally {
    if (before === undefined) Deno.env.delete("MISSL_CACHE_DIR");
    else Deno.env.set("MISSL_CACHE_DIR", before);
  }
});

Deno.test("folder pairs volumes of any format by name, and groups cases by patientPattern", async () => {
  const root = await tmpDir("mixed");
  await Deno.mkdir(`${root}/images`);
  await Deno.mkdir(`${root}/labels`);
  const shape = [2, 6, 5];
  const spacing = [4, 1, 1];
  const label = ringLabels(2, 6, 5, 3, 0);
  const image = Float32Array.from(label, (l) => l * 10);
  await writeNifti(`${root}/images/p1_a.nii.gz`, { data: image, shape, spacing });
  await writeMetaImage(`${root}/labels/p1_a.mhd`, { data: label, shape, spacing }, {
    compress: true,
  });
  await writeMetaImage(`${root}/images/p1_b.mha`, { data: image, shape, spacing });
  await writeHdf5(`${root}/labels/p1_b.h5`, { label: { data: label, shape } });
  await writeHdf5(`${root}/images/p2_a.h5`, { image: { data: image, shape } });
  await writeNifti(`${root}/labels/p2_a.nii`, { data: label, shape, spacing });
  await Deno.writeFile(`${root}/labels/p1_a.zraw.bak`, new Uint8Array(3));
  const { data } = await load(folderDataset, {
    root,
    size: 16,
    classes: 3,
    patientPattern: "^(p\\d+)_",
    split: { labeled: 1, validation: 1 },
    labeledPatients: ["p1"],
    cache: false,
  });
  checkDataset(data, 16, 3);
  assert.deepEqual(data.splits, { labeled: ["p1"], unlabeled: [], validation: ["p2"] });
  assert.equal(data.labeled.count, 4, "both cases of p1, 2 slices each");
  assert.deepEqual([...new Set(data.labeled.labels)].sort(), [0, 1, 2]);
});

// ---------------------------------------------------------------------------------------------
// Bad input.

Deno.test("an empty or missing data folder is one clear UserError for every plugin", async () => {
  const empty = await tmpDir("empty");
  await assertUserError(
    load(acdcDataset, { root: empty }),
    'Cannot load dataset "acdc": no ACDC',
    empty,
  );
  await assertUserError(
    load(promise12Dataset, { root: empty }),
    'Cannot load dataset "promise12": no PROMISE12 cases',
  );
  await assertUserError(
    load(spleenDataset, { root: empty }),
    'Cannot load dataset "spleen": no volumes in',
    "imagesTr",
  );
  await assertUserError(
    load(folderDataset, { root: empty, split: { labeled: 1 } }),
    'Cannot load dataset "folder": no image volumes',
  );
  const missing = `${empty}/nowhere`;
  const loaders: [string, () => Promise<Loaded>][] = [
    ["acdc", () => load(acdcDataset, { root: missing })],
    ["promise12", () => load(promise12Dataset, { root: missing })],
    ["spleen", () => load(spleenDataset, { root: missing })],
    ["folder", () => load(folderDataset, { root: missing, split: { labeled: 1 } })],
  ];
  for (const [id, loader] of loaders) {
    await assertUserError(
      loader(),
      `Cannot load dataset "${id}": the data folder "${missing}" does not exist`,
    );
  }
});

Deno.test("an image / label shape mismatch is a UserError naming both files", async () => {
  const root = await tmpDir("mismatch");
  await Deno.mkdir(`${root}/images`);
  await Deno.mkdir(`${root}/labels`);
  for (const id of ["a", "b"]) {
    await writeNifti(`${root}/images/${id}.nii.gz`, {
      data: new Float32Array(60),
      shape: [3, 4, 5],
      spacing: [1, 1, 1],
    });
    const shape = id === "b" ? [3, 5, 4] : [3, 4, 5];
    await writeMetaImage(`${root}/labels/${id}.mha`, {
      data: new Uint8Array(60),
      shape,
      spacing: [1, 1, 1],
    });
  }
  await assertUserError(
    load(folderDataset, { root, size: 16, split: { labeled: 1, validation: 1 }, cache: false }),
    `image "${root}/images/b.nii.gz" is [3, 4, 5] but label "${root}/labels/b.mha" is [3, 5, 4]`,
  );
});

Deno.test("labels outside the class range are a UserError naming the file and the classes", async () => {
  const root = await tmpDir("range");
  await Deno.mkdir(`${root}/images`);
  await Deno.mkdir(`${root}/labels`);
  for (const id of ["a", "b"]) {
    await writeNifti(`${root}/images/${id}.nii`, {
      data: new Float32Array(8),
      shape: [2, 2, 2],
      spacing: [1, 1, 1],
    });
    const label = new Uint8Array(8);
    if (id === "b") label[5] = 3;
    await writeNifti(`${root}/labels/${id}.nii`, {
      data: label,
      shape: [2, 2, 2],
      spacing: [1, 1, 1],
    });
  }
  await assertUserError(
    load(folderDataset, {
      root,
      size: 16,
      classes: 2,
      split: { labeled: 1, validation: 1 },
      cache: false,
    }),
    `label "${root}/labels/b.nii" has value 3 at voxel 5, outside the classes 0..1 (background, class1)`,
  );
  await writeNifti(`${root}/labels/b.nii`, {
    data: new Float32Array([0, 0.5, 0, 0, 0, 0, 0, 0]),
    shape: [2, 2, 2],
    spacing: [1, 1, 1],
  });
  await assertUserError(
    load(folderDataset, {
      root,
      size: 16,
      classes: 2,
      split: { labeled: 1, validation: 1 },
      cache: false,
    }),
    "non-integer value 0.5",
  );
  await Deno.remove(`${root}/labels/b.nii`);
  await assertUserError(
    load(folderDataset, { root, size: 16, split: { labeled: 1 }, cache: false }),
    `image "${root}/images/b.nii" has no label`,
  );
});

Deno.test("splitPatients with labeled: all labels the whole training pool", () => {
  const s = splitPatients({
    datasetId: "x",
    pool: ["a", "b", "c", "d", "e"],
    validationPool: ["v1", "v2"],
    split: { labeled: "all", unlabeled: 0 },
    seed: 3,
  });
  assert.deepEqual(s.labeled, ["a", "b", "c", "d", "e"]);
  assert.deepEqual(s.unlabeled, []);
  assert.deepEqual(s.validation, ["v1", "v2"]);
});
