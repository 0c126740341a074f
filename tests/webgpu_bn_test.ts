/**
 * The fused batch norm + ReLU on `webgpu` (runtime/kernels/webgpu_bn.ts) against the `cpu`
 * backend's kernel (float64 sums): `y`, the mean and variance, and the gradients in `x`,
 * `gamma` and `beta`, on odd shapes (3 x 7 x 5 x 3, groups [1, 2], ReLU on and off; 70
 * channels: two channel tiles) and a large batch whose values are 10 +- 1 (8 x 128 x 128 x 16,
 * groups [4, 4]: 65,536 pixels per group); the GPU programs per pass; and that `kernels:
 * builtin` keeps tfjs's composition. Skipped, with one line saying why, without an adapter.
 *
 * The numbers come from `_webgpu_bn_checks.ts`, run in a child process with a copy of
 * deno.lock, as `webgpu_test.ts` does. Tolerance: 1e-4 of the reference's largest value
 * (measured on lavapipe: <= 1.6e-6, the large case's dbeta; the odd shapes <= 2e-7).
 */
import assert from "node:assert/strict";
import type { WebgpuBnChecks } from "./_webgpu_bn_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const TOLERANCE = 1e-4;
const OUTPUTS = ["y", "mean", "variance", "dx", "dgamma", "dbeta"];

const { checks: bnChecks, gpuTest } = await webgpuChecks<WebgpuBnChecks>(
  "_webgpu_bn_checks.ts",
  "webgpu",
  "webgpu batch-norm",
);

gpuTest("the fused batch norm + ReLU and its three gradients match the cpu backend", async () => {
  const c = await bnChecks();
  console.log(`adapter: ${c.adapter}; ${c.seconds} s`);
  assert.equal(c.cases.length, 10);
  for (const k of c.cases) {
    console.log(`${k.name}: ${k.errors.map((e) => e.toExponential(1)).join(" ")}`);
    k.errors.forEach((e, i) =>
      assert.ok(e <= TOLERANCE, `${k.name}: ${OUTPUTS[i]} relative error ${e.toExponential(2)}`)
    );
  }
});

gpuTest(
  "a fused batch norm is 2 GPU programs forward and 2 backward (3 on 8 storage buffers), only with custom",
  async () => {
    const c = await bnChecks();
    const backward = c.storageBuffers >= 11 ? 2 : 3;
    assert.deepEqual(c.programs, { MiSslBatchNormRelu: 2, MiSslBatchNormReluGrad: backward });
    assert.deepEqual(c.programs3, { MiSslBatchNormRelu: 2, MiSslBatchNormReluGrad: 3 });
    // the U-Net takes the fused kernel on webgpu with kernels: custom, tfjs's ops with builtin
    assert.deepEqual(c.available, { custom: true, builtin: false });
  },
);

gpuTest(
  "a U-Net's training forward pass on webgpu: the cpu's logits and running statistics",
  async () => {
    const { unet } = await bnChecks();
    const names = Object.keys(unet.errors);
    // 7 batch norms (U-Net base 4, depth 2), each a running mean and variance, and the logits
    assert.equal(names.length, 15, names.join(", "));
    for (const [name, e] of Object.entries(unet.errors)) {
      assert.ok(e <= TOLERANCE, `${name}: relative error ${e.toExponential(2)}`);
    }
    assert.ok(unet.moved > 1e-3, `the running statistics hardly moved (${unet.moved})`);
    // fused: one MiSslBatchNormRelu and one MiSslBnRunningStats per layer, nothing composed
    assert.equal(unet.kernels.MiSslBatchNormRelu, 7);
    assert.equal(unet.kernels.MiSslBnRunningStats, 7);
    for (const composed of ["Mean", "Multiply", "Relu", "Sub"]) {
      assert.equal(unet.kernels[composed], undefined, `${composed} ran`);
    }
  },
);
