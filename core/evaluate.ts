/**
 * Inference and evaluation: one {@linkcode probabilities} function runs a network over slices in
 * evaluation mode, a few slices at a time; validation, `eval` and `predict` all go through it.
 * {@linkcode evaluateVolumes} scores a split's volumes by 3D Dice and HD95.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { SourceGridPrediction, Volume } from "./dataset.ts";
import { UserError } from "./errors.ts";
import { diceScores, hd95, meanPerClass, nanMeanPerClass } from "./metrics.ts";
import type { SegmentationModel } from "./model.ts";

/** Slices the network sees at once during inference. */
const SLICES_AT_ONCE = 8;

/** Dice and HD95 of a split's volumes on one grid, averaged over volumes. */
export interface GridScores {
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
}

/** One volume's scores: Dice and HD95 (`NaN` / `null` where undefined) by class name. */
export interface VolumeScores {
  /** Dice by class name, on the network's grid. */
  dice: Record<string, number>;
  /** HD95 by class name, on the network's grid. */
  hd95: Record<string, number>;
  /** Dice by class name on the volume's source grid, when the evaluation scored it there. */
  dice_source?: Record<string, number>;
  /** HD95 by class name on the volume's source grid, when the evaluation scored it there. */
  hd95_source?: Record<string, number>;
}

/**
 * Evaluation of one split. The unsuffixed scores are on the network's grid: predictions and
 * labels at the network's input size (labels resized by nearest neighbour when the dataset was
 * loaded). The `_source` ones, present when the evaluation was asked for them
 * ({@linkcode EvaluateOptions.sourceGrid}) and every volume has a source file, are on each
 * volume's own grid: the class probabilities brought back onto the file's grid before the
 * argmax, scored against the label as stored (as nnU-Net and the challenges score).
 */
export interface Evaluation extends GridScores {
  /** Per volume, by volume id. */
  per_volume: Record<string, VolumeScores>;
  /** {@linkcode GridScores.dice} on the source grids. */
  dice_source?: Record<string, number>;
  /** {@linkcode GridScores.dice_mean} on the source grids. */
  dice_source_mean?: number;
  /** {@linkcode GridScores.hd95} on the source grids. */
  hd95_source?: Record<string, number>;
  /** {@linkcode GridScores.hd95_mean} on the source grids. */
  hd95_source_mean?: number;
  /** {@linkcode GridScores.hd95_unit} on the source grids (`mm` where the files record it). */
  hd95_source_unit?: "mm" | "voxels";
  /** {@linkcode GridScores.hd95_undefined} on the source grids. */
  hd95_source_undefined?: Record<string, number>;
  /** Why the source-grid scores are missing, when they were asked for (generated volumes ...). */
  source_grid_missing?: string;
}

/** Options of `Trainer.evaluate` and {@linkcode evaluateVolumes}. */
export interface EvaluateOptions {
  /**
   * Called with each volume, its predicted labels and the class probabilities they are the
   * argmax of (`[D, H, W, C]`, channels last) (`--export`), and its prediction on its source
   * grid when the evaluation made one; awaited before the next volume.
   */
  onPrediction?: (
    volume: Volume,
    prediction: Uint8Array,
    probabilities: Float32Array,
    onSource: SourceGridPrediction | null,
  ) => unknown;
  /**
   * Also score each volume on its source file's grid (`VolumeSource.toSourceGrid` in dataset.ts):
   * `require`: a volume whose file cannot be read again is an error; `try`: the source-grid
   * scores are left out and `source_grid_missing` says why. Volumes without a source file
   * (generated data, whose grid is the network's) are never an error: `source_grid_missing`
   * says so.
   */
  sourceGrid?: "require" | "try";
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

/** Dice and HD95 of each volume of one grid, turned into {@linkcode GridScores}. */
class GridRows {
  readonly dice: number[][] = [];
  readonly hd: number[][] = [];
  #withSpacing = 0;

  constructor(readonly classNames: string[]) {}

  /** Score one volume; returns its Dice and HD95 by class name. */
  add(
    pred: Uint8Array,
    truth: Uint8Array,
    shape: readonly number[],
    spacing: readonly number[] | undefined,
  ): { dice: Record<string, number>; hd95: Record<string, number> } {
    const scores = diceScores(pred, truth, this.classNames.length);
    const hd = this.classNames.slice(1).map((_, i) => hd95(pred, truth, shape, spacing, i + 1));
    this.dice.push(scores);
    this.hd.push(hd);
    if (spacing) this.#withSpacing++;
    return { dice: this.byClass(scores), hd95: this.byClass(hd) };
  }

  byClass(values: number[]): Record<string, number> {
    return Object.fromEntries(this.classNames.slice(1).map((c, i) => [c, values[i]]));
  }

  scores(): GridScores {
    const mean = meanPerClass(this.dice);
    const hdMean = nanMeanPerClass(this.hd);
    const defined = hdMean.mean.filter((x) => !Number.isNaN(x));
    return {
      dice: this.byClass(mean),
      dice_mean: mean.reduce((a, b) => a + b, 0) / Math.max(mean.length, 1),
      hd95: this.byClass(hdMean.mean),
      hd95_mean: defined.length ? defined.reduce((a, b) => a + b, 0) / defined.length : NaN,
      hd95_unit: this.#withSpacing === this.dice.length ? "mm" : "voxels",
      hd95_undefined: this.byClass(hdMean.undefinedCount),
    };
  }
}

/** Why `volumes` cannot all be scored on their source grid, or `null` when they can. */
function sourceGridUnavailable(volumes: Volume[]): string | null {
  const generated = volumes.filter((v) => !v.source).length;
  if (generated) {
    return `${generated} of ${volumes.length} volume(s) have no source file (generated data, ` +
      `whose grid is the network's)`;
  }
  const cannot = volumes.filter((v) => !v.source!.toSourceGrid).length;
  if (cannot) {
    return `${cannot} of ${volumes.length} volume(s) come from a dataset that cannot bring ` +
      `predictions back onto their files' grid (its sources have no toSourceGrid())`;
  }
  return null;
}

/**
 * 3D Dice and HD95 per foreground class of `model` on `volumes`, averaged over volumes (HD95
 * over the volumes where it is defined); with `options.sourceGrid`, on each volume's source
 * grid too.
 */
export async function evaluateVolumes(
  volumes: Volume[],
  model: SegmentationModel,
  classNames: string[],
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const network = new GridRows(classNames);
  const source = new GridRows(classNames);
  const perVolume: Evaluation["per_volume"] = {};
  let missing = options.sourceGrid ? sourceGridUnavailable(volumes) : null;
  for (const v of volumes) {
    const { labels: pred, probabilities } = await predictVolume(model, v);
    let onSource: SourceGridPrediction | null = null;
    if (options.sourceGrid && missing === null) {
      try {
        onSource = await v.source!.toSourceGrid!(probabilities, classNames.length);
        if (!onSource.label) {
          throw new UserError(`"${v.source!.path}" (volume "${v.id}") has no label to score`);
        }
      } catch (error) {
        if (options.sourceGrid === "require") throw error;
        onSource = null;
        missing = `volume "${v.id}": ${(error as Error).message}`;
      }
    }
    await options.onPrediction?.(v, pred, probabilities, onSource);
    perVolume[v.id] = network.add(pred, v.label, v.shape, v.spacing);
    if (onSource) {
      const s = source.add(onSource.labels, onSource.label!, onSource.shape, onSource.spacing);
      perVolume[v.id].dice_source = s.dice;
      perVolume[v.id].hd95_source = s.hd95;
    }
  }
  const ev: Evaluation = { ...network.scores(), per_volume: perVolume };
  if (!options.sourceGrid) return ev;
  if (missing !== null) {
    for (const scores of Object.values(perVolume)) {
      delete scores.dice_source;
      delete scores.hd95_source;
    }
    return { ...ev, source_grid_missing: missing };
  }
  const s = source.scores();
  return {
    ...ev,
    dice_source: s.dice,
    dice_source_mean: s.dice_mean,
    hd95_source: s.hd95,
    hd95_source_mean: s.hd95_mean,
    hd95_source_unit: s.hd95_unit,
    hd95_source_undefined: s.hd95_undefined,
  };
}

/** `RV 81.23 Myo 70.12 LV 90.01 %` (Dice in percent, as every line shown to a user). */
export function formatDice(dice: Record<string, number>): string {
  return Object.entries(dice).map(([k, v]) => `${k} ${(100 * v).toFixed(2)}`).join(" ") + " %";
}

/** An evaluation's source-grid scores as {@linkcode GridScores}, or `null` when it has none. */
export function sourceGridScores(ev: Partial<Evaluation>): GridScores | null {
  if (!ev.dice_source || typeof ev.dice_source_mean !== "number") return null;
  return {
    dice: ev.dice_source,
    dice_mean: ev.dice_source_mean,
    hd95: ev.hd95_source ?? {},
    hd95_mean: ev.hd95_source_mean ?? NaN,
    hd95_unit: ev.hd95_source_unit ?? "voxels",
    hd95_undefined: ev.hd95_source_undefined ?? {},
  };
}
