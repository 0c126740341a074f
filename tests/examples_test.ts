/**
 * The example plugins of docs/plugins.md, one per kind (examples/*.ts): docs/plugins.md shows
 * each file word for word, each registers on import, keeps its kind's contract on tiny inputs,
 * and trains 2 iterations from a recipe that loads it by path.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tf } from "../deps.ts";
import { losses } from "../core/loss.ts";
import { parseRecipe } from "../core/recipe.ts";
import { Rng } from "../core/rng.ts";
import { Trainer } from "../core/trainer.ts";
import { crossEntropy } from "../plugins/losses/cross_entropy.ts";
import { writeNifti } from "../io/nifti.ts";
import { focalLoss } from "../examples/focal_loss.ts";
import { shiftTransform, shiftTransformPlugin } from "../examples/shift_transform.ts";
import { pairsDataset } from "../examples/pairs_dataset.ts";
import { tinyFcnModel } from "../examples/tiny_model.ts";
import { TINY_DATASET, TINY_MODEL } from "./_tiny.ts";
import { assertClose, moduleTempDir, useWasm } from "./_helpers.ts";
import "../mod.ts"; // the built-in plugins

await useWasm();
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const EXAMPLES = ["smoothness.ts", "focal_loss.ts", "shift_transform.ts", "pairs_dataset.ts"]
  .concat(["tiny_model.ts"]);
const tmp = moduleTempDir("missl-examples-test-");

/** Train 2 iterations of a tiny recipe with `extra` on top and the example modules as plugins. */
async function trainTwo(
  extra: Record<string, unknown>,
  examples: string[],
): Promise<Array<Record<string, number>>> {
  const recipe = parseRecipe({
    method: "example",
    seed: 5,
    backend: "wasm",
    plugins: examples.map((e) => `${ROOT}examples/${e}`),
    dataset: TINY_DATASET,
    model: TINY_MODEL,
    regularizers: [{ type: "kl" }],
    trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 },
    ...extra,
  }, "<example>");
  const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
  try {
    const steps = [await trainer.step(), await trainer.step()];
    for (const s of steps) {
      for (const [k, v] of Object.entries(s)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
    }
    return steps;
  } finally {
    trainer.dispose();
  }
}

Deno.test("docs/plugins.md shows each example file word for word", async () => {
  const doc = await Deno.readTextFile(`${ROOT}docs/plugins.md`);
  const shown = [...doc.matchAll(/<!-- file: examples\/(\S+) -->\s*```ts\n([\s\S]*?)```/g)];
  assert.deepEqual(shown.map((m) => m[1]).sort(), [...EXAMPLES].sort());
  for (const [, name, block] of shown) {
    assert.equal(block, await Deno.readTextFile(`${ROOT}examples/${name}`), name);
  }
});

Deno.test("example regularizer (smoothness): trains 2 iterations, its term positive", async () => {
  const steps = await trainTwo(
    { regularizers: [{ type: "kl" }, { type: "smoothness", weight: 0.5 }] },
    ["smoothness.ts"],
  );
  assert.ok(steps[0].smoothness > 0);
});

Deno.test("example loss (focal): gamma 0 is the cross-entropy, gamma 2 weighs easy pixels less; trains", async () => {
  assert.equal(losses.get("focal"), focalLoss);
  tf.tidy(() => {
    const logits = tf.randomNormal([2, 4, 4, 3], 0, 2, "float32", 1) as tf.Tensor4D;
    const labels = tf.randomUniform([2, 4, 4], 0, 3, "int32", 2) as tf.Tensor3D;
    const mask = tf.cast(
      tf.greater(tf.randomUniform([2, 4, 4, 1], 0, 1, "float32", 3), 0.5),
      "float32",
    ) as tf.Tensor4D;
    const focal = (gamma: number) => focalLoss.create({ gamma }, { numClasses: 3 });
    const ce = crossEntropy(logits, labels).dataSync()[0];
    assertClose(focal(0)(logits, labels).dataSync()[0], ce, 1e-5);
    assertClose(
      focal(0)(logits, labels, mask).dataSync()[0],
      crossEntropy(logits, labels, mask).dataSync()[0],
      1e-5,
    );
    const f2 = focal(2)(logits, labels).dataSync()[0];
    assert.ok(f2 > 0 && f2 < ce, `${f2} vs ${ce}`);
    // Its gradient reaches the logits.
    const g = tf.grad((l: tf.Tensor) => focal(2)(l as tf.Tensor4D, labels))(logits);
    assert.ok(tf.max(tf.abs(g)).dataSync()[0] > 0);
  });
  assert.throws(() => focalLoss.options.parse({ gamma: -1 }));
  await trainTwo({ supervised: { type: "focal", gamma: 2 } }, ["focal_loss.ts"]);
});

Deno.test("example transform (shift): inverts exactly on its valid pixels, masks the rest; trains", async () => {
  const t = shiftTransform({ max: 2 });
  const params = t.sample(new Rng(3), 4, 6, 5);
  assert.equal(params.length, 4);
  for (const [dy, dx] of params) assert.ok(Math.abs(dy) <= 2 && Math.abs(dx) <= 2);
  tf.tidy(() => {
    const x = tf.randomUniform([4, 6, 5, 3], 0, 1, "float32", 4) as tf.Tensor4D;
    const moved = t.apply(x, params);
    assert.deepEqual(moved.shape, [4, 6, 5, 3]);
    const mask = t.validMask(params, 6, 5);
    assert.deepEqual(mask.shape, [4, 6, 5, 1]);
    // invert(apply(x)) = x where the mask is 1, 0 elsewhere.
    const back = t.invert(moved, params);
    assert.equal(tf.max(tf.abs(tf.sub(back, tf.mul(x, mask)))).dataSync()[0], 0);
    // The forward mask marks where apply shows original pixels: exactly the nonzero ones of
    // an image of ones.
    assert.deepEqual(
      [...t.forwardValidMask!(params, 6, 5).dataSync()],
      [...t.apply(tf.ones([4, 6, 5, 1]) as tf.Tensor4D, params).dataSync()],
    );
    // A known shift, by hand: one pixel down, one left.
    const one = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    assert.deepEqual([...t.apply(one, [[1, -1]]).dataSync()], [0, 0, 2, 0]);
  });
  assert.equal(shiftTransformPlugin.options.parse({}).max, 4);
  await trainTwo({ transform: { type: "shift", max: 3 } }, ["shift_transform.ts"]);
});

Deno.test("example dataset (pairs, on the file-dataset base): reads a folder of patients and trains", async () => {
  const root = `${tmp}/study`;
  const size = 16, slices = 2;
  for (let p = 0; p < 4; p++) {
    await Deno.mkdir(`${root}/p${p}`, { recursive: true });
    const image = new Float32Array(slices * size * size).map((_, i) => (i * (p + 1)) % 97);
    const mask = new Uint8Array(slices * size * size).map((_, i) =>
      (i % size) > 4 && (i % size) < 11 ? 1 : 0
    );
    const volume = (data: Float32Array | Uint8Array) => ({
      data,
      shape: [slices, size, size],
      spacing: [2, 1, 1],
    });
    await writeNifti(`${root}/p${p}/image.nii.gz`, volume(image));
    await writeNifti(`${root}/p${p}/mask.nii.gz`, volume(mask));
  }
  const opts = pairsDataset.options.parse({
    root,
    size,
    split: { labeled: 1, unlabeled: 2, validation: 1 },
    cache: false,
  });
  const data = await pairsDataset.load(opts, { seed: 1, baseDir: ROOT });
  assert.deepEqual(data.classNames, ["background", "foreground"]);
  assert.equal(data.labeled.count, slices);
  assert.equal(data.unlabeled.count, 2 * slices);
  assert.equal(data.validation.length, 1);
  assert.deepEqual(data.validation[0].shape, [slices, size, size]);
  assert.ok(data.labeled.labels!.includes(1));
  assert.deepEqual(pairsDataset.access!(opts, { baseDir: ROOT, tmpDir: "/tmp" }).read, [root]);
  await trainTwo({
    dataset: {
      type: "pairs",
      root,
      size,
      split: { labeled: 1, unlabeled: 2, validation: 1 },
      cache: false,
    },
  }, ["pairs_dataset.ts"]);
});

Deno.test("example model (tiny-fcn): per-group batch norm, running statistics, scoped names; trains with a mean teacher", async () => {
  const opts = tinyFcnModel.options.parse({ width: 4 });
  const before = tf.memory().numTensors;
  const ctx = { inChannels: 1, numClasses: 3, seed: 2, name: "student" };
  const a = tinyFcnModel.create(opts, { ...ctx, scope: "one/" });
  const b = tinyFcnModel.create(opts, { ...ctx, scope: "two/" }); // same keys, another run
  try {
    assert.deepEqual([...a.trainable.keys()], [...b.trainable.keys()]);
    assert.ok([...a.trainable.keys()].every((k) => k.startsWith("student/")));
    assert.equal(a.trainable.get("student/head/bias")!.name, "one/student/head/bias");
    tf.tidy(() => {
      const x = tf.randomNormal([5, 8, 8, 1], 0, 1, "float32", 7) as tf.Tensor4D;
      const [x1, x2] = tf.split(x, [2, 3]) as tf.Tensor4D[];
      const alone = tf.concat([a.apply(x1, { training: true }), a.apply(x2, { training: true })]);
      const grouped = a.apply(x, { training: true, groups: [2, 3] });
      assert.ok(tf.max(tf.abs(tf.sub(alone, grouped))).dataSync()[0] < 1e-4);
      // Training moved the running statistics; inference uses them and moves nothing.
      const stats = a.state.get("student/block0/movingMean")!;
      assert.ok(tf.max(tf.abs(stats)).dataSync()[0] > 0);
      const frozen = [...stats.dataSync()];
      const out = a.apply(x, { training: false });
      assert.deepEqual(out.shape, [5, 8, 8, 3]);
      assert.deepEqual([...stats.dataSync()], frozen);
    });
  } finally {
    a.dispose();
    b.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  await trainTwo(
    { model: { type: "tiny-fcn", width: 4 }, regularizers: [{ type: "mean-teacher" }] },
    ["tiny_model.ts"],
  );
});
