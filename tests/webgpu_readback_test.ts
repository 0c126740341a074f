/**
 * `trainer.readback` on `webgpu` (where `auto` is `log`): the checks of `readback_test.ts` on the
 * WebGPU adapter (lavapipe in CI), the update gated by the fused Adam's and running statistics'
 * gate inputs, and the kernels a gated step adds. Skipped, with one line saying why, without
 * WebGPU or an adapter. The numbers come from `_webgpu_readback_checks.ts`, run once in a child
 * process (`_webgpu_child.ts`).
 *
 * Tolerances: on webgpu two runs of the same recipe and mode differ where the gradient goes
 * through the warp (its gradient adds atomically, in any order: `webgpu_training.ts`), and Adam
 * turns a tiny difference of a near-zero gradient into a whole step, so the Ours (KL) runs are
 * compared within 1e-3 (measured on lavapipe, `step` against `log`: 1.2e-7 to 2.4e-7 in most runs,
 * 7.4e-5 once; `step` against `step` differs as much). Without a warp in the gradient (partial
 * supervision; the NaN plugin's recipe) webgpu runs are the same bit for bit, and so must `step`
 * and `log` be.
 */
import assert from "node:assert/strict";
import type { ReadbackChecks } from "./_readback_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";
import { assertNanGated, assertReads, assertSameMetrics, assertStop } from "./_readback_asserts.ts";

const SPREAD = 1e-3;

const { checks, gpuTest } = await webgpuChecks<
  ReadbackChecks & { adapter: string; seconds: number }
>("_webgpu_readback_checks.ts", "webgpu readback");

gpuTest("auto is log; log writes the metrics of step, one line per iteration", async () => {
  const c = await checks();
  console.log(
    `adapter: ${c.adapter}; ${c.seconds} s; Ours (KL) metrics ${c.metrics.maxDiff} ` +
      `(${c.metrics.worst}), supervised ${c.metricsSupervised.maxDiff}`,
  );
  assert.equal(c.auto, "log");
  assertSameMetrics(c.metricsSupervised, 0);
  assertSameMetrics(c.metrics, SPREAD);
});

gpuTest("a NaN step is gated on the device like a step skipped on the host", async () => {
  const c = await checks();
  console.log(
    `gated vs skipped ${c.nan.maxDiff}, changed by the bad step ${c.nan.changedByBadStep}`,
  );
  assertNanGated(c, 0);
});

gpuTest("nonFinite: stop names the first bad iteration", async () => {
  assertStop(await checks());
});

gpuTest("the loss is read once per logged iteration", async () => {
  assertReads(await checks());
});

gpuTest(
  "a gated step adds no per-layer programs (the gate is an input of the fused kernels)",
  async () => {
    const c = await checks();
    console.log(
      `kernels added ${c.kernels.added.join(", ")}; removed ${c.kernels.removed.join(", ")}`,
    );
    assert.ok(c.kernels.logHasAdamMany);
    // Identity: the deferred running statistics' placeholders (a reference each, no GPU program)
    for (const k of c.kernels.added.filter((k) => !k.startsWith("Identity"))) {
      const [, n] = k.split("x");
      assert.ok(Number(n) <= 2, `${k}: a gated step runs no kernel more than twice more`);
    }
    assert.ok(!c.kernels.added.some((k) => k.startsWith("Select")), "no tf.where per tensor");
  },
);
