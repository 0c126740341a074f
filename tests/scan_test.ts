import assert from "node:assert/strict";
import { z } from "../deps.ts";
import { datasetPreprocessing, datasets } from "../core/dataset.ts";
import type { Fit, PreprocessOptions } from "../plugins/datasets/file_dataset.ts";
import { prepareScan } from "../plugins/datasets/preprocess.ts";
import { LabelsOnScanGrid } from "../plugins/datasets/scan_grid.ts";
import { registerBuiltins } from "../plugins/mod.ts";

registerBuiltins();

/** The preprocessing of a scan for a run on dataset `type` with `options` (parsed first). */
function scanPreprocessing(type: string, options: Record<string, unknown>): PreprocessOptions {
  return datasetPreprocessing(type, datasets.get(type).options.parse(options));
}

/** Labels `[d0, d1, d2]` of nested ellipsoids: classes 0 (outside) .. 2 (core). */
function ellipsoids(shape: [number, number, number]): Uint8Array {
  const [d0, d1, d2] = shape;
  const out = new Uint8Array(d0 * d1 * d2);
  for (let i = 0; i < d0; i++) {
    for (let j = 0; j < d1; j++) {
      for (let k = 0; k < d2; k++) {
        const r = ((i - d0 * 0.45) / (d0 * 0.35)) ** 2 + ((j - d1 * 0.55) / (d1 * 0.3)) ** 2 +
          ((k - d2 * 0.5) / (d2 * 0.4)) ** 2;
        out[(i * d1 + j) * d2 + k] = r < 0.3 ? 2 : r < 1 ? 1 : 0;
      }
    }
  }
  return out;
}

/** One-hot class probabilities of labels on the network grid: each class channel resized. */
function networkProbabilities(
  labels: Uint8Array,
  shape: number[],
  classes: number,
  prep: PreprocessOptions,
  spacing: number[],
): Float32Array {
  const channels = Array.from({ length: classes }, (_, c) =>
    prepareScan(
      {
        data: Float32Array.from(labels, (v) => (v === c ? 1 : 0)),
        shape,
        spacing,
      },
      { ...prep, normalize: "none" },
      "x",
    ));
  const { layout } = channels[0];
  const n = layout.depth * layout.size * layout.size;
  const out = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) out[i * classes + c] = channels[c].image[i];
  }
  return out;
}

function backToScan(
  probabilities: Float32Array,
  shape: number[],
  spacing: number[],
  classes: number,
  prep: PreprocessOptions,
): Uint8Array {
  const { layout } = prepareScan(
    { data: new Float32Array(shape[0] * shape[1] * shape[2]), shape, spacing },
    prep,
    "x",
  );
  const labels = new LabelsOnScanGrid(layout, classes);
  const per = layout.size * layout.size * classes;
  for (let k = 0; k < layout.depth; k++) {
    labels.add(k, probabilities.subarray(k * per, (k + 1) * per));
  }
  return labels.labels();
}

Deno.test("probabilities on the network grid come back to the scan's grid exactly where the grids meet", () => {
  // Slice axis 2 (largest spacing): slices 5 x 5 (rows: axis 0, columns: axis 1), 9 of them.
  const shape = [5, 5, 9], spacing = [1, 1, 3];
  const labels = ellipsoids(shape as [number, number, number]);
  for (const fit of ["stretch", "pad", "center"] as Fit[]) {
    // 17 = 4 * (5 - 1) + 1: every source row and column is a network row and column
    const prep: PreprocessOptions = { size: 17, fit, normalize: "minmax", sliceAxis: "auto" };
    const probs = networkProbabilities(labels, shape, 3, prep, spacing);
    assert.deepEqual([...backToScan(probs, shape, spacing, 3, prep)], [...labels], fit);
  }
  // An explicit slice axis, non-square slices (5 x 9 -> pad: 9.4 x 17): nearly every voxel.
  const prep: PreprocessOptions = { size: 17, fit: "pad", normalize: "minmax", sliceAxis: 1 };
  const back = backToScan(
    networkProbabilities(labels, shape, 3, prep, spacing),
    shape,
    spacing,
    3,
    prep,
  );
  const same = back.filter((v, i) => v === labels[i]).length;
  assert.ok(same / labels.length > 0.97, `${same} of ${labels.length}`);
  // crop (5 x 9 slices scaled to 4 x 7, centre-cropped to 4 x 4): what lies outside the
  // network's pixels (columns 0, 1 and 8) is background
  const crop: PreprocessOptions = { size: 4, fit: "crop", normalize: "minmax", sliceAxis: 0 };
  const shape2 = [9, 5, 9];
  const cropped = backToScan(
    networkProbabilities(new Uint8Array(9 * 5 * 9).fill(1), shape2, 2, crop, [1, 1, 1]),
    shape2,
    [1, 1, 1],
    2,
    crop,
  );
  assert.deepEqual([...cropped.subarray(0, 9)], [0, 0, 1, 1, 1, 1, 1, 1, 0]);
});

Deno.test("a dataset's preprocessing() gives its size, fit, normalize, sliceAxis and window", () => {
  assert.deepEqual(scanPreprocessing("phantom", { size: 64 }), {
    size: 64,
    fit: "stretch",
    normalize: "minmax",
    sliceAxis: "auto",
  });
  assert.deepEqual(
    scanPreprocessing("spleen", {
      root: "x",
      size: 128,
      fit: "pad",
      normalize: "none",
      sliceAxis: 2,
      window: [-160, 240],
    }),
    { size: 128, fit: "pad", normalize: "none", sliceAxis: 2, window: [-160, 240] },
  );
  // the file-based datasets' defaults; no window unless the dataset has one
  assert.deepEqual(scanPreprocessing("acdc", { root: "x" }), {
    size: 256,
    fit: "stretch",
    normalize: "minmax",
    sliceAxis: "auto",
  });
  assert.deepEqual(scanPreprocessing("spleen", { root: "x", window: null }), {
    size: 512,
    fit: "stretch",
    normalize: "minmax",
    sliceAxis: "auto",
  });
  // a plugin that does not say how its scans are preprocessed
  datasets.register({
    id: "mine",
    description: "a dataset without preprocessing()",
    options: z.object({ root: z.string(), size: z.number() }).strict(),
    load: () => Promise.reject(new Error("not used")),
  });
  try {
    assert.throws(
      () => scanPreprocessing("mine", { root: "x", size: 64 }),
      /dataset "mine" does not say how a scan is preprocessed.*input size is unknown/,
    );
  } finally {
    datasets.unregister("mine");
  }
});
