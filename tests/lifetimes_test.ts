/**
 * Trainer lifetimes: a failed `Trainer.create` leaves the process clean, two trainers live side
 * by side (their variables scoped per trainer), and checkpoints name variables without the scope.
 */
import assert from "node:assert/strict";
import { tf, z } from "../deps.ts";
import { loadCheckpoint } from "../core/checkpoint.ts";
import { UserError } from "../core/errors.ts";
import { regularizers } from "../core/regularizer.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { tinyRecipe } from "./_tiny.ts";

registerBuiltins();
const quiet = { progress: false, log: () => {} };

// A regularizer whose create throws after the student exists.
if (!regularizers.has("test-throws-on-create")) {
  regularizers.register({
    id: "test-throws-on-create",
    description: "test only: create throws",
    options: z.object({}).strict(),
    create: () => {
      throw new UserError("test-throws-on-create: refused");
    },
  });
}

/** Names of the tfjs variables alive now. */
function liveVariables(): string[] {
  return Object.keys(tf.engine().registeredVariables).sort();
}

/** A first trainer warms the backend up (kernels, caches) before tensors are counted. */
async function warmUp(): Promise<void> {
  const t = await Trainer.create(tinyRecipe(), { ...quiet, out: null });
  await t.step();
  t.dispose();
}

Deno.test("a create that fails after building the model frees it, and the next create works", async () => {
  await warmUp();
  const tensors = tf.memory().numTensors;
  const variables = liveVariables();
  // A regularizer whose create throws (a mean teacher built its teacher before it).
  await assert.rejects(
    () =>
      Trainer.create(
        tinyRecipe({
          regularizers: [{ type: "mean-teacher" }, { type: "test-throws-on-create" }],
        }),
        { ...quiet, out: null },
      ),
    /test-throws-on-create: refused/,
  );
  assert.deepEqual(liveVariables(), variables);
  assert.equal(tf.memory().numTensors, tensors);
  // An unwritable run folder.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "not a folder");
    await assert.rejects(
      () => Trainer.create(tinyRecipe(), { ...quiet, out: `${dir}/file/run` }),
      /Cannot write the run directory/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(liveVariables(), variables);
  assert.equal(tf.memory().numTensors, tensors);
  // The same recipe now builds and trains.
  const trainer = await Trainer.create(
    tinyRecipe({ regularizers: [{ type: "mean-teacher" }] }),
    { ...quiet, out: null },
  );
  try {
    const values = await trainer.step();
    assert.ok(Number.isFinite(values.loss));
  } finally {
    trainer.dispose();
  }
  assert.deepEqual(liveVariables(), variables);
  assert.equal(tf.memory().numTensors, tensors);
});

Deno.test("two trainers live in one process: both step, both dispose, no tensor leaks", async () => {
  await warmUp();
  const tensors = tf.memory().numTensors;
  const variables = liveVariables();
  const a = await Trainer.create(tinyRecipe({ regularizers: [{ type: "mean-teacher" }] }), {
    ...quiet,
    out: null,
  });
  const b = await Trainer.create(tinyRecipe({ seed: 4 }), { ...quiet, out: null });
  try {
    // Their tfjs variables are distinct (scoped), their checkpoint names the same.
    const aNames = [...a.model.trainable.values()].map((v) => v.name);
    const bNames = [...b.model.trainable.values()].map((v) => v.name);
    assert.equal(aNames.filter((n) => bNames.includes(n)).length, 0);
    assert.deepEqual([...a.model.trainable.keys()], [...b.model.trainable.keys()]);
    const before = [...b.model.trainable.values()][0].dataSync().slice();
    for (let i = 0; i < 2; i++) {
      assert.ok(Number.isFinite((await a.step()).loss));
      assert.ok(Number.isFinite((await b.step()).loss));
    }
    // Each stepped its own weights.
    assert.notDeepEqual([...[...b.model.trainable.values()][0].dataSync()], [...before]);
    assert.equal(a.iteration, 2);
    assert.equal(b.iteration, 2);
  } finally {
    a.dispose();
    b.dispose();
  }
  assert.deepEqual(liveVariables(), variables);
  assert.equal(tf.memory().numTensors, tensors);
});

Deno.test("checkpoints name variables without the trainer's scope, and load into another trainer", async () => {
  const dir = await Deno.makeTempDir();
  const recipe = tinyRecipe({ regularizers: [{ type: "mean-teacher" }] });
  const a = await Trainer.create(recipe, { ...quiet, out: `${dir}/a` });
  const b = await Trainer.create(recipe, { ...quiet, out: null });
  try {
    await a.step();
    await a.saveCheckpoint("latest.ckpt");
    const ckpt = await loadCheckpoint(`${dir}/a/latest.ckpt`);
    const names = [...ckpt.tensors.keys()];
    assert.ok(names.includes("student/head/bias"), names.slice(0, 5).join(", "));
    assert.ok(names.includes("adam/m/student/head/bias"));
    assert.ok(names.includes("mean-teacher/teacher/head/bias"));
    assert.ok(names.every((n) => !/^run\d+\//.test(n) && !n.includes("/run")), names.join(" "));
    // The scope is in the tfjs names only.
    assert.match(a.model.trainable.get("student/head/bias")!.name, /^run\d+\/student\/head\/bias$/);
    await b.loadCheckpoint(`${dir}/a/latest.ckpt`);
    assert.equal(b.iteration, 1);
    for (const [name, v] of a.model.trainable) {
      assert.deepEqual([...b.model.trainable.get(name)!.dataSync()], [...v.dataSync()], name);
    }
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second mean teacher in one run is a user error that names the model", async () => {
  const before = liveVariables();
  await assert.rejects(
    () =>
      Trainer.create(
        tinyRecipe({
          regularizers: [{ type: "mean-teacher" }, { type: "mean-teacher", name: "mt2" }],
        }),
        { ...quiet, out: null },
      ),
    (e: unknown) =>
      e instanceof UserError && /second model named "teacher".*mean-teacher/.test(e.message),
  );
  assert.deepEqual(liveVariables(), before);
});
