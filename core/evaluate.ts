/**
 * Inference and evaluation: one {@linkcode probabilities} function runs a network over slices in
 * evaluation mode, a few slices at a time; validation, `eval` and `predict` all go through it.
 * {@linkcode evaluateVolumes} scores a split's volumes by 3D Dice and HD95.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { Volume } from "./dataset.ts";
import { diceScores, hd95, meanPerClass, nanMeanPerClass } from "./metrics.ts";
import type { SegmentationModel } from "./model.ts";

/** Slices the network sees at once during inference. */
const SLICES_AT_ONCE = 8;

/** Evaluation of one split. */
export interface Evaluation {
  /** Mean Dice over volumes, by class name. */
  dice: Record<string, number>;
  /** Mean of `dice` over the foreground classes. */
  dice_mean: number;
  /**
   * Mean HD95 (95th percentile symmetric surface distance, {@linkcode hd95}) by class name,
   * over the volumes where it is defined (`NaN`, `null` in JSON, when it is defined in none).
   */
  hd95: Record<string, number>;
  /** Mean of the defined values of `hd95` over the foreground classes. */
  hd95_mean: number;
  /** `mm` when every volume records its spacing, else `voxels` (of the evaluated grid). */
  hd95_unit: "mm" | "voxels";
  /** By class: volumes whose HD95 is undefined (the class in only one of prediction and truth). */
  hd95_undefined: Record<string, number>;
  /** Per volume: Dice and HD95 (`NaN` / `null` where undefined) by class name. */
  per_volume: Record<string, { dice: Record<string, number>; hd95: Record<string, number> }>;
}

/** Options of `Trainer.evaluate` and {@linkcode evaluateVolumes}. */
export interface EvaluateOptions {
  /**
   * Called with each volume, its predicted labels and the class probabilities they are the
   * argmax of (`[D, H, W, C]`, channels last) (`--export`); awaited before the next volume.
   */
  onPrediction?: (
    volume: Volume,
    prediction: Uint8Array,
    probabilities: Float32Array,
  ) => unknown;
}

/** Slices to segment: `n` slices of `h x w` intensities (a {@linkcode Volume} is one). */
export interface Slices {
  /** `n * h * w` values, slice-major. */
  image: Float32Array;
  /** `[n, h, w]`. */
  shape: readonly [number, number, number];
}

/**
 * Softmax class probabilities of `slices` through `model` in evaluation mode, a few slices at a
 * time: `n * h * w * classes` values, channels last. Async: the webgpu backend can read results
 * back only asynchronously.
 */
export async function probabilities(
  model: SegmentationModel,
  slices: Slices,
): Promise<Float32Array> {
  const images = slices.image;
  const [n, h, w] = slices.shape;
  const parts: Float32Array[] = [];
  let total = 0;
  for (let s = 0; s < n; s += SLICES_AT_ONCE) {
    const m = Math.min(SLICES_AT_ONCE, n - s);
    const p = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(s * h * w, (s + m) * h * w), [m, h, w, 1]);
      return tf.softmax(model.apply(x, { training: false }));
    });
    const values = await p.data() as Float32Array;
    p.dispose();
    parts.push(values);
    total += values.length;
  }
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The class of each voxel of channels-last `probs` (`classes` values a voxel): the first maximum. */
export function argmaxLabels(probs: Float32Array, classes: number): Uint8Array {
  const out = new Uint8Array(probs.length / classes);
  for (let i = 0, o = 0; o < out.length; o++, i += classes) {
    let best = 0;
    let max = probs[i];
    for (let c = 1; c < classes; c++) {
      if (probs[i + c] > max) {
        max = probs[i + c];
        best = c;
      }
    }
    out[o] = best;
  }
  return out;
}

/** A volume's class probabilities (`[D, H, W, C]`) and labels (`[D, H, W]`) from `model`. */
export async function predictVolume(
  model: SegmentationModel,
  volume: Volume,
): Promise<{ labels: Uint8Array; probabilities: Float32Array }> {
  const [d, h, w] = volume.shape;
  const probs = await probabilities(model, volume);
  return { labels: argmaxLabels(probs, probs.length / (d * h * w)), probabilities: probs };
}

/**
 * 3D Dice and HD95 per foreground class of `model` on `volumes`, averaged over volumes (HD95
 * over the volumes where it is defined).
 */
export async function evaluateVolumes(
  volumes: Volume[],
  model: SegmentationModel,
  classNames: string[],
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const classes = classNames.slice(1);
  const rows: number[][] = [];
  const hdRows: number[][] = [];
  const perVolume: Evaluation["per_volume"] = {};
  const byClass = (values: number[]) => Object.fromEntries(classes.map((c, i) => [c, values[i]]));
  for (const v of volumes) {
    const { labels: pred, probabilities } = await predictVolume(model, v);
    await options.onPrediction?.(v, pred, probabilities);
    const scores = diceScores(pred, v.label, classNames.length);
    const hd = classes.map((_, i) => hd95(pred, v.label, v.shape, v.spacing, i + 1));
    rows.push(scores);
    hdRows.push(hd);
    perVolume[v.id] = { dice: byClass(scores), hd95: byClass(hd) };
  }
  const mean = meanPerClass(rows);
  const hdMean = nanMeanPerClass(hdRows);
  const defined = hdMean.mean.filter((x) => !Number.isNaN(x));
  return {
    dice: byClass(mean),
    dice_mean: mean.reduce((a, b) => a + b, 0) / Math.max(mean.length, 1),
    hd95: byClass(hdMean.mean),
    hd95_mean: defined.length ? defined.reduce((a, b) => a + b, 0) / defined.length : NaN,
    hd95_unit: volumes.every((v) => v.spacing) ? "mm" : "voxels",
    hd95_undefined: byClass(hdMean.undefinedCount),
    per_volume: perVolume,
  };
}

/** `RV 81.23 Myo 70.12 LV 90.01 %` (Dice in percent, as every line shown to a user). */
export function formatDice(dice: Record<string, number>): string {
  return Object.entries(dice).map(([k, v]) => `${k} ${(100 * v).toFixed(2)}`).join(" ") + " %";
}
