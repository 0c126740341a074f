import assert from "node:assert/strict";
import {
  generatePhantomPatient,
  phantomDataset,
  type PhantomOptions,
  phantomOptions,
} from "../plugins/datasets/phantom.ts";
import { Rng } from "../core/rng.ts";
import type { SegmentationDataset } from "../core/dataset.ts";
import { cpuMilliseconds } from "./_helpers.ts";

const LV = 3, MYO = 2, RV = 1;

function load(seed: number, options: Record<string, unknown> = {}): Promise<SegmentationDataset> {
  return phantomDataset.load(phantomOptions.parse(options), { seed, baseDir: "." });
}

/** Every labeled volume of a dataset: labeled slices and validation volumes. */
function labeledPixels(ds: SegmentationDataset): { images: Float32Array; labels: Uint8Array }[] {
  return [
    { images: ds.labeled.images, labels: ds.labeled.labels! },
    ...ds.validation.map((v) => ({ images: v.image, labels: v.label })),
  ];
}

function issues(input: unknown): string {
  const result = phantomOptions.safeParse(input);
  assert.equal(result.success, false, `expected ${JSON.stringify(input)} to be rejected`);
  return result.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");
}

Deno.test("phantom options have the documented defaults", () => {
  const o: PhantomOptions = phantomOptions.parse({});
  assert.deepEqual(o, {
    patients: 24,
    slicesPerPatient: 8,
    size: 64,
    split: { labeled: 2, unlabeled: 14, validation: 8 },
    noise: 0.05,
  });
  assert.deepEqual(phantomOptions.parse({ split: { unlabeled: 4 } }).split, {
    labeled: 2,
    unlabeled: 4,
    validation: 8,
  });
});

Deno.test("the same seed gives byte-identical data and splits", async () => {
  const a = await load(11);
  const b = await load(11);
  assert.deepEqual(a.splits, b.splits);
  assert.deepEqual(a.labeled.images, b.labeled.images);
  assert.deepEqual(a.labeled.labels, b.labeled.labels);
  assert.deepEqual(a.unlabeled.images, b.unlabeled.images);
  assert.equal(a.validation.length, b.validation.length);
  a.validation.forEach((v, i) => {
    assert.deepEqual(v.image, b.validation[i].image);
    assert.deepEqual(v.label, b.validation[i].label);
  });
});

Deno.test("the seed option overrides the run seed", async () => {
  const a = await load(1, { seed: 5 });
  const b = await load(2, { seed: 5 });
  assert.deepEqual(a.splits, b.splits);
  assert.deepEqual(a.unlabeled.images, b.unlabeled.images);
});

Deno.test("different seeds give different pixels and splits", async () => {
  const a = await load(1);
  const b = await load(2);
  assert.notDeepEqual(a.splits, b.splits);
  assert.notDeepEqual(a.unlabeled.images, b.unlabeled.images);
  const p = generatePhantomPatient(new Rng(1), phantomOptions.parse({}));
  const q = generatePhantomPatient(new Rng(2), phantomOptions.parse({}));
  assert.notDeepEqual(p.images, q.images);
  assert.notDeepEqual(p.labels, q.labels);
});

Deno.test("the data are split by patient with the requested counts", async () => {
  const ds = await load(3, { patients: 30, split: { labeled: 3, unlabeled: 10, validation: 5 } });
  const { labeled, unlabeled, validation } = ds.splits;
  assert.equal(labeled.length, 3);
  assert.equal(unlabeled.length, 10);
  assert.equal(validation.length, 5);
  const all = [...labeled, ...unlabeled, ...validation];
  assert.equal(new Set(all).size, all.length, "a patient is in two splits");
  for (const id of all) assert.match(id, /^phantom\d{3}$/);

  assert.equal(ds.labeled.count, 3 * 8);
  assert.equal(ds.unlabeled.count, 10 * 8);
  assert.equal(ds.labeled.images.length, 3 * 8 * 64 * 64);
  assert.equal(ds.labeled.labels!.length, 3 * 8 * 64 * 64);
  assert.equal(ds.unlabeled.labels, null);
  assert.equal(ds.unlabeled.images.length, 10 * 8 * 64 * 64);
  assert.deepEqual([...new Set(ds.labeled.patients)], labeled);
  assert.deepEqual([...new Set(ds.unlabeled.patients)], unlabeled);
  assert.deepEqual(ds.validation.map((v) => v.patient), validation);
  for (const v of ds.validation) {
    assert.deepEqual(v.shape, [8, 64, 64]);
    assert.equal(v.image.length, 8 * 64 * 64);
    assert.equal(v.label.length, 8 * 64 * 64);
    assert.equal(v.spacing?.length, 3);
  }
  assert.deepEqual(ds.classNames, ["background", "RV", "Myo", "LV"]);
  assert.equal(ds.id, "phantom");
});

Deno.test("labels are in 0..3 and every class occurs", async () => {
  const ds = await load(4);
  const counts = [0, 0, 0, 0];
  for (const { labels } of labeledPixels(ds)) {
    for (const l of labels) {
      assert.ok(l <= 3, `label ${l} out of range`);
      counts[l]++;
    }
  }
  for (const [c, n] of counts.entries()) assert.ok(n > 0, `class ${c} never occurs`);
});

Deno.test("images are in [0, 1] and the LV is brighter than the myocardium", async () => {
  for (const seed of [1, 2, 3]) {
    const ds = await load(seed);
    let lv = 0, nLv = 0, myo = 0, nMyo = 0;
    for (const { images, labels } of labeledPixels(ds)) {
      for (let i = 0; i < images.length; i++) {
        assert.ok(images[i] >= 0 && images[i] <= 1);
        if (labels[i] === LV) (lv += images[i], nLv++);
        else if (labels[i] === MYO) (myo += images[i], nMyo++);
      }
    }
    assert.ok(lv / nLv > myo / nMyo + 0.2, `LV ${lv / nLv} vs Myo ${myo / nMyo}`);
  }
});

Deno.test("the myocardium surrounds the LV in every slice", () => {
  for (const size of [16, 64, 96]) {
    const options = { ...phantomOptions.parse({ size }), slicesPerPatient: 10 };
    for (let seed = 0; seed < 20; seed++) {
      const { labels } = generatePhantomPatient(new Rng(seed), options);
      for (let k = 0; k < 10; k++) {
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const at = (yy: number, xx: number) =>
              yy < 0 || yy >= size || xx < 0 || xx >= size
                ? 0
                : labels[(k * size + yy) * size + xx];
            if (at(y, x) !== LV) continue;
            for (const [dy, dx] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
              const l = at(y + dy, x + dx);
              assert.ok(
                l === LV || l === MYO,
                `size ${size}, seed ${seed}, slice ${k}: LV pixel (${y}, ${x}) touches ${l}`,
              );
            }
          }
        }
      }
    }
  }
});

Deno.test("the LV shrinks from base to apex and the RV can vanish at the apex", () => {
  const options = phantomOptions.parse({});
  const n = 64 * 64;
  const lvArea = new Array(8).fill(0);
  let slicesWithoutRv = 0;
  for (let seed = 0; seed < 24; seed++) {
    const { labels } = generatePhantomPatient(new Rng(seed), options);
    for (let k = 0; k < 8; k++) {
      const slice = labels.subarray(k * n, (k + 1) * n);
      lvArea[k] += slice.filter((l) => l === LV).length / 24;
      if (!slice.includes(RV)) slicesWithoutRv++;
    }
    // Every slice has an LV.
    for (let k = 0; k < 8; k++) assert.ok(labels.subarray(k * n, (k + 1) * n).includes(LV));
  }
  for (let k = 1; k < 8; k++) {
    assert.ok(lvArea[k] < lvArea[k - 1], `mean LV area ${lvArea.map(Math.round)}`);
  }
  assert.ok(lvArea[7] < 0.6 * lvArea[0]);
  assert.ok(slicesWithoutRv > 0, "no slice lacks an RV");
});

Deno.test("the default dataset generates in well under a second of CPU time", async () => {
  await load(0);
  // CPU time, not the wall clock: a busy machine stretches the wall time (to over a second
  // for this load on two shared cores) but not the work done; the load takes about 0.1 s.
  const ms = await cpuMilliseconds(() => load(1));
  assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms of CPU time`);
});

Deno.test("splits larger than the patient count are rejected", () => {
  const message = issues({ patients: 10 });
  assert.match(message, /^split: .*must not exceed patients \(10\)/);
  assert.match(message, /2 \+ 14 \+ 8 = 24/);
  assert.match(issues({ split: { labeled: 10, unlabeled: 10, validation: 10 } }), /30.*24/);
});

Deno.test("a size below 16 pixels is rejected", () => {
  assert.match(issues({ size: 3 }), /^size: size must be at least 16 pixels$/);
  assert.match(issues({ size: 20.5 }), /^size: /);
});

Deno.test("unknown keys are rejected, at the top level and in the split", () => {
  assert.match(issues({ patinets: 12 }), /Unrecognized key.*'patinets'/);
  assert.match(issues({ split: { test: 2 } }), /^split: Unrecognized key.*'test'/);
});

Deno.test("malformed numbers are rejected", () => {
  assert.match(issues({ noise: -0.1 }), /^noise: noise must be non-negative$/);
  assert.match(issues({ patients: "24" }), /^patients: Expected number, received string$/);
  assert.match(
    issues({ split: { labeled: 0 } }),
    /^split.labeled: split.labeled must be at least 1$/,
  );
  assert.match(issues({ seed: 1.5 }), /^seed: /);
});
