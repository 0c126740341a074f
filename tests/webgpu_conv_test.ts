/**
 * The tiled WGSL convolutions (`runtime/kernels/webgpu_conv.ts`) on whatever WebGPU adapter this
 * machine has (lavapipe in CI): forward, input gradient and filter gradient against the `cpu`
 * backend on odd shapes (1x1 and 3x3, 'same' and 'valid', channels 1 to 128, tiles and pixel
 * chunks that do not divide the sizes), the GPU programs each ran (ours: one tiled product, and
 * one chunk sum for a split filter gradient; tfjs's for a stride-2 convolution and with
 * `kernels: builtin`), and the filter gradient's determinism. Skipped, with one line saying why,
 * without WebGPU or an adapter.
 *
 * The numbers come from `_webgpu_conv_checks.ts`, run once in a child process with a copy of
 * deno.lock (as `webgpu_test.ts` does). Tolerance: 1e-4 of the reference's largest value, that of
 * `webgpu_test.ts` (measured on lavapipe: <= 9e-7).
 */
import assert from "node:assert/strict";
import type { ConvChecks } from "./_webgpu_conv_checks.ts";
import { webgpuChecks } from "./_webgpu_child.ts";

const TOLERANCE = 1e-4;

const { checks: convChecks, gpuTest } = await webgpuChecks<ConvChecks>(
  "_webgpu_conv_checks.ts",
  "webgpu conv",
  "webgpu conv",
);

gpuTest("forward, input and filter gradients match the cpu backend", async () => {
  const c = await convChecks();
  console.log(`${c.cases.length} convolutions in ${c.seconds} s`);
  assert.ok(c.cases.length >= 9);
  for (const k of c.cases) {
    ["output", "input gradient", "filter gradient"].forEach((what, i) =>
      assert.ok(
        k.errors[i] <= TOLERANCE,
        `${k.name}: ${what} relative error ${k.errors[i].toExponential(2)}`,
      )
    );
  }
  // the cases cover a filter gradient in several chunks, the last one partial
  assert.ok(c.cases.some((k) => k.chunks > 1 && k.name.includes("1,311")));
  // and both forwards: ours (channels tfjs does not vectorise) and tfjs's
  assert.ok(c.cases.filter((k) => k.oursForward).length >= 4);
});

gpuTest(
  "stride 1 runs one tiled program per gradient (+ a chunk sum when split), forward where tfjs has none",
  async () => {
    const c = await convChecks();
    for (const k of c.cases) {
      if (k.name.includes("fallback")) continue;
      if (k.oursForward) assert.deepEqual(k.programs.Conv2D, ["GemmProgram"], k.name);
      else assert.ok(!k.programs.Conv2D.includes("GemmProgram"), k.name);
      assert.deepEqual(k.programs.Conv2DBackpropInput, ["GemmProgram"], k.name);
      assert.deepEqual(
        k.programs.Conv2DBackpropFilter,
        k.chunks > 1 ? ["GemmProgram", "ChunkSumProgram"] : ["GemmProgram"],
        k.name,
      );
    }
    // stride 2, and kernels: builtin, keep tfjs's programs
    const fallback = c.cases.find((k) => k.name.includes("fallback"))!;
    for (const programs of [fallback.programs, c.builtinPrograms]) {
      const all = Object.values(programs).flat();
      assert.ok(all.length >= 3 && !all.includes("GemmProgram"), all.join(", "));
    }
  },
);

gpuTest("the filter gradient is the same on two runs (no atomics)", async () => {
  const c = await convChecks();
  for (const k of c.cases) assert.ok(k.deterministic, k.name);
});
