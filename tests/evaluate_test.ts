/**
 * core/evaluate.ts: the one inference path. `probabilities()` runs a few slices at a time and
 * gives softmax probabilities channels last; the labels are their first maximum; `eval --grid
 * source` resamples the probabilities its evaluation computed instead of running the network a
 * second time.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { saveCheckpoint } from "../core/checkpoint.ts";
import { argmaxLabels, probabilities } from "../core/evaluate.ts";
import type { SegmentationModel } from "../core/model.ts";
import { writeVolume } from "../io/volume.ts";

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
const DEPS = new URL("../deps.ts", import.meta.url).href;
const MODEL = new URL("../core/model.ts", import.meta.url).href;

/** A model whose logits are `x * k` for class k, counting its calls and the slices it saw. */
function countingModel(classes: number): SegmentationModel & { calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    trainable: new Map(),
    state: new Map(),
    paramCount: 0,
    apply: (x) => {
      calls.push(x.shape[0]);
      return tf.tidy(() => tf.mul(x, tf.range(0, classes).reshape([1, 1, 1, classes])));
    },
    dispose: () => {},
  };
}

Deno.test("probabilities() gives each slice's softmax channels last, eight slices at a time", async () => {
  await initBackend("wasm");
  const [n, h, w, classes] = [19, 3, 2, 3];
  const image = Float32Array.from({ length: n * h * w }, (_, i) => ((i * 7) % 11) / 5 - 1);
  const model = countingModel(classes);
  const before = tf.memory().numTensors;
  const p = await probabilities(model, { image, shape: [n, h, w] });
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");
  assert.deepEqual(model.calls, [8, 8, 3]);
  assert.equal(p.length, n * h * w * classes);
  for (let i = 0; i < image.length; i++) {
    // softmax of (0, x, 2x) by hand
    const e = [0, 1, 2].map((k) => Math.exp(k * image[i]));
    const sum = e[0] + e[1] + e[2];
    for (let k = 0; k < classes; k++) {
      assert.ok(Math.abs(p[i * classes + k] - e[k] / sum) < 1e-6, `voxel ${i} class ${k}`);
    }
  }
});

Deno.test("argmaxLabels() takes the first maximum of each voxel's probabilities", () => {
  const probs = Float32Array.from([0.2, 0.5, 0.3, 0.4, 0.4, 0.2, 0.1, 0.1, 0.8]);
  assert.deepEqual([...argmaxLabels(probs, 3)], [1, 0, 2]);
});

Deno.test("eval --export --grid source runs the network once per slice batch, not twice", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // a model without weights whose prediction is the intensity level; it logs each call
    await Deno.writeTextFile(
      `${dir}/levels.ts`,
      `import { tf, z } from "${DEPS}";
import { models } from "${MODEL}";
models.register({
  id: "levels-logged", description: "test only", options: z.object({}).strict(),
  create: (_o, context) => ({
    trainable: new Map(), state: new Map(), paramCount: 0,
    apply: (x) => tf.tidy(() => {
      console.error("levels-logged: apply of " + x.shape[0] + " slices");
      const c = context.numClasses;
      const levels = tf.tensor1d(Array.from({ length: c }, (_, i) => i / (c - 1)));
      return tf.mul(tf.square(tf.sub(x, levels)), -50);
    }),
    dispose: () => {},
  }),
});
`,
    );
    const shape: [number, number, number] = [12, 20, 9];
    const spacing = [1.5, 0.9, 3]; // the 3 mm axis is the slice axis: 9 slices of 16 x 16
    const label = Uint8Array.from({ length: 12 * 20 * 9 }, (_, i) => (i % 13 < 5 ? 1 : 0));
    for (const id of ["a", "b", "c"]) {
      await Deno.mkdir(`${dir}/data/images`, { recursive: true });
      await Deno.mkdir(`${dir}/data/labels`, { recursive: true });
      const image = Float32Array.from(label, (v, i) => 10 * v + (i % 7));
      await writeVolume(`${dir}/data/images/${id}.nii.gz`, { data: image, shape, spacing });
      await writeVolume(`${dir}/data/labels/${id}.nii.gz`, { data: label, shape, spacing });
    }
    const run = `${dir}/run`;
    await Deno.mkdir(run);
    await Deno.writeTextFile(
      `${run}/recipe.yaml`,
      `method: levels\nbackend: wasm\nplugins: [${dir}/levels.ts]\n` +
        `dataset: { type: folder, root: data, size: 16, classes: 2, cache: false, ` +
        `split: { labeled: 1, unlabeled: 1, validation: 1 } }\n` +
        `model: { type: levels-logged }\ntrainer: { iterations: 1 }\n`,
    );
    await Deno.writeTextFile(`${run}/run.json`, JSON.stringify({ baseDir: dir, recipe: null }));
    await saveCheckpoint(`${run}/best.ckpt`, {}, new Map());
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", CLI, "eval"]
        .concat([run, "--export", `${dir}/src`, "--grid", "source"]),
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    // one validation volume of 9 slices: 8 + 1, once (the export reuses the evaluation's)
    const calls = stderr.split("\n").filter((l) => l.startsWith("levels-logged: apply"));
    assert.deepEqual(calls, [
      "levels-logged: apply of 8 slices",
      "levels-logged: apply of 1 slices",
    ]);
    assert.equal([...Deno.readDirSync(`${dir}/src`)].length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
