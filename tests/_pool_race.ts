/**
 * Subprocess of `threads_test.ts`: many `parallelFor` calls of the kernel pool whose parts end
 * at nearly the same time on both threads (the calling thread's part varies in length around the
 * helper's wake-up latency), the timing under which a wait that re-reads the done counter loses
 * the helper's wake-up. Prints a line every 2,000 calls, then checks a threaded `GatherV2` against
 * a plain loop, and prints `done` at the end; a hang shows as silence.
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-sys tests/_pool_race.ts 40000
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { gemmKernels } from "../runtime/kernels/wasm_conv.ts";
import { parallelFor, workerCount } from "../runtime/kernels/wasm_pool.ts";

const calls = Number(Deno.args[0] ?? 40000);
await initBackend("wasm", { threads: 2 });
const backend = tf.backend() as unknown as {
  wasm: { _malloc(n: number): number; HEAPU8: Uint8Array };
};
const kernels = gemmKernels(tf.backend() as never);
if (kernels === null) throw new Error("no GEMM kernels");
for (let i = 0; i < 500 && workerCount() < 1; i++) await new Promise((r) => setTimeout(r, 10));
if (workerCount() < 1) throw new Error("no helper worker (threaded wasm unavailable?)");

// conv_fwd(ptrs, bp, out, m0, m1, ci, taps, co, zero, bias, relu) with ci = co = 8, one tap:
// every row reads one zero pixel; rows cost a few nanoseconds each.
const ROWS = 40000, CI = 8, CO = 8;
const malloc = (bytes: number) => backend.wasm._malloc(bytes) >>> 0;
const pixel = malloc(CI * 4), bp = malloc(CI * CO * 4);
const ptrs = malloc(ROWS * 4), out0 = malloc(ROWS * CO * 4), out1 = malloc(ROWS * CO * 4);
const heap = () => backend.wasm.HEAPU8;
heap().fill(0, pixel, pixel + CI * 4);
heap().fill(0, bp, bp + CI * CO * 4);
new Int32Array(heap().buffer, ptrs, ROWS).fill(pixel);
const part = (out: number, rows: number) => [ptrs, bp, out, 0, rows, CI, 1, CO, pixel, 0, 0];
let seed = 1;
const t0 = performance.now();
for (let i = 1; i <= calls; i++) {
  seed = (seed * 1103515245 + 12345) >>> 0;
  parallelFor(kernels, "fwd", [part(out0, seed % ROWS), part(out1, 1)]);
  if (i % 2000 === 0) console.log(`call ${i} ${(performance.now() - t0).toFixed(0)} ms`);
}
// The threaded row copies of GatherV2 (two parts) against a plain loop.
const n = 50000, c = 4, rows = 4 * n;
const xs = Float32Array.from({ length: n * c }, (_, i) => Math.sin(i));
const is = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % n);
const got = tf.tidy(() => tf.gather(tf.tensor2d(xs, [n, c]), tf.tensor1d(is, "int32")).dataSync());
for (let r = 0; r < rows; r++) {
  for (let j = 0; j < c; j++) {
    if (got[r * c + j] !== xs[is[r] * c + j]) throw new Error(`gather: row ${r} differs`);
  }
}
console.log(`gather ok (${workerCount()} helper)`);
console.log("done");
Deno.exit(0);
