/**
 * Scores on each volume's source grid (`eval --grid source`, the trainer's final evaluation,
 * `eval --grid source --write`): the class probabilities brought back onto the file's grid
 * before the argmax, scored against the label as stored. Checked against a resampling done by
 * hand here (bilinear down to the network's grid, bilinear back up, argmax), on volumes whose
 * grid is not the network's.
 */
import assert from "node:assert/strict";
import { saveCheckpoint } from "../core/checkpoint.ts";
import { diceScores, hd95 } from "../core/metrics.ts";
import { readVolume, writeVolume } from "../io/volume.ts";
import { cli } from "./_helpers.ts";

const DEPS = new URL("../deps.ts", import.meta.url).href;
const MODEL = new URL("../core/model.ts", import.meta.url).href;

/** A model without weights: the class whose level `c / (classes - 1)` is nearest the intensity. */
const LEVEL_MODEL = `import { tf, z } from "${DEPS}";
import { models } from "${MODEL}";
models.register({
  id: "levels", description: "test only", options: z.object({}).strict(),
  create: (_o, context) => ({
    trainable: new Map(), state: new Map(), paramCount: 0,
    apply: (x) => tf.tidy(() => {
      const c = context.numClasses;
      const levels = tf.tensor1d(Array.from({ length: c }, (_, i) => i / (c - 1)));
      return tf.mul(tf.square(tf.sub(x, levels)), -50);
    }),
    dispose: () => {},
  }),
});
`;

/** `[12, 20, 9]` volumes, 3 mm along the last axis (the slice axis): 9 slices of 12 x 20. */
const SHAPE: [number, number, number] = [12, 20, 9];
const SPACING: [number, number, number] = [1.5, 0.9, 3];
const SIZE = 16;

/** Label `[12, 20, 9]`: an off-centre ellipsoid (its size depends on `k`) and a thin bar. */
function label(k: number): Uint8Array {
  const [d0, d1, d2] = SHAPE;
  const out = new Uint8Array(d0 * d1 * d2);
  for (let i = 0; i < d0; i++) {
    for (let j = 0; j < d1; j++) {
      for (let l = 0; l < d2; l++) {
        const r = ((i - 5.2) / (3 + k)) ** 2 + ((j - 11.3) / (5 + k)) ** 2 + ((l - 4) / 3.5) ** 2;
        const bar = i === 9 && j >= 3 && j < 8 && l > 2;
        out[(i * d1 + j) * d2 + l] = r < 1 || bar ? 1 : 0;
      }
    }
  }
  return out;
}

/** The image of a label: `10 * label + (i % 7)`, so min-max gives a noisy level image. */
function image(lab: Uint8Array): Float32Array {
  return Float32Array.from(lab, (v, i) => 10 * v + (i % 7));
}

/** Bilinear sample of an `h x w` plane (read through `at`) at `(y, x)`, clamped. */
function bilinear(
  at: (y: number, x: number) => number,
  h: number,
  w: number,
  y: number,
  x: number,
) {
  const y0 = Math.floor(y), x0 = Math.floor(x);
  const y1 = Math.min(y0 + 1, h - 1), x1 = Math.min(x0 + 1, w - 1);
  const ty = y - y0, tx = x - x0;
  return (1 - ty) * ((1 - tx) * at(y0, x0) + tx * at(y0, x1)) +
    ty * ((1 - tx) * at(y1, x0) + tx * at(y1, x1));
}

/**
 * The level model's prediction for `img` on its own grid, by hand: slices along the last axis
 * (rows = axis 0, columns = axis 1), min-max, corner-aligned bilinear resize to 16 x 16, the
 * model's softmax, bilinear back onto the 12 x 20 slice, first maximum.
 */
function predictedOnSource(img: Float32Array): Uint8Array {
  const [h, w, d] = SHAPE;
  let min = Infinity, max = -Infinity;
  for (const v of img) (min = Math.min(min, v)), (max = Math.max(max, v));
  const out = new Uint8Array(img.length);
  for (let k = 0; k < d; k++) {
    const src = (y: number, x: number) => (img[(y * w + x) * d + k] - min) / (max - min);
    // network slice: pixel (oy, ox) samples the source at oy * (h - 1) / 15, ox * (w - 1) / 15
    const net = new Float64Array(SIZE * SIZE);
    for (let oy = 0; oy < SIZE; oy++) {
      for (let ox = 0; ox < SIZE; ox++) {
        net[oy * SIZE + ox] = bilinear(
          src,
          h,
          w,
          (oy * (h - 1)) / (SIZE - 1),
          (ox * (w - 1)) / (SIZE - 1),
        );
      }
    }
    // softmax of -50 (x - level)^2 over the levels 0 and 1
    const p = (c: number) => (y: number, x: number) => {
      const v = net[y * SIZE + x];
      const l0 = -50 * v * v, l1 = -50 * (v - 1) * (v - 1);
      const m = Math.max(l0, l1);
      const e0 = Math.exp(l0 - m), e1 = Math.exp(l1 - m);
      return (c === 0 ? e0 : e1) / (e0 + e1);
    };
    const [p0, p1] = [p(0), p(1)];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const cy = (y * (SIZE - 1)) / (h - 1), cx = (x * (SIZE - 1)) / (w - 1);
        const a = bilinear(p0, SIZE, SIZE, cy, cx), b = bilinear(p1, SIZE, SIZE, cy, cx);
        out[(y * w + x) * d + k] = b > a ? 1 : 0;
      }
    }
  }
  return out;
}

/** Four image / label pairs in `<dir>/data` and a run of the level model on them. */
async function levelRun(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/data/images`, { recursive: true });
  await Deno.mkdir(`${dir}/data/labels`, { recursive: true });
  for (const [k, id] of ["a", "b", "c", "d"].entries()) {
    const lab = label(k);
    await writeVolume(`${dir}/data/images/${id}.nii.gz`, {
      data: image(lab),
      shape: SHAPE,
      spacing: SPACING,
    });
    await writeVolume(`${dir}/data/labels/${id}.nii.gz`, {
      data: lab,
      shape: SHAPE,
      spacing: SPACING,
    });
  }
  await Deno.writeTextFile(`${dir}/levels.ts`, LEVEL_MODEL);
  const run = `${dir}/run`;
  await Deno.mkdir(run);
  await Deno.writeTextFile(
    `${run}/recipe.yaml`,
    `method: levels\nbackend: wasm\nplugins: [${dir}/levels.ts]\n` +
      `dataset: { type: folder, root: data, size: ${SIZE}, classes: 2, cache: false, ` +
      `split: { labeled: 1, unlabeled: 1, validation: 2 } }\n` +
      `model: { type: levels }\ntrainer: { iterations: 1 }\n`,
  );
  await Deno.writeTextFile(`${run}/run.json`, JSON.stringify({ baseDir: dir, recipe: null }));
  await saveCheckpoint(`${run}/best.ckpt`, {}, new Map());
  await saveCheckpoint(`${run}/latest.ckpt`, {}, new Map());
  return run;
}

Deno.test("eval --grid source: Dice and HD95 on each file's grid equal a resampling by hand, and differ from the network grid's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await levelRun(dir);
    const res = await cli(["eval", run, "--grid", "source", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    const ev = JSON.parse(res.stdout);
    const ids = Object.keys(ev.per_volume);
    assert.equal(ids.length, 2);
    const [cls] = Object.keys(ev.dice);
    let differs = 0;
    const dices: number[] = [];
    for (const id of ids) {
      const stored = await readVolume(`${dir}/data/labels/${id}.nii.gz`);
      const img = await readVolume(`${dir}/data/images/${id}.nii.gz`);
      const truth = Uint8Array.from(stored.data);
      const pred = predictedOnSource(Float32Array.from(img.data));
      const [dice] = diceScores(pred, truth, 2);
      dices.push(dice);
      const v = ev.per_volume[id];
      assert.ok(
        Math.abs(v.dice_source[cls] - dice) < 1e-12,
        `${id}: ${v.dice_source[cls]} vs ${dice}`,
      );
      assert.ok(dice > 0.6 && dice < 1, `${id}: a structure found, not perfectly (${dice})`);
      // the file's spacing (float32 in NIfTI: 0.9 is 0.89999997...)
      const hd = hd95(pred, truth, SHAPE, img.spacing, 1);
      assert.ok(
        Math.abs(v.hd95_source[cls] - hd) < 1e-9,
        `${id}: HD95 ${v.hd95_source[cls]} vs ${hd}`,
      );
      if (Math.abs(v.dice[cls] - dice) > 1e-3) differs++;
    }
    assert.ok(differs > 0, "the network grid's Dice is another number");
    assert.ok(Math.abs(ev.dice_source_mean - (dices[0] + dices[1]) / 2) < 1e-12);
    assert.equal(ev.hd95_source_unit, "mm");
    assert.equal(ev.source_grid_missing, undefined);
    // the default grid scores on the network's grid only, the same numbers there
    const net = await cli(["eval", run, "--json"]);
    assert.equal(net.code, 0, net.stderr);
    const onNetwork = JSON.parse(net.stdout);
    assert.equal(onNetwork.dice_source, undefined);
    assert.deepEqual(onNetwork.dice, ev.dice);
    // the table: both grids
    const table = await cli(["eval", run, "--grid", "source"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /network grid: .*\n[\s\S]*source grid: /);
    assert.match(
      table.stdout,
      new RegExp(`source grid: ${cls} ${(100 * ev.dice_source[cls]).toFixed(2)} %`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --grid source --write adds the source-grid scores to summary.json, keeping every other key; other weights are refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await levelRun(dir);
    const net = JSON.parse((await cli(["eval", run, "--json", "--checkpoint", "latest"])).stdout);
    // a summary as an older trainer wrote it: network grid only
    const old = {
      method: "levels",
      dataset: "folder",
      seed: 1,
      iterations: 1,
      seconds_wall: 12.5,
      ...net,
      best: { iteration: 1, dice_mean: net.dice_mean },
      extra_key: [1, 2, 3],
    };
    await Deno.writeTextFile(`${run}/summary.json`, JSON.stringify(old, null, 2) + "\n");
    const refused = await cli(["eval", run, "--write"]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--write adds source-grid scores: give --grid source/);
    const best = await cli(["eval", run, "--grid", "source", "--write", "--checkpoint", "best"]);
    assert.equal(best.code, 2);
    assert.match(best.stderr, /--write scores latest\.ckpt/);
    const res = await cli(["eval", run, "--grid", "source", "--write"]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /source-grid scores added/);
    const updated = JSON.parse(await Deno.readTextFile(`${run}/summary.json`));
    const fresh = JSON.parse((await cli(["eval", run, "--grid", "source", "--json"])).stdout);
    for (const [k, v] of Object.entries(old)) {
      if (k !== "per_volume") assert.deepEqual(updated[k], v, k);
    }
    for (const k of ["dice_source", "dice_source_mean", "hd95_source", "hd95_source_unit"]) {
      assert.deepEqual(updated[k], fresh[k], k);
    }
    for (const [id, v] of Object.entries(old.per_volume as Record<string, object>)) {
      assert.deepEqual(updated.per_volume[id], {
        ...v,
        ...{
          dice_source: fresh.per_volume[id].dice_source,
          hd95_source: fresh.per_volume[id].hd95_source,
        },
      });
    }
    assert.equal(updated.source_evaluation.checkpoint, "latest.ckpt");
    assert.equal(updated.source_evaluation.command, "eval --grid source --write");
    assert.equal(updated.source_evaluation.largest_volume_difference, 0);
    assert.equal(updated.source_evaluation.checkpoint_from, undefined);
    // a summary of other weights (another mean Dice): refused, the file left as it was
    const other = { ...old, dice_mean: old.dice_mean - 0.05 };
    await Deno.writeTextFile(`${run}/summary.json`, JSON.stringify(other));
    const mismatch = await cli(["eval", run, "--grid", "source", "--write"]);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /is not the checkpoint's .*nothing written/);
    assert.equal(await Deno.readTextFile(`${run}/summary.json`), JSON.stringify(other));
    assert.deepEqual(
      [...Deno.readDirSync(run)].map((e) => e.name).filter((n) => n.includes("tmp")),
      [],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --write --checkpoint-from scores a retrain of the same recipe for a run that kept no checkpoint; another recipe or other per-volume Dice is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await levelRun(dir);
    const net = JSON.parse((await cli(["eval", run, "--json", "--checkpoint", "latest"])).stdout);
    // a committed result: recipe.yaml and summary.json, no checkpoint, no run.json
    const kept = `${dir}/results/levels/seed1`;
    await Deno.mkdir(kept, { recursive: true });
    await Deno.copyFile(`${run}/recipe.yaml`, `${kept}/recipe.yaml`);
    const summary = { method: "levels", seed: 1, ...net, extra_key: "kept" };
    const text = JSON.stringify(summary, null, 2) + "\n";
    await Deno.writeTextFile(`${kept}/summary.json`, text);
    const none = await cli(["eval", kept, "--grid", "source", "--write"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /latest\.ckpt does not exist/);
    const alone = await cli(["eval", kept, "--checkpoint-from", run]);
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--checkpoint-from gives --write another run's weights/);
    // the same mean Dice, other per-volume Dice (two volumes' scores swapped): refused
    const [a, b] = Object.keys(net.per_volume);
    const swapped = {
      ...summary,
      per_volume: { [a]: net.per_volume[b], [b]: net.per_volume[a] },
    };
    assert.notDeepEqual(net.per_volume[a].dice, net.per_volume[b].dice);
    await Deno.writeTextFile(`${kept}/summary.json`, JSON.stringify(swapped));
    const other = await cli([
      "eval",
      kept,
      "--grid",
      "source",
      "--write",
      "--checkpoint-from",
      run,
    ]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /differs from the checkpoint's by up to [\d.]+ points on a volume/);
    assert.equal(await Deno.readTextFile(`${kept}/summary.json`), JSON.stringify(swapped));
    // another recipe: refused, naming the first line that differs
    await Deno.writeTextFile(`${kept}/summary.json`, text);
    const recipe = await Deno.readTextFile(`${run}/recipe.yaml`);
    await Deno.writeTextFile(`${kept}/recipe.yaml`, "seed: 2\n" + recipe);
    const seed = await cli(["eval", kept, "--grid", "source", "--write", "--checkpoint-from", run]);
    assert.equal(seed.code, 2);
    assert.match(seed.stderr, /recipe\.yaml differ \(line 1: "seed: 2" against "method: levels"\)/);
    assert.equal(await Deno.readTextFile(`${kept}/summary.json`), text);
    // the same recipe: the scores are the retrain's, the provenance says whose
    await Deno.copyFile(`${run}/recipe.yaml`, `${kept}/recipe.yaml`);
    const res = await cli(["eval", kept, "--grid", "source", "--write", "--checkpoint-from", run]);
    assert.equal(res.code, 0, res.stderr);
    const updated = JSON.parse(await Deno.readTextFile(`${kept}/summary.json`));
    const fresh = JSON.parse((await cli(["eval", run, "--grid", "source", "--json"])).stdout);
    assert.deepEqual(updated.dice_source, fresh.dice_source);
    assert.equal(updated.extra_key, "kept");
    assert.equal(updated.source_evaluation.largest_volume_difference, 0);
    assert.match(
      updated.source_evaluation.checkpoint_from,
      new RegExp(
        `^latest\\.ckpt of ${
          run.replaceAll(/[.\\/]/g, "\\$&")
        }, another run of the same recipe\\.yaml`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const TRAINED = `method: tiny
backend: wasm
dataset: { type: folder, root: data, size: 16, classes: 2, cache: false, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 2, depth: 2 }
regularizers: [{ type: mean-teacher }]
trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 }
`;

Deno.test("a trained run's summary has both grids (teacher and student), as eval --grid source computes them; a phantom run says it has no source grid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await levelRun(dir); // the data
    await Deno.writeTextFile(`${dir}/r.yaml`, TRAINED);
    const run = await cli(["run", `${dir}/r.yaml`, "--out", `${dir}/trained`, "--quiet"]);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/trained/summary.json`));
    assert.equal(typeof summary.dice_mean, "number");
    assert.equal(typeof summary.dice_source_mean, "number");
    assert.equal(summary.source_grid_missing, undefined);
    assert.equal(typeof summary.student.dice_source_mean, "number");
    for (const v of Object.values(summary.per_volume) as { dice_source: object }[]) {
      assert.equal(typeof v.dice_source, "object");
    }
    const ev = await cli([
      "eval",
      `${dir}/trained`,
      "--grid",
      "source",
      "--checkpoint",
      "latest",
      "--json",
    ]);
    assert.equal(ev.code, 0, ev.stderr);
    const fresh = JSON.parse(ev.stdout);
    assert.deepEqual(fresh.dice_source, summary.dice_source);
    assert.deepEqual(fresh.dice, summary.dice);

    await Deno.writeTextFile(
      `${dir}/p.yaml`,
      TRAINED.replace(
        /dataset: .*\n/,
        "dataset: { type: phantom, seed: 1, patients: 4, slicesPerPatient: 3, size: 16, split: { labeled: 1, unlabeled: 1, validation: 2 } }\n",
      ),
    );
    const phantom = await cli(["run", `${dir}/p.yaml`, "--out", `${dir}/phantom`, "--quiet"]);
    assert.equal(phantom.code, 0, phantom.stderr);
    const ps = JSON.parse(await Deno.readTextFile(`${dir}/phantom/summary.json`));
    assert.equal(ps.dice_source, undefined);
    assert.match(ps.source_grid_missing, /no source file \(generated data/);
    const before = await Deno.readTextFile(`${dir}/phantom/summary.json`);
    const write = await cli(["eval", `${dir}/phantom`, "--grid", "source", "--write"]);
    assert.equal(write.code, 0, write.stderr);
    assert.match(write.stderr, /no source-grid scores: 2 of 2 volume\(s\) have no source file/);
    assert.match(write.stderr, /left as it was: nothing to add/);
    assert.equal(await Deno.readTextFile(`${dir}/phantom/summary.json`), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
