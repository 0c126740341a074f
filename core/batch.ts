/**
 * Training batches: slices drawn at random from a slice set, with the recipe's data
 * augmentation (random rotation and flips) applied to images and labels alike.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { SegmentationDataset, SliceSet } from "./dataset.ts";
import { callPlugin, type PluginRef } from "./plugin_errors.ts";
import type { Recipe } from "./recipe.ts";
import type { Rng } from "./rng.ts";
import type { InvertibleTransform } from "./transform.ts";
import { sampleRandomAffine, warpAffine } from "./warp.ts";

/** How {@linkcode drawBatch} draws. */
export interface BatchOptions {
  /** Draw the labels too. */
  withLabels: boolean;
  /** The recipe's `augmentation`. */
  augmentation: Recipe["augmentation"];
}

/**
 * Draw a batch of `n` slices of `set` (augmented) with `rng`, as tensors: images
 * `[n, H, W, 1]`, labels `[n, H, W]` (int32) when asked for.
 */
export function drawBatch(
  rng: Rng,
  set: SliceSet,
  n: number,
  options: BatchOptions,
): { x: tf.Tensor4D; y?: tf.Tensor3D } {
  const withLabels = options.withLabels;
  const { height: h, width: w } = set;
  const hw = h * w;
  const images = new Float32Array(n * hw);
  const labels = withLabels ? new Float32Array(n * hw) : null;
  for (let i = 0; i < n; i++) {
    const k = rng.int(set.count);
    images.set(set.images.subarray(k * hw, (k + 1) * hw), i * hw);
    // Typed-array set converts the label bytes to float32 natively (the same values).
    if (labels) labels.set(set.labels!.subarray(k * hw, (k + 1) * hw), i * hw);
  }
  const aug = options.augmentation;
  return tf.tidy(() => {
    let x = tf.tensor4d(images, [n, h, w, 1]);
    let y = labels ? tf.tensor4d(labels, [n, h, w, 1]) : undefined;
    if (aug.rotation > 0 || aug.flip) {
      const m = sampleRandomAffine(rng, n, {
        rotation: aug.rotation,
        shear: 0,
        scale: [1, 1],
        translate: 0,
        flipProbability: aug.flip ? 0.5 : 0,
      });
      x = warpAffine(x, m, "bilinear");
      if (y) y = warpAffine(y, m, "nearest");
    }
    return {
      x,
      y: y ? tf.cast(tf.reshape(y, [n, h, w]), "int32") as tf.Tensor3D : undefined,
    };
  });
}

/** One step's draws: the labeled batch, the unlabeled one (when used) and `T`'s parameters. */
export interface StepBatch {
  x: tf.Tensor4D;
  y: tf.Tensor3D;
  xu: tf.Tensor4D | null;
  params: unknown;
  dropoutSeed: number;
  /** Every tensor above, to dispose after the step. */
  tensors: tf.Tensor[];
}

/** What {@linkcode drawStep} draws from. */
export interface StepSource {
  /** The run's recipe (batch sizes, augmentation). */
  recipe: Recipe;
  /** The dataset. */
  dataset: SegmentationDataset;
  /** The transform `T`, and its plugin as failures name it. */
  transform: InvertibleTransform;
  transformPlugin: PluginRef;
  /** Whether the step uses the unlabeled batch (a regularizer needs it). */
  useUnlabeled: boolean;
}

/** A step's batches, transform parameters and dropout seed, drawn with `rng` in this order. */
export function drawStep(rng: Rng, source: StepSource): StepBatch {
  const r = source.recipe;
  const labeled = drawBatch(rng, source.dataset.labeled, r.trainer.labeledBatch, {
    withLabels: true,
    augmentation: r.augmentation,
  });
  const useU = source.useUnlabeled;
  const bu = r.trainer.unlabeledBatch;
  const unlabeled = useU
    ? drawBatch(rng, source.dataset.unlabeled, bu, {
      withLabels: false,
      augmentation: r.augmentation,
    })
    : null;
  const [, h, w] = labeled.x.shape;
  const params = useU
    ? callPlugin(
      source.transformPlugin,
      { method: "sample()", expected: "transform parameters" },
      () => source.transform.sample(rng, bu, h, w),
    )
    : null;
  const dropoutSeed = rng.nextUint32() % 1_000_000;
  const tensors = [labeled.x, labeled.y!, ...(unlabeled ? [unlabeled.x] : [])];
  return { x: labeled.x, y: labeled.y!, xu: unlabeled?.x ?? null, params, dropoutSeed, tensors };
}
