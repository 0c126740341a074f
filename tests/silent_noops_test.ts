/**
 * No silent no-ops: regularizers that would never run are an error with the reason, a
 * regularizer named like a key the trainer writes to metrics.jsonl is rejected, and the list of
 * those keys is what the trainer writes.
 */
import assert from "node:assert/strict";
import { tf, z } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { isReservedMetricName, parseRecipe, RESERVED_METRIC_NAMES } from "../core/recipe.ts";
import { regularizers } from "../core/regularizer.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { TINY_DATASET, TINY_MODEL, tinyRecipe } from "./_tiny.ts";
import { useWasm } from "./_helpers.ts";

registerBuiltins();
await useWasm();
const quiet = { progress: false, log: () => {} };

/** The message of parsing `extra` over a tiny recipe, or "" when it parses. */
function problem(extra: Record<string, unknown>): string {
  try {
    parseRecipe({
      method: "x",
      dataset: TINY_DATASET,
      model: TINY_MODEL,
      trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 },
      ...extra,
    }, "<t>");
    return "";
  } catch (error) {
    assert.ok(error instanceof UserError, String(error));
    return error.message;
  }
}

Deno.test("regularizers with unlabeledBatch 0 are an error that says they would never run", () => {
  const message = problem({
    regularizers: [{ type: "kl" }, { type: "mi", name: "mi-a" }],
    trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 0 },
  });
  assert.match(
    message,
    /^Cannot load recipe "<t>": trainer\.unlabeledBatch: is 0, so the regularizers \(kl, mi-a\) would never run/,
  );
  // Without regularizers unlabeledBatch 0 is plain supervised training, and fine.
  assert.equal(problem({ trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 0 } }), "");
});

Deno.test("a regularizer named like a metrics key of the trainer is rejected", () => {
  for (const name of ["lr", "ramp", "iteration", "seconds", "loss", "sup", "val_dice_mean"]) {
    const message = problem({ regularizers: [{ type: "kl", name }] });
    assert.match(
      message,
      new RegExp(`regularizers\\[0\\]\\.name: regularizer name "${name}" is a key the trainer`),
      name,
    );
  }
  // By type too, when it has no name; prefixes are reserved.
  if (!regularizers.has("seconds_extra")) {
    regularizers.register({
      id: "seconds_extra",
      description: "test only",
      options: z.object({}).strict(),
      create: () => ({ id: "seconds_extra", needsUnlabeled: true, loss: () => tf.scalar(0) }),
    });
  }
  assert.match(
    problem({ regularizers: [{ type: "seconds_extra" }] }),
    /regularizers\[0\]\.type: regularizer name "seconds_extra" is a key the trainer/,
  );
  assert.equal(problem({ regularizers: [{ type: "seconds_extra", name: "extra" }] }), "");
  assert.ok(isReservedMetricName("val_anything"));
  assert.ok(!isReservedMetricName("kl"));
});

Deno.test("regularizers none of which needs the unlabeled batch are an error at create", async () => {
  if (!regularizers.has("test-labeled-only")) {
    regularizers.register({
      id: "test-labeled-only",
      description: "test only: declares needsUnlabeled false",
      options: z.object({}).strict(),
      create: () => ({
        id: "test-labeled-only",
        needsUnlabeled: false,
        loss: (ctx) => tf.mean(ctx.logitsLabeled) as tf.Scalar,
      }),
    });
  }
  const before = tf.memory().numTensors;
  await assert.rejects(
    () =>
      Trainer.create(tinyRecipe({ regularizers: [{ type: "test-labeled-only" }] }), {
        ...quiet,
        out: null,
      }),
    (e: unknown) =>
      e instanceof UserError &&
      /\(test-labeled-only\) would never run: none declares needsUnlabeled/.test(e.message),
  );
  assert.equal(tf.memory().numTensors, before);
  // Beside one that needs it, it runs (the step computes the unlabeled predictions anyway).
  const trainer = await Trainer.create(
    tinyRecipe({ regularizers: [{ type: "kl" }, { type: "test-labeled-only" }] }),
    { ...quiet, out: null },
  );
  try {
    const values = await trainer.step();
    assert.ok("test-labeled-only" in values && Number.isFinite(values["test-labeled-only"]));
  } finally {
    trainer.dispose();
  }
});

Deno.test("every key the trainer writes to metrics.jsonl is reserved", async () => {
  const dir = await Deno.makeTempDir();
  const recipe = tinyRecipe({
    rampUp: { type: "sigmoid", iterations: 2 },
    regularizers: [{ type: "kl" }, { type: "mean-teacher" }],
    trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 1 },
  });
  const trainer = await Trainer.create(recipe, { ...quiet, out: `${dir}/run` });
  try {
    await trainer.run();
    const lines = (await Deno.readTextFile(`${dir}/run/metrics.jsonl`)).trim().split("\n");
    const keys = new Set(lines.flatMap((l) => Object.keys(JSON.parse(l))));
    for (const name of ["kl", "mean-teacher"]) assert.ok(keys.delete(name), name);
    for (const key of keys) assert.ok(RESERVED_METRIC_NAMES.includes(key), key);
    for (const key of ["iteration", "loss", "sup", "lr", "ramp", "val_dice_mean"]) {
      assert.ok(keys.has(key), key);
    }
  } finally {
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
