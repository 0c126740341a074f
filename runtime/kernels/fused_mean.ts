/**
 * What the fused loss kernels (`kl_fused.ts`, `softmax_ce.ts`) share: a loss that is a
 * (mask-weighted) mean over pixels, `sum_pixels m * loss_pixel / max(sum m, floor)` (the plain
 * mean without a mask), computed as **partial sums**, and its gradient in the mask.
 *
 * Only `cpu` and webgpu take them: on `wasm` the composed ops' element-wise kernels are SIMD
 * polynomials split between the kernel pool's threads (`wasm_pointwise.ts`), and the losses of a
 * 128 px step (two softmaxes, KL, cross-entropy, forward and backward) took 27-31 ms composed
 * against 51-81 ms as JavaScript loops at one thread, 20 against 87-98 ms at two.
 *
 * The forward kernel of such a loss returns `[loss, partials]`: `partials` is `[P, 2]`, row `k`
 * holding part `k`'s sums of `m * loss_pixel` and of `m` (of 1 per pixel without a mask). The
 * gradient kernel reads the second column back for the denominator, so it needs no second
 * reduction. On `cpu`, `P = 1` (float64 sums); on webgpu one row per workgroup of
 * the first pass (`webgpu_reduce.ts`).
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { kernelMode } from "../tfjs_internals.ts";

type TensorInfo = tf.TensorInfo;

/** The normaliser of the sums: `max(sum of the second column, floor)`. */
export function denominator(partials: Float32Array, floor: number): number {
  let s = 0;
  for (let k = 1; k < partials.length; k += 2) s += partials[k];
  return Math.max(s, floor);
}

/** Number of values of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Check a `[..., C]` input and an optional mask of one value per pixel; returns the pixel and
 * channel counts. `name` prefixes the one-line errors.
 */
export function pixelLayout(
  name: string,
  x: TensorInfo,
  mask?: TensorInfo,
): { pixels: number; channels: number } {
  if (x.shape.length < 1) throw new Error(`${name}: a [..., C] input expected`);
  const channels = x.shape[x.shape.length - 1];
  const pixels = channels === 0 ? 0 : sizeOf(x.shape) / channels;
  if (mask !== undefined && sizeOf(mask.shape) !== pixels) {
    throw new Error(
      `${name}: the mask has ${sizeOf(mask.shape)} values for ${pixels} pixels ` +
        `(shape [${x.shape}])`,
    );
  }
  return { pixels, channels };
}

/**
 * Whether `kernelName` runs on the active backend: never with `kernels: builtin`; `register`
 * adds the `cpu` kernels (webgpu's come with its training kernels; `wasm` has none).
 */
export function fusedAvailable(kernelName: string, register: () => void): boolean {
  if (kernelMode() === "builtin") return false;
  register();
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/**
 * The gradient in the mask of `sum(m * perPixel) / max(sum m, floor)`, from tfjs ops:
 * `dy (perPixel / D - [sum m >= floor] sum(m perPixel) / D^2)`, shaped as `mask`.
 */
export function maskedMeanMaskGradient(
  dy: tf.Tensor,
  perPixel: tf.Tensor,
  mask: tf.Tensor,
  floor: number,
): tf.Tensor {
  return tf.tidy(() => {
    const m = tf.reshape(mask, perPixel.shape);
    const s = tf.sum(m);
    const d = tf.maximum(s, floor);
    const total = tf.sum(tf.mul(perPixel, m));
    const through = tf.cast(tf.greaterEqual(s, floor), "float32");
    const g = tf.sub(tf.div(perPixel, d), tf.div(tf.mul(total, through), tf.square(d)));
    return tf.reshape(tf.mul(g, dy), mask.shape);
  });
}
