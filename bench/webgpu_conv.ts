/**
 * The U-Net's convolutions on webgpu, one at a time: the GPU time (tfjs's profile, timestamp
 * queries) of the forward, input gradient and filter gradient of each shape of a 128 px batch
 * of 8 (base 16, the levels at 128, 32 and 8 px, and the 1x1 head), with `kernels: custom` (the
 * tiled WGSL programs of `runtime/kernels/webgpu_conv.ts`) and `builtin` (tfjs's own). Prints
 * one line per shape and kernel set; each is timed once after a warm-up call that compiles it.
 *
 * ```sh
 * cp deno.lock /tmp/webgpu.lock   # importing tfjs-backend-webgpu would add it to deno.lock
 * deno run --unstable-webgpu --lock=/tmp/webgpu.lock --allow-read --allow-env --allow-sys \
 *   bench/webgpu_conv.ts custom builtin
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";

/** Input `[n, h, w, cIn]` and filter `[k, k, cIn, cOut]`. */
const SHAPES: [number[], number[]][] = [
  [[8, 128, 128, 1], [3, 3, 1, 16]],
  [[8, 128, 128, 16], [3, 3, 16, 16]],
  [[8, 32, 32, 64], [3, 3, 64, 64]],
  [[8, 8, 8, 256], [3, 3, 256, 256]],
  [[8, 128, 128, 16], [1, 1, 16, 4]],
];

/** GPU milliseconds per convolution kernel of one forward and backward pass of `x * w`. */
async function time(xs: number[], ws: number[]): Promise<Record<string, number>> {
  const x = tf.randomUniform(xs, -1, 1, "float32", 1);
  const w = tf.randomUniform(ws, -1, 1, "float32", 2);
  const dy = tf.randomUniform([xs[0], xs[1], xs[2], ws[3]], -1, 1, "float32", 3);
  const pad = ws[0] === 1 ? "valid" : "same";
  const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, pad);
  const pass = async () => {
    const y = f(x, w);
    const [dx, dw] = tf.grads(f)([x, w], dy);
    await Promise.all([y.data(), dx.data(), dw.data()]);
    tf.dispose([y, dx, dw]);
  };
  await pass();
  const info = await tf.profile(pass);
  const ms: Record<string, number> = {};
  for (const k of info.kernels) {
    if (!k.name.startsWith("Conv2D")) continue;
    ms[k.name] = Math.round((ms[k.name] ?? 0) + (k.kernelTimeMs as number));
  }
  tf.dispose([x, w, dy]);
  return ms;
}

if (import.meta.main) {
  for (const kernels of Deno.args.length ? Deno.args : ["custom", "builtin"]) {
    if (kernels !== "custom" && kernels !== "builtin") {
      throw new Error(`webgpu_conv: kernels must be custom or builtin, got "${kernels}"`);
    }
    await initBackend("webgpu", { kernels });
    for (const [xs, ws] of SHAPES) {
      console.log(JSON.stringify({ kernels, x: xs, filter: ws, gpu_ms: await time(xs, ws) }));
    }
  }
}
