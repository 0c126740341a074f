import assert from "node:assert/strict";
import { datasetOverride, exportPrediction, predictionFileName } from "../app/export.ts";
import {
  type Fit,
  loadCases,
  prepareCase,
  type RawCase,
  sliceGeometry,
} from "../plugins/datasets/file_dataset.ts";
import { readVolume } from "../io/volume.ts";
import { tf } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { unetModel, unetOptions } from "../plugins/models/unet.ts";
import { assertClose, cli, useWasm } from "./_helpers.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { hd95 } from "../core/metrics.ts";
import { phantomDataset, phantomOptions } from "../plugins/datasets/phantom.ts";

// The trainer registers no plugins: the built-ins come from here.
registerBuiltins();

const PHANTOM = (seed: number, patients: number) =>
  `{ type: phantom, seed: ${seed}, patients: ${patients}, slicesPerPatient: 3, size: 32, ` +
  `split: { labeled: 1, unlabeled: 1, validation: ${patients - 2} } }`;

const TINY = `method: tiny
backend: wasm
dataset: ${PHANTOM(1, 4)}
model: { type: unet, base: 4, depth: 3 }
regularizers: [{ type: kl }]
trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }
`;

const mul = (a: number[][], v: number[]) =>
  a.map((row) => row.reduce((s, x, k) => s + x * v[k], 0));

Deno.test("eval --export writes one NIfTI prediction per volume; --data swaps the dataset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    const run = await cli(["run", `${dir}/r.yaml`, "--out", `${dir}/run`, "--quiet"]);
    assert.equal(run.code, 0, run.stderr);
    const ev = await cli(["eval", `${dir}/run`, "--export", `${dir}/pred`, "--json"]);
    assert.equal(ev.code, 0, ev.stderr);
    const evaluation = JSON.parse(ev.stdout);
    const ids = Object.keys(evaluation.per_volume);
    assert.equal(ids.length, 2);
    // the run's validation volumes again (PHANTOM(1, 4): generated from its own seed)
    const truth = new Map((await phantomDataset.load(
      phantomOptions.parse({
        seed: 1,
        patients: 4,
        slicesPerPatient: 3,
        size: 32,
        split: { labeled: 1, unlabeled: 1, validation: 2 },
      }),
      { seed: 0, baseDir: dir },
    )).validation.map((v) => [v.id, v]));
    assert.deepEqual([...truth.keys()].sort(), [...ids].sort());
    assert.deepEqual(Object.keys(evaluation.hd95), ["RV", "Myo", "LV"]);
    assert.equal(evaluation.hd95_unit, "mm");
    for (const id of ids) {
      const v = await readVolume(`${dir}/pred/${predictionFileName(id)}`);
      assert.deepEqual(v.shape, [3, 32, 32]);
      assert.ok(v.data instanceof Uint8Array);
      assert.ok(v.data.every((x) => x < 4), "labels in 0..3");
      assert.equal(v.spacing[0], 8); // the phantom's slice spacing
      // HD95 of the exported prediction against the truth, class by class: undefined (null in
      // JSON) when exactly one of the two masks is empty, 0 when both are, else the distance
      const hd = evaluation.per_volume[id].hd95;
      const t = truth.get(id)!;
      for (const [i, k] of ["RV", "Myo", "LV"].entries()) {
        const c = i + 1;
        const inPrediction = v.data.some((x) => x === c), inTruth = t.label.some((x) => x === c);
        if (inPrediction !== inTruth) assert.equal(hd[k], null, `${id} ${k}`);
        else if (!inTruth) assert.equal(hd[k], 0, `${id} ${k}`);
        else assert.equal(hd[k], hd95(v.data, t.label, t.shape, t.spacing, c), `${id} ${k}`);
      }
    }
    // Another dataset from a recipe file: its dataset section replaces the run's.
    await Deno.writeTextFile(`${dir}/other.yaml`, TINY.replace(PHANTOM(1, 4), PHANTOM(9, 5)));
    const other = await cli(["eval", `${dir}/run`, "--data", `${dir}/other.yaml`, "--json"]);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(Object.keys(JSON.parse(other.stdout).per_volume).length, 3);
    // A folder for a dataset without a root: one message, exit 2.
    const bad = await cli(["eval", `${dir}/run`, "--data", dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /root/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("datasetOverride() makes roots absolute; exportPrediction() writes the affine", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await datasetOverride(dir), `dataset.root=${JSON.stringify(dir)}`);
    await Deno.writeTextFile(
      `${dir}/r.yaml`,
      "method: x\ndataset: { type: acdc, root: data/acdc, cache: c }\ntrainer: { iterations: 1 }\n",
    );
    const spec = await datasetOverride(`${dir}/r.yaml`);
    assert.deepEqual(JSON.parse(spec.slice("dataset=".length)), {
      type: "acdc",
      root: `${dir}/data/acdc`,
      cache: `${dir}/c`,
    });
    await assert.rejects(datasetOverride(`${dir}/missing`), /does not exist/);
    const affine = [[0, 0, 2, 10], [0.5, 0, 0, -4], [0, 3, 0, 7], [0, 0, 0, 1]];
    const path = await exportPrediction(`${dir}/out`, {
      id: "p/1",
      patient: "p",
      shape: [2, 3, 4],
      spacing: [3, 2, 0.5],
      affine,
      image: new Float32Array(24),
      label: new Uint8Array(24),
    }, Uint8Array.from({ length: 24 }, (_, i) => i % 4));
    assert.ok(path.endsWith("/p_1_pred.nii.gz"));
    const back = await readVolume(path);
    assert.deepEqual(back.shape, [2, 3, 4]);
    assert.deepEqual(back.spacing, [3, 2, 0.5]);
    assert.deepEqual(back.affine, affine);
    assert.deepEqual([...back.data], Array.from({ length: 24 }, (_, i) => i % 4));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prepared volumes carry the source affine composed with resizing and permutation", async () => {
  // Source [z 4, y 5, x 6] with spacing (z 2, y 3, x 0.5): the slice axis is y (largest).
  const shape = [4, 5, 6];
  const affine = [[0, 0, 2, 10], [0.5, 0, 0, -4], [0, 3, 0, 7], [0, 0, 0, 1]];
  const n = 4 * 5 * 6;
  const raw = (path: string): RawCase => ({
    image: {
      data: Float32Array.from({ length: n }, (_, i) => i),
      shape,
      spacing: [2, 3, 0.5],
      affine,
    },
    label: null,
    imagePath: path,
  });
  const context = (fit: Fit) => ({
    datasetId: "t",
    numClasses: 2,
    prep: { size: 16, fit, normalize: "none" as const, sliceAxis: "auto" as const },
  });
  for (const fit of ["stretch", "pad", "center"] as Fit[]) {
    const out = prepareCase(raw("a.nii.gz"), context(fit), { id: "a", patient: "a" });
    assert.deepEqual(out.shape, [5, 16, 16]);
    const g = sliceGeometry(4, 6, 16, fit);
    const fy = g.rh > 1 ? 3 / (g.rh - 1) : 0, fx = g.rw > 1 ? 5 / (g.rw - 1) : 0;
    for (const [col, row, slice] of [[0, 0, 0], [15, 15, 4], [3, 7, 2], [g.left, g.top, 1]]) {
      // The source voxel (x, y, z) this output voxel samples.
      const src = [(col - g.left) * fx, slice, (row - g.top) * fy, 1];
      const expected = mul(affine, src);
      const got = mul(out.affine!, [col, row, slice, 1]);
      for (let k = 0; k < 4; k++) assertClose(got[k], expected[k], 1e-9, `${fit} ${k}`);
    }
    // The voxel at the first in-plane sample is the source voxel (x 0, y 1, z 0).
    assert.equal(out.image[1 * 256 + g.top * 16 + g.left], (0 * 5 + 1) * 6 + 0);
    // Spacing = column norms of the affine.
    const norms = [2, 1, 0].map((c) => Math.hypot(...[0, 1, 2].map((r) => out.affine![r][c])));
    norms.forEach((v, k) => assertClose(v, out.spacing![k], 1e-9));
  }
  // MetaImage (LPS) affines are flipped to RAS.
  const mha = prepareCase(raw("a.mha"), context("center"), { id: "a", patient: "a" });
  const nii = prepareCase(raw("a.nii"), context("center"), { id: "a", patient: "a" });
  assert.deepEqual(
    mha.affine!.slice(0, 2),
    nii.affine!.slice(0, 2).map((r) => r.map((v) => (v === 0 ? 0 : -v))),
  );
  assert.deepEqual(mha.affine![2], nii.affine![2]);
  // Formats without an affine give none; the cache keeps it.
  const { affine: _, ...noAffine } = raw("a.h5").image;
  const h5 = prepareCase({ ...raw("a.h5"), image: noAffine }, context("center"), {
    id: "a",
    patient: "a",
  });
  assert.equal(h5.affine, undefined);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.nii.gz`, "x");
    const source = {
      id: "a",
      patient: "a",
      files: [`${dir}/a.nii.gz`],
      read: () => Promise.resolve(raw("a.nii.gz")),
    };
    const options = { ...context("stretch"), cacheDir: `${dir}/cache` };
    const first = await loadCases([source], options);
    let reads = 0;
    const second = await loadCases([source], { ...options, onRead: () => reads++ });
    assert.equal(reads, 0);
    assert.deepEqual(second[0].affine, first[0].affine);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a U-Net input whose sides its depth cannot halve is a UserError naming dataset.size", async () => {
  await useWasm();
  const model = unetModel.create(unetOptions.parse({ base: 2, depth: 3 }), {
    inChannels: 1,
    numClasses: 2,
    seed: 1,
    name: "t",
  });
  const x = tf.zeros([1, 30, 30, 1]) as tf.Tensor4D;
  try {
    assert.throws(() => model.apply(x), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.match((e as Error).message, /divisible by 4.*dataset\.size to a multiple of 4/);
      return true;
    });
  } finally {
    x.dispose();
    model.dispose();
  }
});
