/**
 * The fused losses on `webgpu` (runtime/kernels/webgpu_kl.ts, webgpu_softmax_ce.ts) against
 * tfjs's composed ops on `cpu`: the KL consistency and the softmax cross-entropy, values and
 * gradients, on odd shapes, every kind of mask (none, 0/1, all zero, weights), maps with zeros
 * and values equal to `eps`, labels out of range, and two cases over 65,535 pixels (more
 * than one partial sum per thread); 2 GPU programs forward and 1 per gradient; bit-identical
 * results on two runs; and `kernels: builtin` keeps tfjs's composition. Skipped, with one line
 * saying why, without an adapter. The numbers come from `_webgpu_loss_checks.ts`, run in a
 * child process with a copy of deno.lock. Tolerance: 1e-5 of the reference's largest value.
 */
import assert from "node:assert/strict";
import type { WebgpuLossChecks } from "./_webgpu_loss_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const TOLERANCE = 1e-5;

const { checks, gpuTest } = await webgpuChecks<WebgpuLossChecks>(
  "_webgpu_loss_checks.ts",
  "webgpu",
  "webgpu loss",
);

gpuTest("the fused KL and cross-entropy and their gradients match cpu's composed ops", async () => {
  const c = await checks();
  console.log(`adapter: ${c.adapter}; ${c.seconds} s`);
  assert.equal(c.cases.length, 28);
  for (const k of c.cases) {
    console.log(`${k.name}: ${k.errors.map((e) => e.toExponential(1)).join(" ")}`);
    k.errors.forEach((e, i) =>
      assert.ok(e <= TOLERANCE, `${k.name}: output ${i} relative error ${e.toExponential(2)}`)
    );
  }
  assert.ok(c.deterministic, "two runs of a large case differ");
});

gpuTest("a fused loss is 2 GPU programs forward and 1 per gradient, only with custom", async () => {
  const c = await checks();
  assert.deepEqual(c.programs, {
    kl: { MiSslKlConsistencyMasked: 2, MiSslKlConsistencyGrad: 2 },
    ce: { MiSslSoftmaxCrossEntropyMasked: 2, MiSslSoftmaxCrossEntropyGrad: 1 },
  });
  assert.deepEqual(c.available, { custom: true, builtin: false });
});
