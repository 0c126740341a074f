/**
 * `trainer.readback` (core/step_readback.ts, core/trainer.ts) on `wasm` with `log` forced (`auto`
 * is `step` there): the loss terms queued on the device and read once per logged iteration give
 * the same metrics.jsonl as reading every step; a step whose loss is NaN is gated on the device
 * (Adam's update, the running statistics) exactly as skipping it on the host does; `stop` names
 * the iteration; readbacks are counted. The same checks on webgpu: `webgpu_readback_test.ts`.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { parseRecipe } from "../core/recipe.ts";
import { readbackMode, StepQueue } from "../core/step_readback.ts";
import { readbackChecks } from "./_readback_checks.ts";
import { assertNanGated, assertReads, assertSameMetrics, assertStop } from "./_readback_asserts.ts";
import { TINY_DATASET, TINY_MODEL, tinyRecipe } from "./_tiny.ts";
import { Trainer } from "../core/trainer.ts";
import { registerTestPlugins } from "./_test_plugins.ts";

let result: ReturnType<typeof readbackChecks> | undefined;
const checks = () => result ??= readbackChecks("wasm");

Deno.test("readback: auto is step on wasm", async () => {
  assert.equal((await checks()).auto, "step");
});

Deno.test("readback: log writes the metrics of readback: step, one line per iteration", async () => {
  // the same update kernels in both modes here: bit for bit
  assertSameMetrics((await checks()).metrics, 0);
  assertSameMetrics((await checks()).metricsSupervised, 0);
});

Deno.test("readback: log gates a NaN step on the device like a step skipped on the host", async () => {
  assertNanGated(await checks(), 0);
});

Deno.test("readback: log with nonFinite: stop names the first bad iteration", async () => {
  assertStop(await checks());
});

Deno.test("readback: log reads the loss once per logged iteration", async () => {
  assertReads(await checks());
});

Deno.test("StepQueue reads every queued step in one readback, in order", async () => {
  const q = new StepQueue();
  const before = tf.memory().numTensors;
  q.push({ iteration: 0, names: ["loss", "a"], device: null, values: [1, 2], host: {}, times: {} });
  q.push({
    iteration: 1,
    names: ["loss", "a"],
    device: tf.tensor1d([3, NaN]),
    values: null,
    host: { lr: 0.1 },
    times: {},
  });
  q.push({
    iteration: 2,
    names: ["loss", "a", "b"],
    device: tf.tensor1d([5, 6, 7]),
    values: null,
    host: {},
    times: {},
  });
  let reads = 0;
  const proto = tf.Tensor.prototype as unknown as { data: (...a: unknown[]) => unknown };
  const data = proto.data;
  proto.data = function (this: unknown, ...a: unknown[]) {
    reads++;
    return data.apply(this, a);
  };
  let out;
  try {
    out = await q.read();
  } finally {
    proto.data = data;
  }
  assert.equal(reads, 1);
  assert.equal(q.size, 0);
  assert.deepEqual(out.map((s) => [s.iteration, s.values, s.deferred]), [
    [0, { loss: 1, a: 2 }, false],
    [1, { loss: 3, a: NaN }, true],
    [2, { loss: 5, a: 6, b: 7 }, true],
  ]);
  assert.deepEqual(out[1].host, { lr: 0.1 });
  assert.equal(tf.memory().numTensors, before, "the queued tensors are freed");
});

Deno.test("readbackMode: auto is log on webgpu with the fused Adam only; bad values are named", () => {
  const on = (backend: string, gatedOnDevice: boolean) => ({ backend, gatedOnDevice });
  assert.equal(readbackMode("auto", on("webgpu", true)), "log");
  assert.equal(readbackMode("auto", on("webgpu", false)), "step");
  assert.equal(readbackMode("auto", on("wasm", true)), "step");
  assert.equal(readbackMode("log", on("wasm", false)), "log");
  assert.equal(readbackMode("step", on("webgpu", true)), "step");
  assert.throws(
    () =>
      parseRecipe({
        method: "x",
        dataset: TINY_DATASET,
        model: TINY_MODEL,
        trainer: { iterations: 2, readback: "sometimes" },
      }, "<test>"),
    /trainer\.readback: expected one of "auto", "step", "log", got "sometimes"/,
  );
});

Deno.test("readback: log writes the metrics lines of steps not read yet when the run fails", async () => {
  registerTestPlugins();
  const dir = await Deno.makeTempDir();
  try {
    const r = tinyRecipe({
      backend: "wasm",
      regularizers: [{ type: "test-throw-at", at: 4 }],
      // checkpoint (and read) at 3; step 4 waits in the queue (logEvery 10) when step 5 fails
      trainer: {
        iterations: 6,
        labeledBatch: 2,
        unlabeledBatch: 2,
        validateEvery: 6,
        readback: "log",
        checkpointEvery: 3,
        logEvery: 10,
      },
    });
    const t = await Trainer.create(r, { progress: false, log: () => {}, out: `${dir}/run` });
    try {
      await assert.rejects(() => t.run(), /planted failure/);
    } finally {
      t.dispose();
    }
    const lines = (await Deno.readTextFile(`${dir}/run/metrics.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l)).filter((l) => "loss" in l);
    assert.deepEqual(lines.map((l) => l.iteration), [1, 2, 3, 4]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
