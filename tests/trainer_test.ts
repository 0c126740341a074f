import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { Trainer } from "../core/trainer.ts";
import { learningRate } from "../core/optimizer.ts";
import { loadCheckpoint } from "../core/checkpoint.ts";
import { diceScores } from "../core/metrics.ts";
import { tinyRecipe } from "./_tiny.ts";
import { assertClose } from "./_helpers.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { losses as lossRegistry } from "../core/loss.ts";
import { z } from "../deps.ts";

// The trainer registers no plugins: the built-ins come from here.
registerBuiltins();

async function losses(seed: number, steps: number): Promise<number[][]> {
  const trainer = await Trainer.create(tinyRecipe({ seed }), {
    out: null,
    progress: false,
    log: () => {},
  });
  try {
    const out: number[][] = [];
    for (let i = 0; i < steps; i++) {
      const v = await trainer.step();
      out.push([v.loss, v.sup, v.mi, v.kl]);
    }
    return out;
  } finally {
    trainer.dispose();
  }
}

Deno.test("the same seed on the same backend gives the same loss sequence", async () => {
  const a = await losses(5, 3);
  const b = await losses(5, 3);
  assert.deepEqual(a, b);
  const c = await losses(6, 3);
  assert.notDeepEqual(a, c);
});

Deno.test("a training step leaks no tensors", async () => {
  const trainer = await Trainer.create(tinyRecipe(), { out: null, progress: false, log: () => {} });
  try {
    await trainer.step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await trainer.step();
    await trainer.evaluate();
    assert.equal(tf.memory().numTensors, before);
  } finally {
    trainer.dispose();
  }
});

Deno.test("a training step leaks no tensors with the fused losses (cpu) and with readback: log", async () => {
  const trainer = { iterations: 4, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 };
  for (
    const extra of [
      { backend: "cpu" }, // the fused KL, cross-entropy and softmax kernels run on cpu
      { trainer: { ...trainer, readback: "log" } }, // steps queued on the device, then read
    ]
  ) {
    const t = await Trainer.create(tinyRecipe(extra), {
      out: null,
      progress: false,
      log: () => {},
    });
    try {
      await t.step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 2; i++) await t.queueStep();
      await t.flushSteps();
      await t.step();
      assert.equal(tf.memory().numTensors, before, JSON.stringify(extra));
    } finally {
      t.dispose();
    }
  }
});

Deno.test("disposing a trainer frees every tensor it made", async () => {
  const before = tf.memory().numTensors;
  const trainer = await Trainer.create(tinyRecipe(), { out: null, progress: false, log: () => {} });
  await trainer.step();
  trainer.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("partial supervision computes no unlabeled terms", async () => {
  const trainer = await Trainer.create(tinyRecipe({ regularizers: [] }), {
    out: null,
    progress: false,
    log: () => {},
  });
  try {
    const v = await trainer.step();
    assert.deepEqual(Object.keys(v).sort(), ["loss", "lr", "sup"]);
    assert.equal(v.loss, v.sup);
  } finally {
    trainer.dispose();
  }
});

Deno.test("the total loss is sup + lambda * sum(weight * term)", async () => {
  const recipe = tinyRecipe({
    lambda: 0.3,
    regularizers: [{ type: "mi", weight: 2 }, { type: "kl", weight: 0.5 }],
  });
  const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
  try {
    const v = await trainer.step();
    assertClose(v.loss, v.sup + 0.3 * (2 * v.mi + 0.5 * v.kl), 1e-5);
  } finally {
    trainer.dispose();
  }
});

Deno.test("training on the phantom lowers the supervised loss", async () => {
  const recipe = tinyRecipe({
    regularizers: [],
    augmentation: { rotation: 0 },
    trainer: { iterations: 30, labeledBatch: 4, unlabeledBatch: 2 },
    optimizer: { lr: 0.01 },
  });
  const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
  try {
    const first: number[] = [], last: number[] = [];
    for (let i = 0; i < 30; i++) {
      const v = await trainer.step();
      if (i < 3) first.push(v.sup);
      if (i >= 27) last.push(v.sup);
    }
    const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    assert.ok(mean(last) < 0.7 * mean(first), `sup ${mean(first)} -> ${mean(last)}`);
  } finally {
    trainer.dispose();
  }
});

Deno.test("a run writes the recipe, metrics, checkpoints and summary", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const trainer = await Trainer.create(tinyRecipe(), {
    out,
    progress: false,
    log: () => {},
    resolved: { method: "ours-kl" },
  });
  try {
    const summary = await trainer.run();
    for (
      const f of [
        "recipe.yaml",
        "splits.json",
        "metrics.jsonl",
        "latest.ckpt",
        "best.ckpt",
        "summary.json",
      ]
    ) {
      await Deno.stat(`${out}/${f}`);
    }
    const written = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
    assert.deepEqual(written.dice, summary.dice);
    assert.deepEqual(Object.keys(written.dice), ["RV", "Myo", "LV"]);
    for (const k of ["method", "dataset", "seed", "iterations", "dice_mean"]) {
      assert.ok(k in written, k);
    }
    // where the time went: training steps, validations, data, and the wall clock over all of it
    const times = ["seconds_train", "seconds_validation", "seconds_data", "seconds_wall"];
    for (const k of times) assert.ok(written[k] >= 0, `${k} = ${written[k]}`);
    assert.ok(written.seconds_train > 0 && written.seconds_validation > 0);
    assert.ok(
      written.seconds_wall + 0.02 >=
        written.seconds_train + written.seconds_validation + written.seconds_data,
      JSON.stringify(written),
    );
    assert.equal(written.iterations, 4);
    const lines = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    const steps = lines.filter((l) => "loss" in l);
    assert.deepEqual(steps.map((l) => l.iteration), [1, 2, 3, 4]);
    for (const l of steps) {
      for (const k of ["sup", "mi", "kl", "lr", "seconds_train", "seconds_wall"]) {
        assert.ok(k in l, k);
      }
    }
    assert.equal(lines.filter((l) => "val_dice_mean" in l).length, 2);
    const ckpt = await loadCheckpoint<{ iteration: number }>(`${out}/latest.ckpt`);
    assert.equal(ckpt.meta.iteration, 4);
    assert.ok(ckpt.tensors.size > trainer.model.trainable.size);
    // the mean Dice is the mean of the per-class Dice
    const vals = Object.values(summary.dice);
    assertClose(summary.dice_mean, vals.reduce((a, b) => a + b, 0) / vals.length, 1e-12);
  } finally {
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the final weights are validated once (each network once with a mean teacher)", async () => {
  for (const teacher of [false, true]) {
    const trainer = await Trainer.create(
      tinyRecipe(
        teacher ? { regularizers: [{ type: "mean-teacher", weight: 1 }], method: "mt" } : {},
      ),
      { out: null, progress: false, log: () => {} },
    );
    try {
      const calls: string[] = [];
      const evaluate = trainer.evaluate.bind(trainer);
      trainer.evaluate = (split, model, options) => {
        const m = model ?? trainer.evaluationModel();
        calls.push(`${trainer.iteration}:${m === trainer.model ? "student" : "teacher"}`);
        return evaluate(split, model, options);
      };
      const summary = await trainer.run();
      // validateEvery 2 of 4 iterations: at 2 and at 4; the summary reuses the one at 4
      assert.deepEqual(
        calls,
        teacher ? ["2:teacher", "4:teacher", "4:student"] : ["2:student", "4:student"],
      );
      assert.equal(summary.evaluated, teacher ? "teacher" : "student");
      assert.equal(summary.student !== undefined, teacher);
    } finally {
      trainer.dispose();
    }
  }
});

Deno.test("resuming from a checkpoint continues the same loss sequence", async () => {
  const dir = await Deno.makeTempDir();
  const opts = { progress: false, log: () => {} };
  const full = await Trainer.create(tinyRecipe(), { ...opts, out: null });
  const expected: number[] = [];
  for (let i = 0; i < 4; i++) expected.push((await full.step()).loss);
  full.dispose();
  const first = await Trainer.create(tinyRecipe(), { ...opts, out: `${dir}/a` });
  await first.step();
  await first.step();
  await first.saveCheckpoint("latest.ckpt");
  first.dispose();
  const second = await Trainer.create(tinyRecipe(), { ...opts, out: null });
  await second.loadCheckpoint(`${dir}/a/latest.ckpt`);
  assert.equal(second.iteration, 2);
  const resumed = [(await second.step()).loss, (await second.step()).loss];
  second.dispose();
  assert.deepEqual(resumed, expected.slice(2));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("learningRate() follows the constant, step and cosine schedules with warm-up", () => {
  const base = { warmup: 0, gamma: 0.1, minLr: 0 };
  assert.equal(learningRate(1, { ...base, type: "constant" }, 50, 100), 1);
  assert.equal(learningRate(1, { ...base, type: "step", stepSize: 10 }, 25, 100), 0.1 ** 2);
  assertClose(learningRate(1, { ...base, type: "cosine" }, 50, 100), 0.5, 1e-12);
  assertClose(learningRate(1, { ...base, type: "cosine", minLr: 0.2 }, 100, 100), 0.2, 1e-12);
  assertClose(learningRate(1, { ...base, type: "constant", warmup: 10 }, 4, 100), 0.5, 1e-12);
});

Deno.test("diceScores() follows the definition and the empty-case rule", () => {
  // class 1: pred {0,1}, truth {1,2} -> 2*1/4; class 2: pred {}, truth {} -> 1 (both empty);
  // class 3: pred {3}, truth {} -> 0
  const pred = new Uint8Array([1, 1, 0, 3]);
  const truth = new Uint8Array([0, 1, 1, 0]);
  assert.deepEqual(diceScores(pred, truth, 4), [0.5, 1, 0]);
});

Deno.test("the trainer takes its supervised loss from the losses registry", async () => {
  lossRegistry.register({
    id: "test-constant-loss",
    description: "0.25 + 0 * logits, to see which loss the trainer ran",
    options: z.object({ value: z.number().default(0.25) }).strict(),
    create: (o: { value: number }) => (logits: tf.Tensor4D) =>
      tf.add(tf.mul(tf.mean(logits), 0), o.value) as tf.Scalar,
  });
  try {
    const recipe = tinyRecipe({ supervised: { type: "test-constant-loss", value: 0.5 } });
    const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
    try {
      const v = await trainer.step();
      assertClose(v.sup, 0.5, 1e-6);
    } finally {
      trainer.dispose();
    }
    for (const type of ["dice", "dice-ce"]) {
      const t = await Trainer.create(tinyRecipe({ supervised: { type } }), {
        out: null,
        progress: false,
        log: () => {},
      });
      try {
        const v = await t.step();
        assert.ok(Number.isFinite(v.sup) && v.sup > 0, `${type}: ${v.sup}`);
      } finally {
        t.dispose();
      }
    }
  } finally {
    lossRegistry.unregister("test-constant-loss");
  }
});
