/**
 * Segmentation metrics on label volumes.
 *
 * @module
 */

/**
 * Dice of each class `1..numClasses-1` between two label arrays of one 3D volume.
 *
 * Empty cases: when both the prediction and the truth lack a class, its Dice is **1** (nothing
 * to find, nothing found); when only one of them has it, the Dice is 0.
 *
 * @example
 * ```ts
 * import { diceScores } from "./metrics.ts";
 * diceScores(new Uint8Array([0, 1, 1]), new Uint8Array([0, 1, 0]), 2); // [2/3]
 * ```
 */
export function diceScores(pred: Uint8Array, truth: Uint8Array, numClasses: number): number[] {
  if (pred.length !== truth.length) {
    throw new Error(`diceScores: ${pred.length} predicted voxels for ${truth.length} labels`);
  }
  const inter = new Float64Array(numClasses);
  const np = new Float64Array(numClasses);
  const nt = new Float64Array(numClasses);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i], t = truth[i];
    np[p]++;
    nt[t]++;
    if (p === t) inter[p]++;
  }
  const out: number[] = [];
  for (let c = 1; c < numClasses; c++) {
    const denom = np[c] + nt[c];
    out.push(denom === 0 ? 1 : (2 * inter[c]) / denom);
  }
  return out;
}

/** Mean of the per-volume scores, per class. */
export function meanPerClass(rows: number[][]): number[] {
  if (rows.length === 0) return [];
  return rows[0].map((_, c) => rows.reduce((s, r) => s + r[c], 0) / rows.length);
}
