/**
 * The fused Adam on `webgpu` (runtime/kernels/webgpu_adam.ts, `MiSslAdamMany`) on whatever
 * WebGPU adapter this machine has (lavapipe in CI): 3 steps of `Adam` against the `cpu` backend,
 * weight decay on and off, over six variables of odd sizes (0 to 8,388,617 values); the GPU
 * programs of a step (two variables a program where the device allows 8 storage buffers a
 * shader stage, as tfjs asks); and that updating in place leaves alone the tensors a variable or
 * moment shares its data with, leaking nothing. Skipped, with one line saying why, without
 * WebGPU or an adapter.
 *
 * The numbers come from `_webgpu_adam_checks.ts`, run once in a child process with a copy of
 * deno.lock (as `webgpu_test.ts` does). Measured on lavapipe: weights 7.5e-7, moments 2.4e-7.
 */
import assert from "node:assert/strict";
import type { WebgpuAdamChecks } from "./_webgpu_adam_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const TOLERANCE = 1e-5;

const { checks: adamChecks, gpuTest } = await webgpuChecks<WebgpuAdamChecks>(
  "_webgpu_adam_checks.ts",
  "webgpu Adam",
  "webgpu Adam",
);

gpuTest("3 steps match the cpu backend, weight decay on and off", async () => {
  const c = await adamChecks();
  console.log(`adapter: ${c.adapter}; ${c.seconds} s; errors ${JSON.stringify(c.errors)}`);
  assert.deepEqual(Object.keys(c.errors), ["wd=0", "wd=0.01"]);
  for (const [wd, errors] of Object.entries(c.errors)) {
    for (const [k, e] of Object.entries(errors)) {
      assert.ok(e <= TOLERANCE, `${wd}, ${k}: relative error ${e}`);
    }
  }
});

gpuTest(
  "a step is one kernel call, as many variables a GPU program as the adapter's limit allows",
  async () => {
    const c = await adamChecks();
    // runtime/webgpu.ts asks the device for the adapter's limit (tfjs alone asks for WebGPU's 8)
    assert.equal(c.maxStorageBuffers, c.adapterMaxStorageBuffers);
    // four storage buffers (w, g, m, v) a variable, at most 8 variables a program
    const perProgram = Math.min(8, Math.floor(c.maxStorageBuffers / 4));
    for (const [step, count] of [[c.step5, 5], [c.step68, 68]] as const) {
      assert.deepEqual(step.kernels, ["MiSslAdamMany"]);
      assert.equal(step.programs, Math.ceil(count / perProgram), `${count} variables`);
    }
    if (c.maxStorageBuffers >= 32) {
      // lavapipe (32), most GPUs' adapters: the U-Net 16x5's 68 variables in 9 programs
      assert.equal(c.step5.programs, 1);
      assert.equal(c.step68.programs, 9);
    }
  },
);

gpuTest("in place leaves shared data alone and leaks nothing", async () => {
  const c = await adamChecks();
  assert.equal(Object.keys(c.aliasing).length, 4);
  for (const [run, a] of Object.entries(c.aliasing)) {
    assert.equal(a.keptChanged, 0, `${run}: the tensor variable 0 was made from changed`);
    assert.equal(a.restoredChanged, 0, `${run}: the tensor a moment was assigned from changed`);
    assert.deepEqual(a.leaked, { tensors: 0, dataIds: 0 }, run);
  }
  // the same data as weights and gradient, one zeros tensor as both moments
  assert.ok(c.duplicates.error <= TOLERANCE, `duplicates: relative error ${c.duplicates.error}`);
  assert.equal(c.duplicates.inputsChanged, 0, "duplicates: an input changed");
});
