/**
 * Source-grid scores added to a finished run's `summary.json` (`eval <run-dir> --grid source
 * --write`): the `_source` keys of a new evaluation of the run's final weights are merged into
 * the summary, every other key kept as it was, after checking that the new evaluation's
 * network-grid scores are the summary's (the same weights, the same volumes).
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import type { Evaluation } from "../core/evaluate.ts";
import type { RunEnvironment } from "../core/provenance.ts";

/** The top-level keys an evaluation on the source grid adds. */
export const SOURCE_KEYS = [
  "dice_source",
  "dice_source_mean",
  "hd95_source",
  "hd95_source_mean",
  "hd95_source_unit",
  "hd95_source_undefined",
] as const;

/**
 * The most the network-grid mean Dice of the new evaluation may differ from the summary's (a
 * fraction: 0.1 point), to allow for another backend's rounding; more means other weights or
 * other volumes.
 */
export const SAME_WEIGHTS_TOLERANCE = 1e-3;

/** Where the added scores came from, recorded as `source_evaluation` in the summary. */
export interface SourceEvaluationNote {
  /** The command that added them. */
  command: string;
  /** The checkpoint evaluated (`latest.ckpt`: the final weights the summary describes). */
  checkpoint: string;
  /** When (ISO 8601). */
  date: string;
  /** The framework that computed them. */
  environment: RunEnvironment;
  /**
   * The largest difference between a volume's network-grid Dice (any class) in the summary and
   * in the new evaluation: 0 when the weights and the backend are the summary's.
   */
  largest_volume_difference?: number;
  /**
   * When the checkpoint is another run's (`eval --checkpoint-from`, for a run that kept none):
   * which run, and why its weights are this summary's.
   */
  checkpoint_from?: string;
}

type Json = Record<string, unknown>;

/** The largest |difference| between `part`'s per-volume network-grid Dice and `ev`'s. */
function largestVolumeDifference(part: Json, ev: Evaluation): number {
  let largest = 0;
  for (const [id, v] of Object.entries((part.per_volume ?? {}) as Record<string, Json>)) {
    const dice = (v.dice ?? {}) as Record<string, number>;
    for (const [cls, d] of Object.entries(ev.per_volume[id]?.dice ?? {})) {
      const diff = typeof dice[cls] === "number" ? Math.abs(dice[cls] - d) : Infinity;
      largest = Math.max(largest, diff);
    }
  }
  return largest;
}

/**
 * An evaluation's part of a summary with `ev`'s source-grid keys merged in (a copy).
 * `perVolume`: also require each volume's Dice within the tolerance, not only the mean (for
 * weights of another run, which must be this one's to the last volume).
 */
function merged(
  part: Json,
  ev: Evaluation,
  what: string,
  file: string,
  perVolume: boolean,
): Json {
  const mean = part.dice_mean;
  if (typeof mean !== "number" || Math.abs(mean - ev.dice_mean) > SAME_WEIGHTS_TOLERANCE) {
    throw new UserError(
      `Cannot add source-grid scores to ${file}: its ${what}network-grid mean Dice ` +
        `(${typeof mean === "number" ? (100 * mean).toFixed(2) : mean} %) is not the ` +
        `checkpoint's (${(100 * ev.dice_mean).toFixed(2)} %): other weights or other ` +
        `validation volumes; nothing written`,
    );
  }
  const volumes = (part.per_volume ?? {}) as Record<string, Json>;
  const ids = Object.keys(volumes).sort(), evIds = Object.keys(ev.per_volume).sort();
  if (ids.join("\n") !== evIds.join("\n")) {
    throw new UserError(
      `Cannot add source-grid scores to ${file}: its ${what}validation volumes ` +
        `(${ids.length}) are not the evaluated ones (${evIds.length}); nothing written`,
    );
  }
  const largest = largestVolumeDifference(part, ev);
  if (perVolume && largest > SAME_WEIGHTS_TOLERANCE) {
    throw new UserError(
      `Cannot add source-grid scores to ${file}: its ${what}network-grid Dice differs from ` +
        `the checkpoint's by up to ${(100 * largest).toFixed(2)} points on a volume: other ` +
        `weights; nothing written`,
    );
  }
  const out: Json = { ...part };
  for (const k of SOURCE_KEYS) out[k] = ev[k];
  out.per_volume = Object.fromEntries(
    Object.entries(volumes).map(([id, v]) => [
      id,
      {
        ...v,
        dice_source: ev.per_volume[id].dice_source,
        hd95_source: ev.per_volume[id].hd95_source,
      },
    ]),
  );
  return out;
}

/**
 * `summary` with the source-grid scores of `ev` (the evaluated network) and `student` (a mean
 * teacher's student, when the summary has one) added, and `note` as `source_evaluation`; every
 * other key is kept. Scores already there are replaced.
 *
 * @param file The summary's path, for messages.
 * @throws {UserError} When `ev` has no source-grid scores, or its network-grid scores are not
 *   the summary's (other weights, other volumes).
 */
export function addSourceScores(
  summary: Json,
  file: string,
  scores: { evaluated: Evaluation; student?: Evaluation | null },
  note: SourceEvaluationNote,
): Json {
  const { evaluated, student } = scores;
  if (evaluated.dice_source === undefined) {
    throw new UserError(
      `Cannot add source-grid scores to ${file}: ` +
        (evaluated.source_grid_missing ?? "the evaluation has none"),
    );
  }
  // another run's weights must be this summary's volume by volume
  const perVolume = note.checkpoint_from !== undefined;
  const out = merged(summary, evaluated, "", file, perVolume);
  let largest = largestVolumeDifference(summary, evaluated);
  if (summary.student && typeof summary.student === "object") {
    if (!student || student.dice_source === undefined) {
      throw new UserError(`Cannot add source-grid scores to ${file}: its student was not scored`);
    }
    out.student = merged(summary.student as Json, student, "student's ", file, perVolume);
    largest = Math.max(largest, largestVolumeDifference(summary.student as Json, student));
  }
  out.source_evaluation = { ...note, largest_volume_difference: largest };
  return out;
}
