/**
 * `webgpu_readback_test.ts`'s numbers on the WebGPU adapter (`_readback_checks.ts` with the
 * `webgpu` backend), run in a child process by `_webgpu_child.ts`. Prints one JSON object.
 *
 * @module
 */
import { readbackChecks } from "./_readback_checks.ts";
import { describeAdapter, probeAdapter } from "../runtime/webgpu.ts";

const t0 = performance.now();
const adapter = await probeAdapter();
const checks = await readbackChecks("webgpu");
console.log(JSON.stringify({
  ...checks,
  adapter: adapter ? describeAdapter(adapter) : "none",
  seconds: Math.round((performance.now() - t0) / 100) / 10,
}));
