// A transform plugin: random integer shifts (translations) of each image, zeros brought in at
// the border. Exactly invertible on the pixels that stay inside, which `validMask` marks.
// Use it from a recipe with `plugins: ["./shift_transform.ts"]` and
// `transform: { type: shift, max: 4 }`.
// Outside this repository, import mod.ts by its URL instead of "../mod.ts".
import {
  type InvertibleTransform,
  type OptionsSchema,
  type Rng,
  type Tensor4D,
  tf,
  type TransformFactory,
  transforms,
  z,
} from "../mod.ts";

/** Options of the `shift` transform. */
export interface ShiftOptions {
  /** Largest shift in pixels, along each axis. */
  max: number;
}

/** The parameters of one draw: a shift `[dy, dx]` per image of the batch. */
export type ShiftParams = Array<[number, number]>;

const options: OptionsSchema<ShiftOptions> = z.object({
  max: z.number().int().min(0).max(64).default(4),
}).strict();

/** `x` `[B, H, W, C]` with image `b` moved by `shifts[b]` (down, right), zeros brought in. */
function shift(x: Tensor4D, shifts: ShiftParams): Tensor4D {
  return tf.tidy(() => {
    const [, h, w, c] = x.shape;
    const images = tf.split(x, x.shape[0], 0).map((image, b) => {
      const [dy, dx] = shifts[b];
      const padded = tf.pad(image, [[0, 0], [Math.max(dy, 0), Math.max(-dy, 0)], [
        Math.max(dx, 0),
        Math.max(-dx, 0),
      ], [0, 0]]);
      return tf.slice(padded, [0, Math.max(-dy, 0), Math.max(-dx, 0), 0], [1, h, w, c]);
    });
    return tf.concat(images, 0) as Tensor4D;
  });
}

/** The inverse shifts. */
const back = (shifts: ShiftParams): ShiftParams => shifts.map(([dy, dx]) => [-dy, -dx]);

/** A `shift` transform with its options. */
export function shiftTransform(opts: ShiftOptions): InvertibleTransform<ShiftParams> {
  const ones = (p: ShiftParams, h: number, w: number) => tf.ones([p.length, h, w, 1]) as Tensor4D;
  return {
    id: "shift",
    sample: (rng: Rng, batch: number) =>
      Array.from({ length: batch }, () => [
        rng.int(2 * opts.max + 1) - opts.max,
        rng.int(2 * opts.max + 1) - opts.max,
      ]),
    // Whole-pixel shifts: both interpolations give the same result.
    apply: (x, params) => shift(x, params),
    invert: (y, params) => shift(y, back(params)),
    // 1 where shifting there and back keeps the pixel (it did not leave the image).
    validMask: (params, h, w) =>
      tf.tidy(() => shift(shift(ones(params, h, w), params), back(params))),
    // 1 where the shifted image shows a pixel of the original.
    forwardValidMask: (params, h, w) => tf.tidy(() => shift(ones(params, h, w), params)),
  };
}

/** The `shift` transform plugin. */
export const shiftTransformPlugin: TransformFactory<ShiftOptions, ShiftParams> = {
  id: "shift",
  description: "Random integer shifts of each image (up to max pixels), zeros at the border",
  options,
  create: shiftTransform,
};

if (!transforms.has(shiftTransformPlugin.id)) transforms.register(shiftTransformPlugin);
