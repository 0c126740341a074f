/**
 * The fused losses on `webgpu` (runtime/kernels/webgpu_kl.ts, webgpu_softmax_ce.ts,
 * webgpu_softmax.ts) against tfjs's composed ops on `cpu`: the KL consistency, the softmax
 * cross-entropy and the softmax, values and gradients, on odd shapes, every kind of mask (none,
 * 0/1, all zero, weights), maps with zeros and values equal to `eps`, labels out of range, and two
 * cases over 65,535 pixels (more than one partial sum per thread); 2 GPU programs forward and 1
 * per gradient (the softmax 1 and 1); bit-identical results on two runs; and `kernels: builtin`
 * keeps tfjs's composition. Skipped, with one line saying why, without an adapter. The numbers
 * come from `_webgpu_loss_checks.ts`, run in a child process with a copy of deno.lock.
 * Tolerance: 1e-5 of the reference's largest value.
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

gpuTest(
  "the fused KL, cross-entropy, softmax and their gradients match cpu's composed ops",
  async () => {
    const c = await checks();
    console.log(`adapter: ${c.adapter}; ${c.seconds} s`);
    assert.equal(c.cases.length, 32); // 14 each for the KL and the cross-entropy, 4 for the softmax
    for (const k of c.cases) {
      // JSON writes a non-finite error (NaN or infinite values) as null
      const errors = k.errors.map((e) => e ?? Infinity);
      console.log(`${k.name}: ${errors.map((e) => e.toExponential(1)).join(" ")}`);
      errors.forEach((e, i) =>
        assert.ok(e <= TOLERANCE, `${k.name}: output ${i} relative error ${e.toExponential(2)}`)
      );
    }
    assert.ok(c.deterministic, "two runs of a large case differ");
  },
);

gpuTest("a fused loss is 2 GPU programs forward and 1 per gradient, only with custom", async () => {
  const c = await checks();
  assert.deepEqual(c.programs, {
    kl: { MiSslKlConsistencyMasked: 2, MiSslKlConsistencyGrad: 2 },
    ce: { MiSslSoftmaxCrossEntropyMasked: 2, MiSslSoftmaxCrossEntropyGrad: 1 },
    // the softmax runs twice (its values, and inside the gradient's function)
    softmax: { MiSslSoftmax: 2, MiSslSoftmaxGrad: 1 },
  });
  assert.deepEqual(c.available, { custom: true, builtin: false });
});
