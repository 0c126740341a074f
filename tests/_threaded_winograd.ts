/**
 * Subprocess of `wasm_winograd_test.ts`: the Winograd F(2x2, 3x3) convolution (forward, fused
 * with bias and ReLU, input gradient and filter gradient) with 2 threads on shapes large enough to
 * be split (tiles, and on the larger shapes the filter transforms),
 * against the cpu backend. Checks that each call ran as Winograd and gave parts to the helper,
 * prints one line per shape and `done` at the end.
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-sys tests/_threaded_winograd.ts
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { gemmKernels, winogradCallCount, winogradTileCount } from "../runtime/kernels/wasm_conv.ts";
import { splitPartCount, workerCount } from "../runtime/kernels/wasm_pool.ts";

await initBackend("wasm", { threads: 2 });
if (gemmKernels(tf.backend() as never) === null) throw new Error("no kernel module");
for (let i = 0; i < 500 && workerCount() < 1; i++) await new Promise((r) => setTimeout(r, 10));
if (workerCount() < 1) throw new Error("no helper worker (threaded wasm unavailable?)");

function normal(shape: number[], seed: number): Float32Array {
  return tf.tidy(() => tf.randomNormal(shape, 0, 1, "float32", seed).dataSync() as Float32Array);
}

// By shape: F(4x4, 3x3) from 32x32 up, F(2x2, 3x3) below. The last two have enough channel
// pairs (>= 8192) for the filter transforms (forward, input gradient, filter gradient) to be split
// too.
const shapes: [number, number, number, number, number][] = [
  [3, 33, 35, 16, 24],
  [2, 40, 41, 16, 16],
  [3, 33, 29, 16, 24],
  [6, 16, 16, 64, 32],
  [2, 16, 18, 128, 96],
  [1, 32, 33, 96, 128],
];
for (const [n, h, w, ci, co] of shapes) {
  const xv = normal([n, h, w, ci], 1), fv = normal([3, 3, ci, co], 2), bv = normal([co], 3);
  const run = () =>
    tf.tidy(() => {
      const x = tf.tensor4d(xv, [n, h, w, ci]), f = tf.tensor4d(fv, [3, 3, ci, co]);
      const dy = tf.randomNormal([n, h, w, co], 0, 1, "float32", 4) as tf.Tensor4D;
      return [
        tf.conv2d(x, f, 1, "same"),
        tf.fused.conv2d({
          x,
          filter: f,
          strides: 1,
          pad: "same",
          bias: tf.tensor1d(bv),
          activation: "relu",
        }),
        tf.conv2dTranspose(dy, f as tf.Tensor4D, [n, h, w, ci], 1, "same"),
        tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, b as tf.Tensor4D, 1, "same"), dy)))(f),
      ].map((t) => t.dataSync() as Float32Array);
    });
  const parts = splitPartCount(), used = winogradCallCount(), tiles = winogradTileCount();
  const wasm = run();
  const now = winogradCallCount();
  const f4 = winogradTileCount()[4] - tiles[4];
  if (f4 !== (h >= 32 && w >= 32 ? 5 : 0)) {
    throw new Error(`${n}x${h}x${w}x${ci}->${co}: ${f4} calls as F(4x4, 3x3)`);
  }
  if (now.fwd - used.fwd !== 3 || now.dx - used.dx !== 1 || now.dw - used.dw !== 1) {
    throw new Error(`${n}x${h}x${w}x${ci}->${co}: not Winograd (${JSON.stringify(now)})`);
  }
  // Tiles: 5 calls, each split in two parts or more; the filter transforms: 5 more where they
  // split.
  if (splitPartCount() - parts < 2 * (ci * co >= 8192 ? 10 : 5)) {
    throw new Error(
      `${n}x${h}x${w}x${ci}: ${splitPartCount() - parts} parts shared with the helper`,
    );
  }
  await tf.setBackend("cpu");
  const cpu = run();
  await tf.setBackend("wasm");
  cpu.forEach((expected, k) => {
    let scale = 0, err = 0;
    for (let i = 0; i < expected.length; i++) {
      scale = Math.max(scale, Math.abs(expected[i]));
      err = Math.max(err, Math.abs(wasm[k][i] - expected[i]));
    }
    if (!(scale > 0) || !(err <= 3e-5 * scale)) {
      throw new Error(`${n}x${h}x${w}x${ci}->${co} output ${k}: max error ${err} against ${scale}`);
    }
  });
  console.log(`${n}x${h}x${w}x${ci}->${co} ok`);
}
console.log("done");
Deno.exit(0);
