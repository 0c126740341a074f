import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { saveCheckpoint } from "../core/checkpoint.ts";
import { diceScores } from "../core/metrics.ts";
import { readVolume, writeVolume } from "../io/volume.ts";
import { readHdf5 } from "../io/hdf5.ts";
import { readPng, writePng } from "../io/png_slices.ts";
import type { VolumeData } from "../io/volume_data.ts";
import { datasetPreprocessing, datasets } from "../core/dataset.ts";
import { prepareCase } from "../plugins/datasets/file_dataset.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { parsePredictArgs, planPredict } from "../app/launcher.ts";
import { join } from "node:path";
import { cli } from "./_helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HIPPOCAMPUS = Deno.env.get("HIPPOCAMPUS_ROOT") ??
  new URL("../../shared/data/hippocampus", import.meta.url).pathname;

/** Labels `[d0, d1, d2]`: 1 inside an ellipsoid, 0 outside. */
function ellipsoid(shape: [number, number, number]): Uint8Array {
  const [d0, d1, d2] = shape;
  const out = new Uint8Array(d0 * d1 * d2);
  for (let i = 0; i < d0; i++) {
    for (let j = 0; j < d1; j++) {
      for (let k = 0; k < d2; k++) {
        const r = ((i - d0 * 0.45) / (d0 * 0.35)) ** 2 + ((j - d1 * 0.55) / (d1 * 0.3)) ** 2 +
          ((k - d2 * 0.5) / (d2 * 0.4)) ** 2;
        out[(i * d1 + j) * d2 + k] = r < 1 ? 1 : 0;
      }
    }
  }
  return out;
}

/**
 * A plugin model whose prediction is the label encoded in the intensities: the class whose
 * level `c / (classes - 1)` is nearest to the (min-max normalised) intensity.
 */
const LEVEL_MODEL = `
import { tf } from "${new URL("../deps.ts", import.meta.url).href}";
import { models } from "${new URL("../core/model.ts", import.meta.url).href}";
import { z } from "${new URL("../deps.ts", import.meta.url).href}";
models.register({
  id: "levels",
  description: "class = nearest intensity level (a test model without weights)",
  options: z.object({}).strict(),
  create: (_options, context) => ({
    trainable: new Map(),
    state: new Map(),
    paramCount: 0,
    apply: (x) => tf.tidy(() => {
      const c = context.numClasses;
      const levels = tf.tensor1d(Array.from({ length: c }, (_, i) => i / (c - 1)));
      return tf.mul(tf.square(tf.sub(x, levels)), -50);
    }),
    dispose: () => {},
  }),
});
`;

/** The level model's prediction on the network grid: nearest level of each intensity. */
function levelPrediction(image: Float32Array, classes: number): Uint8Array {
  return Uint8Array.from(
    image,
    (v) => Math.min(classes - 1, Math.max(0, Math.round(v * (classes - 1)))),
  );
}

/** A run directory of the level model with the preprocessing of `dataset`. */
async function levelRun(dir: string, dataset: string, classes: string[]): Promise<string> {
  await Deno.writeTextFile(`${dir}/levels.ts`, LEVEL_MODEL);
  const run = `${dir}/run`;
  await Deno.mkdir(run);
  await Deno.writeTextFile(
    `${run}/recipe.yaml`,
    `method: levels\nbackend: wasm\nplugins: [${dir}/levels.ts]\ndataset: ${dataset}\n` +
      `model: { type: levels }\ntrainer: { iterations: 1 }\n`,
  );
  await Deno.writeTextFile(
    `${run}/run.json`,
    JSON.stringify({ baseDir: dir, recipe: null, classNames: classes }),
  );
  await saveCheckpoint(`${run}/best.ckpt`, {}, new Map());
  return run;
}

/** Rotation by `a` about z, then by `b` about x: an oblique orientation. */
function obliqueAffine(spacingXyz: number[], offset: number[]): number[][] {
  const a = 0.35, b = -0.2;
  const rz = [[Math.cos(a), -Math.sin(a), 0], [Math.sin(a), Math.cos(a), 0], [0, 0, 1]];
  const rx = [[1, 0, 0], [0, Math.cos(b), -Math.sin(b)], [0, Math.sin(b), Math.cos(b)]];
  const r = rz.map((row) => [0, 1, 2].map((c) => row.reduce((s, v, k) => s + v * rx[k][c], 0)));
  return [
    ...r.map((row, i) => [...row.map((v, c) => Math.fround(v * spacingXyz[c])), offset[i]]),
    [0, 0, 0, 1],
  ];
}

/** Dice per foreground class. */
function dice(pred: Uint8Array, truth: Uint8Array, classes: number): number[] {
  return diceScores(pred, truth, classes);
}

async function scans(): Promise<Array<{ name: string; image: VolumeData; label: Uint8Array }>> {
  // anisotropic: slice axis 2 (x, 2.5 mm), 0.8 mm rows
  const spacing = [1.2, 0.8, 2.5];
  const synthetic = ellipsoid([24, 40, 18]);
  const out = [{
    name: "ellipsoids",
    image: {
      data: Float32Array.from(synthetic, (v) => 100 + 50 * v),
      shape: [24, 40, 18],
      spacing,
      affine: obliqueAffine([...spacing].reverse(), [-30, 12.5, 7]),
    },
    label: synthetic,
  }];
  try {
    const image = await readVolume(`${HIPPOCAMPUS}/images/hippocampus_001.nii.gz`);
    const label = await readVolume(`${HIPPOCAMPUS}/labels/hippocampus_001.nii.gz`);
    // the whole hippocampus (its two parts both touch the background: as intensity levels
    // 0 / 0.5 / 1 a resized 0 | 1 boundary would pass through 0.5 and make a spurious layer)
    const l = Uint8Array.from(label.data, (v) => (v > 0 ? 1 : 0));
    // its real label as the intensity, on an oblique, anisotropic grid
    out.push({
      name: "hippocampus_001",
      image: {
        data: Float32Array.from(l, (v) => 20 + 40 * v),
        shape: image.shape,
        spacing,
        affine: obliqueAffine([...spacing].reverse(), [10, -4, 22.5]),
      },
      label: l,
    });
  } catch {
    console.log(`predict_test: no hippocampus data at ${HIPPOCAMPUS}; synthetic scan only`);
  }
  return out;
}

Deno.test("predict writes each scan's prediction on its own grid: shape, spacing and oblique affine; Dice there equals Dice on the network grid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const classes = ["background", "structure"];
    const size = 32;
    const run = await levelRun(
      dir,
      `{ type: folder, root: nowhere, size: ${size}, classes: 2, split: { labeled: 1 } }`,
      classes,
    );
    registerBuiltins();
    const prep = datasetPreprocessing(
      "folder",
      datasets.get("folder").options.parse({
        root: "nowhere",
        size,
        classes: 2,
        split: { labeled: 1 },
      }),
    );
    const inputs: string[] = [];
    const list = await scans();
    for (const s of list) {
      await Deno.mkdir(`${dir}/in`, { recursive: true });
      await writeVolume(`${dir}/in/${s.name}.nii.gz`, s.image);
      inputs.push(`${dir}/in/${s.name}.nii.gz`);
    }
    // the same scan as MetaImage, HDF5 and a PNG slice folder; and a corrupt file
    const first = list[0];
    await writeVolume(`${dir}/in/meta.mhd`, first.image, { compress: true });
    await writeVolume(`${dir}/in/h5.h5`, first.image);
    await Deno.mkdir(`${dir}/png/img`, { recursive: true });
    const [d, h, w] = first.image.shape;
    for (let k = 0; k < d; k++) {
      await writePng(`${dir}/png/img/case_${k}.png`, {
        data: Uint8Array.from(first.label.subarray(k * h * w, (k + 1) * h * w), (v) => 60 * v),
        shape: [h, w],
        spacing: [1, 1],
      });
    }
    await Deno.writeTextFile(`${dir}/in/corrupt.nii.gz`, "not a NIfTI file");
    const res = await cli([
      "predict",
      run,
      ...inputs,
      `${dir}/in/meta.mhd`,
      `${dir}/in/h5.h5`,
      `${dir}/in/corrupt.nii.gz`,
      `${dir}/png`,
      "--out",
      `${dir}/out`,
    ]);
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stdout, /^FAIL {2}.*corrupt\.nii\.gz: .*NIfTI/m);
    assert.match(res.stderr, /1 failed/);
    for (const s of list) {
      const pred = await readVolume(`${dir}/out/${s.name}_pred.nii.gz`);
      const input = await readVolume(`${dir}/in/${s.name}.nii.gz`);
      assert.deepEqual(pred.shape, input.shape, s.name);
      assert.deepEqual(pred.affine, input.affine, s.name);
      pred.spacing.forEach((v, i) => assert.ok(Math.abs(v - input.spacing[i]) < 1e-6));
      assert.ok(pred.data instanceof Uint8Array);
      // Dice on the scan's grid vs Dice on the network grid (label resampled by nearest)
      const onScan = dice(pred.data as Uint8Array, s.label, 2);
      const net = prepareCase({
        image: input,
        label: { ...input, data: s.label },
        imagePath: "x.nii.gz",
      }, {
        datasetId: "t",
        prep,
        numClasses: 2,
      }, { id: "x", patient: "x" });
      const onNetwork = dice(levelPrediction(net.image, 2), net.label!, 2);
      for (let c = 0; c < 1; c++) {
        assert.ok(
          onScan[c] > 0.85,
          `${s.name} class ${c + 1}: Dice ${onScan[c]} on the scan's grid`,
        );
        assert.ok(
          Math.abs(onScan[c] - onNetwork[c]) < 0.03,
          `${s.name} class ${c + 1}: Dice ${onScan[c]} on the scan's grid, ${
            onNetwork[c]
          } on the network's`,
        );
      }
    }
    // MetaImage: same geometry in its own (LPS) convention; HDF5: a label dataset
    const meta = await readVolume(`${dir}/out/meta_pred.mhd`);
    const metaIn = await readVolume(`${dir}/in/meta.mhd`);
    assert.deepEqual(meta.shape, metaIn.shape);
    assert.deepEqual(meta.affine, metaIn.affine);
    const h5 = await readHdf5(`${dir}/out/h5_pred.h5`, { dataset: "label" });
    assert.deepEqual(h5.shape, first.image.shape);
    // PNG slices: one PNG per input slice, same names, class indices
    const slice = await readPng(`${dir}/out/case_pred/case_3.png`);
    assert.deepEqual(slice.shape, [h, w]);
    assert.ok(
      dice(
        Uint8Array.from(slice.data),
        first.label.subarray(3 * h * w, 4 * h * w),
        2,
      )[0] > 0.8,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --export --grid source writes each volume on its source file's grid, as predict does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const shape: [number, number, number] = [12, 20, 9];
    const spacing = [1.5, 0.9, 3];
    for (const id of ["a", "b", "c"]) {
      const label = ellipsoid(shape);
      await Deno.mkdir(`${dir}/data/images`, { recursive: true });
      await Deno.mkdir(`${dir}/data/labels`, { recursive: true });
      const affine = obliqueAffine([...spacing].reverse(), [id.charCodeAt(0), -5, 3]);
      await writeVolume(`${dir}/data/images/${id}.nii.gz`, {
        data: Float32Array.from(label, (v, i) => 10 * v + (i % 7)),
        shape,
        spacing,
        affine,
      });
      await writeVolume(`${dir}/data/labels/${id}.nii.gz`, { data: label, shape, spacing, affine });
    }
    await Deno.writeTextFile(
      `${dir}/r.yaml`,
      `method: tiny\nbackend: wasm\n` +
        `dataset: { type: folder, root: data, size: 16, classes: 2, cache: false, ` +
        `split: { labeled: 1, unlabeled: 1, validation: 1 } }\n` +
        `model: { type: unet, base: 2, depth: 2 }\nregularizers: [{ type: mean-teacher }]\n` +
        `trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }\n`,
    );
    const run = await cli(["run", `${dir}/r.yaml`, "--out", `${dir}/run`, "--quiet"]);
    assert.equal(run.code, 0, run.stderr);
    const source = await cli(["eval", `${dir}/run`, "--export", `${dir}/src`, "--grid", "source"]);
    assert.equal(source.code, 0, source.stderr);
    assert.match(source.stdout, /1 predictions written to .*src \(source grid\)/);
    const network = await cli(["eval", `${dir}/run`, "--export", `${dir}/net`]);
    assert.equal(network.code, 0, network.stderr);
    const [name] = [...Deno.readDirSync(`${dir}/src`)].map((e) => e.name);
    const id = name.replace(/_pred\.nii\.gz$/, "");
    const input = await readVolume(`${dir}/data/images/${id}.nii.gz`);
    const onSource = await readVolume(`${dir}/src/${name}`);
    assert.deepEqual(onSource.shape, input.shape);
    assert.deepEqual(onSource.affine, input.affine);
    // the slice axis is the 3 mm one: the network grid is 9 slices of 16 x 16
    assert.deepEqual((await readVolume(`${dir}/net/${name}`)).shape, [9, 16, 16]);
    // predict on the volume's file: the same network (the teacher), preprocessing and labels
    const pred = await cli([
      "predict",
      `${dir}/run`,
      `${dir}/data/images/${id}.nii.gz`,
      "--out",
      `${dir}/pred`,
    ]);
    assert.equal(pred.code, 0, pred.stderr);
    const predicted = await readVolume(`${dir}/pred/${id}_pred.nii.gz`);
    assert.deepEqual([...predicted.data], [...onSource.data]);
    const bad = await cli(["eval", `${dir}/run`, "--export", `${dir}/x`, "--grid", "mine"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown grid "mine"; use network or source/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher: predict reads the run and the scans (a MetaImage's data file), writes only --out, no dataset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(
      `${dir}/run/recipe.yaml`,
      "method: partial\ndataset: { type: folder, root: /data/mine, classes: 2, " +
        "split: { labeled: 1 } }\ntrainer: { iterations: 2 }\n",
    );
    await writeVolume(`${dir}/scan.mhd`, {
      data: new Uint8Array(8),
      shape: [2, 2, 2],
      spacing: [1, 1, 1],
    });
    const { grants } = await planPredict(
      parsePredictArgs([`${dir}/run`, `${dir}/scan.mhd`, "scans", "--out", "preds"]),
      {
        cwd: ROOT,
        frameworkDir: ROOT,
        npmCache: "/cache/deno/npm",
        tmpDir: "/tmpx",
        env: () => undefined,
        moduleGraph: () => Promise.resolve(undefined),
      },
    );
    assert.deepEqual(grants.read, [
      "/cache/deno/npm",
      `${dir}/run`,
      `${dir}/scan.mhd`,
      `${dir}/scan.raw`,
      join(ROOT, "scans"),
      join(ROOT, "preds"),
    ]);
    assert.deepEqual(grants.write, [join(ROOT, "preds")]);
    assert.equal(grants.net, undefined);
    assert.equal(grants.run, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task predict segments scans under the launcher's grants (a plugin model included)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await levelRun(
      dir,
      "{ type: folder, root: nowhere, size: 16, classes: 2, split: { labeled: 1 } }",
      ["background", "structure"],
    );
    const shape: [number, number, number] = [6, 12, 10];
    const label = ellipsoid(shape);
    await writeVolume(`${dir}/scan.mhd`, {
      data: Float32Array.from(label, (v) => 5 * v),
      shape,
      spacing: [2, 1, 1],
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "predict", run, `${dir}/scan.mhd`, "--out", `${dir}/out`],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stderr, /permissions of this predict \(deno task predict\): read: /);
    assert.doesNotMatch(stderr, /not granted|NotCapable/);
    const pred = await readVolume(`${dir}/out/scan_pred.mhd`);
    assert.deepEqual(pred.shape, shape);
    assert.ok(dice(Uint8Array.from(pred.data), label, 2)[0] > 0.8);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
