/**
 * `VolumeSource.readLabel()`: a validation volume's label read again as stored (the truth that
 * `eval --grid source` scores against), for NIfTI pairs (`folder`), SSL4MIS HDF5 volumes
 * (`acdc`) and PNG slice groups (`promise12`): the file's own shape, voxel order and class
 * values. Synthetic files always; the shared data sets when present (each skip says so).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { DatasetFactory, Volume } from "../core/dataset.ts";
import { readHdf5, writeHdf5 } from "../io/hdf5.ts";
import { readPng, writePng } from "../io/png_slices.ts";
import { readVolume, writeVolume } from "../io/volume.ts";
import { acdcDataset } from "../plugins/datasets/acdc.ts";
import { folderDataset } from "../plugins/datasets/folder.ts";
import { promise12Dataset } from "../plugins/datasets/promise12.ts";

const SHARED = fileURLToPath(new URL("../../shared/data/", import.meta.url));
const ACDC = Deno.env.get("ACDC_ROOT") ?? `${SHARED}acdc`;
const PROMISE12 = Deno.env.get("PROMISE12_ROOT") ?? `${SHARED}promise12`;
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ?? `${SHARED}hippocampus`;
const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
const hasAcdc = await exists(`${ACDC}/data`);
const hasPromise12 = await exists(`${PROMISE12}/train/gt`);
const hasHippocampus = await exists(`${HIPPOCAMPUS}/labels`);
for (
  const [has, name, root] of [
    [hasAcdc, "ACDC", ACDC],
    [hasPromise12, "PROMISE12", PROMISE12],
    [hasHippocampus, "hippocampus", HIPPOCAMPUS],
  ] as const
) {
  if (!has) console.log(`read_label_test: skipping the real ${name} test: no data at ${root}`);
}

async function validation<O>(
  factory: DatasetFactory<O>,
  options: Record<string, unknown>,
): Promise<Volume[]> {
  const data = await factory.load(factory.options.parse(options), { seed: 1, baseDir: "." });
  return data.validation;
}

/** `readLabel()` of `v`: its shape and its values, checked against `expected` voxel by voxel. */
async function assertStoredLabel(v: Volume, shape: number[], expected: ArrayLike<number>) {
  assert.ok(v.source?.readLabel, `${v.id} has a source that reads its label`);
  const label = await v.source.readLabel();
  assert.ok(label, `${v.id} has a label`);
  assert.deepEqual(label.shape, shape, v.id);
  assert.ok(label.data instanceof Uint8Array, v.id);
  assert.equal(label.data.length, expected.length, v.id);
  let wrong = 0;
  for (let i = 0; i < expected.length; i++) if (label.data[i] !== expected[i]) wrong++;
  assert.equal(wrong, 0, `${v.id}: ${wrong} voxels differ from the stored label`);
}

Deno.test("readLabel(): a NIfTI pair's label in the file's shape and voxel order, not the network grid's slice axis", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/images`);
    await Deno.mkdir(`${root}/labels`);
    // 3 mm along the last axis: it becomes the slice axis (moved first on the network's grid)
    const shape = [6, 10, 4], spacing = [1, 0.8, 3];
    for (const id of ["a", "b", "c"]) {
      const label = Uint8Array.from({ length: 240 }, (_, i) => (i * 7 + id.charCodeAt(0)) % 3);
      await writeVolume(`${root}/labels/${id}.nii.gz`, { data: label, shape, spacing });
      const image = Float32Array.from(label, (l, i) => l + i / 240);
      await writeVolume(`${root}/images/${id}.nii.gz`, { data: image, shape, spacing });
    }
    const volumes = await validation(folderDataset, {
      root,
      size: 16,
      classes: 3,
      cache: false,
      split: { labeled: 1, unlabeled: 1, validation: 1 },
    });
    assert.equal(volumes.length, 1);
    const v = volumes[0];
    assert.deepEqual(v.shape, [4, 16, 16], "slice axis first on the network's grid");
    const stored = await readVolume(`${root}/labels/${v.id}.nii.gz`);
    await assertStoredLabel(v, shape, stored.data);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("readLabel(): an SSL4MIS HDF5 volume's label dataset (acdc)", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/data`);
    const slices: string[] = [];
    for (const p of [1, 2]) {
      for (let k = 1; k <= 2; k++) {
        const name = `patient00${p}_frame01_slice_${k}`;
        slices.push(name);
        const label = Uint8Array.from({ length: 80 }, (_, i) => (i + k) % 4);
        await writeHdf5(`${root}/data/${name}.h5`, {
          image: { data: Float32Array.from(label, (l) => l / 3), shape: [8, 10] },
          label: { data: label, shape: [8, 10] },
        });
      }
    }
    const label = Uint8Array.from({ length: 3 * 12 * 9 }, (_, i) => (i * 5) % 4);
    await writeHdf5(`${root}/data/patient003_frame01.h5`, {
      image: { data: Float32Array.from(label, (l) => l / 3), shape: [3, 12, 9] },
      label: { data: label, shape: [3, 12, 9] },
    });
    await Deno.writeTextFile(`${root}/train_slices.list`, slices.join("\n") + "\n");
    await Deno.writeTextFile(`${root}/val.list`, "patient003_frame01\n");
    const volumes = await validation(acdcDataset, {
      root,
      size: 16,
      cache: false,
      split: { labeled: 1, unlabeled: 1 },
    });
    assert.deepEqual(volumes.map((v) => v.id), ["patient003_frame01"]);
    await assertStoredLabel(volumes[0], [3, 12, 9], label);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("readLabel(): a PNG slice group's labels stacked in slice order, 0/255 read as classes 0/1 (promise12)", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/train/img`, { recursive: true });
    await Deno.mkdir(`${root}/train/gt`, { recursive: true });
    const expected = new Map<string, Uint8Array>();
    for (const c of ["Case00", "Case01", "Case02"]) {
      const all = new Uint8Array(3 * 12 * 14);
      for (const s of [0, 1, 2]) {
        const label = Uint8Array.from({ length: 12 * 14 }, (_, i) => (i % 14) <= 3 * s + 2 ? 1 : 0);
        all.set(label, s * 12 * 14);
        const name = `${c}_0_${s}.png`;
        const shape = [12, 14], spacing = [1, 1];
        await writePng(`${root}/train/gt/${name}`, {
          data: Uint8Array.from(label, (l) => 255 * l),
          shape,
          spacing,
        });
        await writePng(`${root}/train/img/${name}`, {
          data: Uint8Array.from(label, (l, i) => 30 + 100 * l + (i % 5)),
          shape,
          spacing,
        });
      }
      expected.set(c, all);
    }
    const volumes = await validation(promise12Dataset, {
      root,
      size: 16,
      cache: false,
      split: { labeled: 1, unlabeled: 1, validation: 1 },
    });
    assert.equal(volumes.length, 1);
    await assertStoredLabel(volumes[0], [3, 12, 14], expected.get(volumes[0].patient)!);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name:
    "readLabel() on the shared data: ACDC HDF5 volumes, PROMISE12 PNG slices, hippocampus NIfTI",
  ignore: !hasAcdc && !hasPromise12 && !hasHippocampus,
  fn: async () => {
    if (hasAcdc) {
      const volumes = await validation(acdcDataset, {
        root: ACDC,
        size: 32,
        cache: false,
        split: { labeled: 1, unlabeled: 1, validation: 1 },
      });
      assert.ok(volumes.length >= 1);
      for (const v of volumes) {
        const stored = await readHdf5(`${ACDC}/data/${v.id}.h5`, { dataset: "label" });
        await assertStoredLabel(v, stored.shape, stored.data);
        assert.ok(stored.shape[1] !== 32 && stored.shape[2] !== 32, "not the network's grid");
      }
    }
    if (hasPromise12) {
      const volumes = await validation(promise12Dataset, {
        root: PROMISE12,
        size: 32,
        cache: false,
        split: { labeled: 1, unlabeled: 1, validation: 1 },
      });
      assert.equal(volumes.length, 1);
      const v = volumes[0];
      const names = [...Deno.readDirSync(`${PROMISE12}/train/gt`)].map((e) => e.name)
        .filter((n) => n.startsWith(`${v.patient}_0_`))
        .sort((a, b) => Number(/_(\d+)\.png$/.exec(a)![1]) - Number(/_(\d+)\.png$/.exec(b)![1]));
      const slices = await Promise.all(names.map((n) => readPng(`${PROMISE12}/train/gt/${n}`)));
      const [h, w] = slices[0].shape;
      const stacked = new Uint8Array(slices.length * h * w);
      slices.forEach((s, k) => stacked.set(Uint8Array.from(s.data), k * h * w));
      await assertStoredLabel(v, [slices.length, h, w], stacked);
    }
    if (hasHippocampus) {
      const volumes = await validation(folderDataset, {
        root: HIPPOCAMPUS,
        size: 32,
        cache: false,
        split: { labeled: 1, unlabeled: 1, validation: 2 },
      });
      assert.equal(volumes.length, 2);
      for (const v of volumes) {
        const stored = await readVolume(`${HIPPOCAMPUS}/labels/${v.id}.nii.gz`);
        await assertStoredLabel(v, stored.shape, stored.data);
      }
    }
  },
});
