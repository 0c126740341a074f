/**
 * The fused mutual information on `webgpu` (the joints as one `Conv2DBackpropFilter`, the tail as
 * `MiSslMiFromJoint` and its gradient kernel, `runtime/kernels/webgpu_mi.ts`) against the
 * composed one on `cpu`: the value and the gradients in `p` and `q` on the 96 cases of
 * `_mi_cases.ts` (radius 0-2, odd shapes, mask, symmetrisation, marginal weight 1 and 0.5, exact
 * zeros), each within 1e-5 of the reference's largest value (measured on lavapipe: <= 5.3e-7);
 * the GPU programs of one forward + backward pass; and that `kernels: builtin` keeps the
 * composed version. Skipped, with one line saying why, without an adapter.
 *
 * The numbers come from `_webgpu_mi_checks.ts`, run in a child process with a copy of deno.lock,
 * as `webgpu_test.ts` does.
 */
import assert from "node:assert/strict";
import type { WebgpuMiChecks } from "./_webgpu_mi_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const TOLERANCE = 1e-5;

const { checks: miChecks, gpuTest } = await webgpuChecks<WebgpuMiChecks>(
  "_webgpu_mi_checks.ts",
  "webgpu",
  "webgpu mutual-information",
);

gpuTest(
  "the fused mutual information and its gradients match the composed one on cpu",
  async () => {
    const c = await miChecks();
    console.log(`adapter: ${c.adapter}; ${c.seconds} s`);
    assert.equal(c.cases.length, 96);
    let worst = 0;
    for (const k of c.cases) {
      k.errors.forEach((e, i) =>
        assert.ok(
          e <= TOLERANCE,
          `${k.name}: ${["value", "dp", "dq"][i]} relative error ${e.toExponential(2)}`,
        )
      );
      worst = Math.max(worst, ...k.errors);
    }
    console.log(`largest relative error ${worst.toExponential(1)}`);
  },
);

gpuTest(
  "the fused mutual information is 7 GPU programs forward + backward, only with custom",
  async () => {
    const c = await miChecks();
    console.log(`fused: ${JSON.stringify(c.fused)}; composed: ${JSON.stringify(c.composed)}`);
    assert.deepEqual(c.fused, {
      Multiply: 2, // the mask's gradient (its products forward ran on the CPU: tiny new inputs)
      Conv2DBackpropFilter: 1, // the joints
      MiSslMiFromJoint: 1,
      MiSslMiFromJointGrad: 1,
      Conv2D: 1, // d p
      Conv2DBackpropInput: 1, // d q
    });
    const composed = Object.values(c.composed).reduce((a, b) => a + b, 0);
    assert.ok(composed > 50, `the composed version ran only ${composed} programs`);
    assert.deepEqual(c.available, { custom: true, builtin: false });
  },
);
