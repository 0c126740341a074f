/**
 * Learning curves as data: `metrics.jsonl` read into each loss term's and each validation Dice's
 * points against the iteration, the mean of several seeds with their range, and binning that
 * smooths noisy per-iteration losses.
 *
 * @module
 */

/** One run's curves. */
export interface RunCurves {
  /** Legend label (`method` or `method s<seed>`). */
  label: string;
  /** Loss terms by name (`loss`, `sup`, regularizers): [iteration, value] points. */
  terms: Record<string, Array<[number, number]>>;
  /** Validation Dice by name (`mean` and each class). */
  validation: Record<string, Array<[number, number]>>;
  /** A mean over seeds ({@linkcode meanCurves}): the seeds' range, `[iteration, min, max]`. */
  termBands?: Record<string, Array<[number, number, number]>>;
  /** The same for {@linkcode RunCurves.validation}. */
  validationBands?: Record<string, Array<[number, number, number]>>;
}

/**
 * The mean of several runs' curves (seeds of one method), at the iterations they all logged,
 * with the seeds' range (min to max) as a band. A curve that no iteration is common to is left
 * out.
 */
export function meanCurves(runs: RunCurves[], label: string): RunCurves {
  const average = (
    pick: (r: RunCurves) => Record<string, Array<[number, number]>>,
  ): [Record<string, Array<[number, number]>>, Record<string, Array<[number, number, number]>>] => {
    const mean: Record<string, Array<[number, number]>> = {};
    const band: Record<string, Array<[number, number, number]>> = {};
    const names = [...new Set(runs.flatMap((r) => Object.keys(pick(r))))];
    for (const k of names) {
      const maps = runs.map((r) => new Map(pick(r)[k] ?? []));
      const xs = [...maps[0].keys()].filter((x) => maps.every((m) => m.has(x)));
      if (xs.length === 0) continue;
      mean[k] = [];
      band[k] = [];
      for (const x of xs) {
        const ys = maps.map((m) => m.get(x)!);
        mean[k].push([x, ys.reduce((a, y) => a + y, 0) / ys.length]);
        band[k].push([x, Math.min(...ys), Math.max(...ys)]);
      }
    }
    return [mean, band];
  };
  const [terms, termBands] = average((r) => r.terms);
  const [validation, validationBands] = average((r) => r.validation);
  return { label, terms, validation, termBands, validationBands };
}

/** Read `metrics.jsonl` into curves (lines cut by a crash are skipped). */
export function parseMetrics(text: string, label: string): RunCurves {
  const terms: RunCurves["terms"] = {};
  const validation: RunCurves["validation"] = {};
  const push = (to: Record<string, Array<[number, number]>>, k: string, it: number, v: unknown) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return;
    (to[k] ??= []).push([it, v]);
  };
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const it = rec.iteration;
    if (typeof it !== "number") continue;
    if ("val_dice_mean" in rec) {
      push(validation, "mean", it, rec.val_dice_mean);
      for (const [k, v] of Object.entries((rec.val_dice ?? {}) as Record<string, unknown>)) {
        push(validation, k, it, v);
      }
      continue;
    }
    for (const [k, v] of Object.entries(rec)) {
      if (["iteration", "seconds", "lr", "ramp"].includes(k) || k.startsWith("seconds_")) continue;
      push(terms, k, it, v);
    }
  }
  return { label, terms, validation };
}

/** Average points into at most `bins` bins along x (smooths noisy per-iteration losses). */
export function binPoints(points: Array<[number, number]>, bins = 300): Array<[number, number]> {
  if (points.length <= bins) return points;
  const lo = points[0][0];
  const hi = points[points.length - 1][0];
  const width = (hi - lo) / bins || 1;
  const out: Array<[number, number]> = [];
  let k = -1;
  let sx = 0;
  let sy = 0;
  let n = 0;
  for (const [x, y] of points) {
    const b = Math.min(bins - 1, Math.floor((x - lo) / width));
    if (b !== k && n > 0) {
      out.push([sx / n, sy / n]);
      sx = sy = n = 0;
    }
    k = b;
    sx += x;
    sy += y;
    n++;
  }
  if (n > 0) out.push([sx / n, sy / n]);
  return out;
}
