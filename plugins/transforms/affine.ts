/**
 * Random invertible affine transforms (rotation, shear, scale cascade; flips) applied to images
 * with a bilinear warp (zeros outside) and inverted exactly on predictions.
 *
 * @module
 */
import { tf, z } from "../../deps.ts";
import type { Rng } from "../../core/rng.ts";
import {
  forwardValidMask,
  type Interpolation,
  type InvertibleTransform,
  type TransformFactory,
} from "../../core/transform.ts";
import {
  type Affine,
  composeAffine,
  identityAffine,
  invertAffine,
  sampleRandomAffine,
  validMaskAffine,
  warpAffine,
} from "../../core/warp.ts";

export type { Affine } from "../../core/warp.ts";
export {
  composeAffine,
  identityAffine,
  invertAffine,
  sampleRandomAffine,
  validMaskAffine,
  warpAffine,
} from "../../core/warp.ts";

/** A transform whose parameters are one affine sampling map per image. */
export interface AffineTransform extends InvertibleTransform<Affine> {
  /** Draw the maps (the parameters) for `batch` images. */
  sample(rng: Rng, batch: number, height?: number, width?: number): Affine;
  /** Marker: the parameters are affine sampling maps. */
  readonly [AFFINE]: true;
}

/** Marks transforms whose parameters are affine maps, so that cascades fuse into one warp. */
export const AFFINE: unique symbol = Symbol.for("mi-ssl.affine") as never;

/** Build an {@linkcode AffineTransform} from a sampler of maps. */
export function affineTransform(
  id: string,
  sampler: (rng: Rng, batch: number) => Affine,
): AffineTransform {
  return {
    id,
    [AFFINE]: true,
    sample: (rng, batch) => sampler(rng, batch),
    apply: (x: tf.Tensor4D, m: Affine, interpolation: Interpolation = "bilinear") =>
      warpAffine(x, m, interpolation),
    invert: (y: tf.Tensor4D, m: Affine) => warpAffine(y, invertAffine(m), "bilinear"),
    validMask: (m: Affine, height: number, width: number) =>
      validMaskAffine(invertAffine(m), m.length / 6, height, width),
    forwardValidMask: (m: Affine, height: number, width: number) =>
      validMaskAffine(m, m.length / 6, height, width),
  };
}

/** Options of the `affine` transform. */
export const affineOptions = z.object({
  rotation: z.number().min(0).max(180).default(30).describe(
    "Rotation drawn uniformly in [-rotation, rotation] degrees.",
  ),
  shear: z.number().min(0).max(45).default(10).describe(
    "Shear drawn uniformly in [-shear, shear] degrees.",
  ),
  scale: z.tuple([z.number().gt(0).max(10), z.number().gt(0).max(10)]).default([0.8, 1.2])
    .refine(([a, b]) => a <= b, "scale must be [min, max] with min <= max").describe(
      "Scale drawn uniformly in [min, max].",
    ),
  translate: z.number().min(0).max(1).default(0).describe(
    "Translation drawn uniformly in [-translate, translate] (fraction of the half side).",
  ),
  flipProbability: z.number().min(0).max(1).default(0).describe(
    "Probability of a left-right flip.",
  ),
}).strict();

/** Parsed options of the `affine` transform (the same fields as {@linkcode AffineSampling}). */
export type AffineOptions = z.infer<typeof affineOptions>;

/** The `affine` transform plugin. */
export const affineTransformPlugin: TransformFactory<AffineOptions, Affine> = {
  id: "affine",
  description: "Random rotation, shear and scale cascade (IIC matrix), bilinear, zeros outside",
  options: affineOptions,
  create: (o) => affineTransform("affine", (rng, b) => sampleRandomAffine(rng, b, o)),
};

/** Options of the `flip` transform. */
export const flipOptions = z.object({
  horizontal: z.number().min(0).max(1).default(0.5).describe("Probability of a left-right flip."),
  vertical: z.number().min(0).max(1).default(0.5).describe("Probability of an up-down flip."),
  rotate90: z.number().min(0).max(1).default(0).describe(
    "Probability of a rotation by a multiple of 90 degrees (uniform over 90/180/270).",
  ),
  perImage: z.boolean().default(true).describe(
    "Draw a flip (and rotation) for each image; `false` draws one for the whole batch (every " +
      "image gets the same). With one draw per batch the `mi` term is the same in both recipe " +
      "`pairing` forms; with a draw per image it is not: its joint pools each displacement over " +
      "the batch, and each image's flip mirrors the displacements its own way (the `kl` and " +
      "`mse` terms, pixel-wise, agree either way).",
  ),
}).strict();

/** The `flip` transform plugin: exact flips and 90-degree rotations. */
export const flipTransformPlugin: TransformFactory<z.infer<typeof flipOptions>, Affine> = {
  id: "flip",
  description: "Random exact flips and 90-degree rotations (no interpolation error)",
  options: flipOptions,
  create: (o) =>
    affineTransform("flip", (rng, batch) => {
      const m = identityAffine(batch);
      let row: number[] = [];
      for (let i = 0; i < batch; i++) {
        if (o.perImage || i === 0) {
          const fx = rng.next() < o.horizontal ? -1 : 1;
          const fy = rng.next() < o.vertical ? -1 : 1;
          const quarter = rng.next() < o.rotate90 ? 1 + rng.int(3) : 0;
          const cos = [1, 0, -1, 0][quarter], sin = [0, 1, 0, -1][quarter];
          row = [cos * fx, -sin * fy, 0, sin * fx, cos * fy, 0];
        }
        m.set(row, 6 * i);
      }
      return m;
    }),
};

/** Options of the `compose` transform. */
export const composeOptions = z.object({
  transforms: z.array(z.object({ type: z.string() }).passthrough()).min(1).describe(
    "Transforms applied in order (each `{ type, ...options }`), inverted in reverse order.",
  ),
}).strict();

/**
 * Compose transforms: `apply` runs them in order and `invert` in reverse order. Affine parts are
 * fused into one map, so a cascade costs one warp.
 */
export function composeTransforms(parts: InvertibleTransform[]): InvertibleTransform {
  const allAffine = parts.every((p) => isAffine(p));
  if (allAffine) {
    return affineTransform("compose", (rng, batch) => {
      let m = identityAffine(batch);
      for (const p of parts) m = composeAffine(m, (p as AffineTransform).sample(rng, batch));
      return m;
    });
  }
  return {
    id: "compose",
    sample: (rng, b, h, w) => parts.map((p) => p.sample(rng, b, h, w)),
    apply: (x, params, interpolation) =>
      tf.tidy(() =>
        parts.reduce((y, p, i) => p.apply(y, (params as unknown[])[i], interpolation), x)
      ),
    invert: (y, params) =>
      tf.tidy(() => parts.reduceRight((z, p, i) => p.invert(z, (params as unknown[])[i]), y)),
    validMask: (params, h, w) =>
      tf.tidy(() => {
        // A pixel is valid when it is valid for every part, mapped back through later parts.
        let mask: tf.Tensor4D | null = null;
        for (let i = parts.length - 1; i >= 0; i--) {
          const mi = parts[i].validMask((params as unknown[])[i], h, w);
          mask = mask === null ? mi : tf.mul(mi, parts[i].invert(mask, (params as unknown[])[i]));
        }
        return tf.cast(tf.greater(mask!, 0.999), "float32") as tf.Tensor4D;
      }),
    forwardValidMask: (params, h, w) =>
      tf.tidy(() => {
        // Valid after part i when part i reads only valid pixels of its input: walk forward.
        let mask: tf.Tensor4D | null = null;
        for (let i = 0; i < parts.length; i++) {
          const p = (params as unknown[])[i];
          const mi: tf.Tensor4D = forwardValidMask(parts[i], p, h, w, mask?.shape[0]);
          mask = mask === null ? mi : tf.mul(mi, parts[i].apply(mask, p, "bilinear"));
        }
        return tf.cast(tf.greater(mask!, 0.999), "float32") as tf.Tensor4D;
      }),
  };
}

function isAffine(t: InvertibleTransform): t is AffineTransform {
  return (t as { [AFFINE]?: boolean })[AFFINE] === true;
}
