/**
 * The `webgpu` backend (runtime/webgpu.ts) on whatever WebGPU adapter this machine has: in CI,
 * Mesa's software Vulkan ("lavapipe", `apt-get install mesa-vulkan-drivers`; `.ci/run` installs
 * it). Every training kernel's forward and gradient against the `cpu` backend; the tiny Ours (KL)
 * phantom run against `wasm` with the same seed; checkpoints written on one backend and resumed
 * on the other; a tensor over the adapter's buffer limit. Without WebGPU or an adapter these
 * tests are skipped, with one line saying why.
 *
 * The numbers come from `_webgpu_checks.ts`, run once in a child process with a copy of
 * deno.lock (importing tfjs-backend-webgpu here would add it to the project's lockfile).
 *
 * Tolerances (measured on lavapipe, Deno 2.9.6, tfjs 4.22.0, in the comments): kernels 1e-4 of
 * the reference's largest value (worst 1.3e-5, the MI value; gradients <= 1e-6); Adam 1e-5 (weights
 * 1.7e-7, moments 1.2e-7 after 3 steps over four odd sizes up to 8,388,617 values: tfjs's own
 * element-wise kernels are as far, 1.2e-7); losses 1e-4 absolute per term and iteration (about
 * 6e-6).
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import type { WebgpuChecks } from "./_webgpu_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const KERNEL_TOLERANCE = 1e-4;
const ADAM_TOLERANCE = 1e-5;
const LOSS_TOLERANCE = 1e-4;

const { checks: webgpuChecksResult, gpuTest } = await webgpuChecks<WebgpuChecks>(
  "_webgpu_checks.ts",
  "webgpu",
  "webgpu",
);

gpuTest("every training kernel's forward and gradients match the cpu backend", async () => {
  const c = await webgpuChecksResult();
  console.log(`adapter: ${c.adapter}; all checks in ${c.seconds} s`);
  assert.ok(c.kernels.length >= 20);
  for (const k of c.kernels) {
    const [forward, ...grads] = k.errors;
    assert.ok(
      forward <= KERNEL_TOLERANCE,
      `${k.name}: forward relative error ${forward.toExponential(2)}`,
    );
    grads.forEach((e, i) =>
      assert.ok(
        e <= KERNEL_TOLERANCE,
        `${k.name}: gradient of input ${i} relative error ${e.toExponential(2)}`,
      )
    );
  }
});

gpuTest("the fused Adam update matches the cpu backend's in one kernel call", async () => {
  const c = await webgpuChecksResult();
  console.log(`largest relative errors: ${JSON.stringify(c.adam)}`);
  for (const [k, e] of Object.entries(c.adam)) {
    assert.ok(e <= ADAM_TOLERANCE, `Adam (3 steps, odd sizes) ${k}: relative error ${e}`);
  }
  // one MiSslAdamMany call for all variables (webgpu_adam_test.ts counts its programs)
  assert.deepEqual(c.adamKernels, ["MiSslAdamMany"]);
  // kernels: builtin keeps tfjs's element-wise kernels
  assert.ok(
    !c.adamKernelsBuiltin.some((k) => k.startsWith("MiSslAdam")),
    c.adamKernelsBuiltin.join(", "),
  );
  assert.ok(c.adamKernelsBuiltin.length >= 20, c.adamKernelsBuiltin.join(", "));
});

/** Largest absolute difference of any loss term between two runs' iterations. */
function lossDifference(a: Record<string, number>[], b: Record<string, number>[]): number {
  assert.equal(a.length, b.length);
  let d = 0;
  a.forEach((row, i) => {
    for (const term of ["loss", "sup", "mi", "kl"]) {
      assert.ok(Number.isFinite(row[term]), `${term} at iteration ${i + 1}: ${row[term]}`);
      d = Math.max(d, Math.abs(row[term] - b[i][term]));
    }
  });
  return d;
}

gpuTest("an Ours (KL) phantom run has the losses of the wasm run with the same seed", async () => {
  const { phantom } = await webgpuChecksResult();
  assert.equal(phantom.webgpu.length, 4);
  const d = lossDifference(phantom.webgpu, phantom.wasm);
  console.log(`largest loss difference over 4 iterations: ${d.toExponential(2)}`);
  assert.ok(d <= LOSS_TOLERANCE, `losses differ by ${d}`);
  // and it trains: not the same numbers at every iteration
  assert.notEqual(phantom.webgpu[0].loss, phantom.webgpu[3].loss);
});

gpuTest(
  "a checkpoint written on webgpu resumes on wasm, and one written on wasm on webgpu",
  async () => {
    const { phantom, checkpoint } = await webgpuChecksResult();
    const tail = (rows: Record<string, number>[]) => rows.slice(2);
    // resumed at iteration 2: iterations 3 and 4 are those of the uninterrupted run (on either)
    for (const reference of [phantom.wasm, phantom.webgpu]) {
      const a = lossDifference(checkpoint.webgpuToWasm, tail(reference));
      const b = lossDifference(checkpoint.wasmToWebgpu, tail(reference));
      assert.ok(a <= LOSS_TOLERANCE, `webgpu -> wasm: losses differ by ${a}`);
      assert.ok(b <= LOSS_TOLERANCE, `wasm -> webgpu: losses differ by ${b}`);
    }
  },
);

gpuTest(
  "a tensor over the adapter's buffer limit ends in a UserError naming the limit and the recipe fields",
  async () => {
    const { limit } = await webgpuChecksResult();
    assert.equal(limit.name, "UserError", limit.message);
    assert.match(limit.message, /maxStorageBufferBindingSize/);
    for (
      const field of [
        "trainer.labeledBatch",
        "trainer.unlabeledBatch",
        "dataset.size",
        "model.base",
      ]
    ) {
      assert.ok(limit.message.includes(field), field);
    }
  },
);

// Found by the comparison above: tfjs-backend-cpu 4.22.0's ResizeNearestNeighborGrad reads dy at
// the input's batch stride, so every image after the first got the wrong gradient.
// runtime/kernels/cpu_fixes.ts replaces it; this runs with or without a GPU.
Deno.test("cpu backend: the gradient of nearest upsampling is right for every image of a batch", async () => {
  await initBackend("cpu");
  const [b, h, w, c] = [3, 3, 4, 2];
  const x = tf.randomUniform([b, h, w, c], -1, 1, "float32", 1) as tf.Tensor4D;
  for (const [alignCorners, halfPixelCenters] of [[false, false], [true, false], [false, true]]) {
    for (const size of [[6, 8], [5, 7]] as [number, number][]) {
      const dy = tf.randomUniform([b, ...size, c], -1, 1, "float32", 2);
      const f = (t: tf.Tensor) =>
        tf.image.resizeNearestNeighbor(t as tf.Tensor4D, size, alignCorners, halfPixelCenters);
      const dx = tf.grad(f)(x, dy);
      // the gradient is the adjoint of the forward map: <f(x), dy> = <x, f'(dy)> for any x
      const lhs = (await tf.sum(tf.mul(f(x), dy)).data())[0];
      const rhs = (await tf.sum(tf.mul(x, dx)).data())[0];
      assert.ok(
        Math.abs(lhs - rhs) < 1e-4,
        `alignCorners ${alignCorners}, halfPixelCenters ${halfPixelCenters}, ${size}: ${lhs} vs ${rhs}`,
      );
    }
  }
  // x2 without options: each input pixel collects its 2x2 block, image by image
  const dy = tf.randomUniform([b, 2 * h, 2 * w, c], -1, 1, "float32", 3);
  const dx = await tf.grad((t) => tf.image.resizeNearestNeighbor(t as tf.Tensor4D, [2 * h, 2 * w]))(
    x,
    dy,
  ).data();
  const v = await dy.data();
  for (let n = 0; n < b; n++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        for (let k = 0; k < c; k++) {
          let s = 0;
          for (const [di, dj] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
            s += v[((n * 2 * h + 2 * i + di) * 2 * w + 2 * j + dj) * c + k];
          }
          assert.ok(Math.abs(dx[((n * h + i) * w + j) * c + k] - s) < 1e-5, `image ${n}`);
        }
      }
    }
  }
});
