/**
 * Result tables over runs (paper Table 1): one row per method, per dataset a column per class
 * and the mean, each cell the mean (sample std) in percent over seeds, and a one-sided paired
 * t-test of a baseline method against every other one, pairing the mean foreground Dice of each
 * validation volume by (volume id, seed).
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import { mean, pairedTTestGreater, sampleStd } from "./stats.ts";
import type { RunResult, RunSummary } from "./find_runs.ts";

/** The paper's row order (Table 1); other methods follow, sorted. */
export const PAPER_METHOD_ORDER = [
  "full",
  "partial",
  "entropy-min",
  "mean-teacher",
  "mi",
  "consistency",
  "ours-mse",
  "ours-kl",
];

/** Sort comparator of method ids: {@linkcode PAPER_METHOD_ORDER}'s first, then the others by name. */
export function byPaperOrder(a: string, b: string): number {
  const ia = PAPER_METHOD_ORDER.indexOf(a);
  const ib = PAPER_METHOD_ORDER.indexOf(b);
  if (ia >= 0 || ib >= 0) return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Mean and sample standard deviation of a column over seeds, in percent. */
export interface TableCell {
  /** Per-seed values (percent), in seed order. */
  values: number[];
  mean: number;
  /** Sample standard deviation (ddof 1); `NaN` (`null` in JSON) with one seed. */
  std: number;
}

/** A paired test of the baseline against one method on one dataset. */
export interface TableTest {
  /** Number of pairs: (volume id, seed) pairs, or seeds for the seed-level test. */
  n: number;
  /** Mean of baseline minus method, per-volume mean foreground Dice, in percent. */
  mean_diff: number;
  /** Sample standard deviation of those differences, in percent. */
  sd: number;
  t: number;
  df: number;
  /** One-sided p-value of H1: baseline > method. */
  p: number;
}

/** One method's cells on one dataset. */
export interface TableEntry {
  seeds: number[];
  /** By class name. */
  dice: Record<string, TableCell>;
  dice_mean: TableCell;
  /**
   * Wall time of each run in seconds (`summary.json` `seconds_wall`), over the seeds whose
   * summary has it; for older summaries `seconds`, the training steps only.
   */
  seconds: TableCell;
  /** Whether some seed's time is the older `seconds` (training steps only). */
  secondsTrainOnly: boolean;
  /**
   * The test against the baseline over (volume, seed) pairs (`null` for the baseline itself or
   * without pairs). Its pairs are not independent (the same volumes recur at every seed): it
   * overstates the evidence; see `seedTest`.
   */
  test: TableTest | null;
  /**
   * The test against the baseline whose unit is the seed: each seed's mean foreground Dice
   * (`dice_mean`), paired by seed (`null` for the baseline itself or with fewer than 2 shared
   * seeds). What a claim about a method rests on.
   */
  seedTest: TableTest | null;
  /** The run directories. */
  runs: string[];
  /**
   * Each seed's best validation during training (`summary.json` `best`: the highest mean Dice
   * on the network's grid, in percent, and its iteration), `null` where the summary has none.
   * Chosen on the validation volumes themselves: a diagnostic of a run that peaked and fell, not
   * a result.
   */
  best: Array<{ iteration: number; dice_mean: number } | null>;
}

/** Which Dice a table shows: on the network's grid (`dice`) or on each scan's own (`dice_source`). */
export type TableGrid = "network" | "source";

/** A result table: see {@linkcode buildTable}. */
export interface ResultTable {
  unit: "percent";
  /** The grid its Dice are on. */
  grid: TableGrid;
  /**
   * Runs left out because their summary has no Dice on that grid (`source`: summaries written
   * before the source-grid scores, until `eval <run> --grid source --write` adds them).
   */
  left_out: string[];
  /** The baseline of the tests, or `null` when there is none. */
  baseline: string | null;
  datasets: Array<{ id: string; classes: string[] }>;
  rows: Array<{ method: string; datasets: Record<string, TableEntry> }>;
}

/** Options of {@linkcode buildTable}. */
export interface TableOptions {
  /** The method the others are tested against. @default "ours-kl" when present */
  baseline?: string;
  /** Notes (duplicate runs), default to standard error. */
  log?: (line: string) => void;
  /** The grid of the Dice shown. @default "network" */
  grid?: TableGrid;
}

/**
 * A summary as its source-grid scores: `dice_source` as `dice` (and the per-volume ones), or
 * `null` when it has none.
 */
export function onSourceGrid(s: RunSummary): RunSummary | null {
  if (!s.dice_source || typeof s.dice_source !== "object" || !isNumber(s.dice_source_mean)) {
    return null;
  }
  const perVolume: RunSummary["per_volume"] = {};
  for (const [id, v] of Object.entries(s.per_volume ?? {})) {
    if (!v.dice_source) return null;
    perVolume[id] = { dice: v.dice_source, hd95: v.hd95_source ?? {} };
  }
  return { ...s, dice: s.dice_source, dice_mean: s.dice_source_mean, per_volume: perVolume };
}

/**
 * The runs a table on `grid` is made of: with `source`, each summary read as its source-grid
 * scores ({@linkcode onSourceGrid}), those without them left out (never mixed in).
 *
 * @throws {UserError} When no run has scores on that grid.
 */
function runsOnGrid(
  runs: RunResult[],
  grid: TableGrid,
  log: (line: string) => void,
): { runs: RunResult[]; leftOut: string[] } {
  if (grid === "network") return { runs, leftOut: [] };
  const kept: RunResult[] = [], leftOut: string[] = [];
  for (const run of runs) {
    const summary = onSourceGrid(run.summary);
    if (summary) kept.push({ dir: run.dir, summary });
    else leftOut.push(run.dir);
  }
  for (const dir of leftOut) {
    log(
      `note: ${dir} has no source-grid Dice, left out (add them: deno task eval ${dir} ` +
        `--grid source --write, where the folder has its latest.ckpt; for one that kept none, ` +
        `as results/ keeps none, train its recipe and seed again and add --checkpoint-from ` +
        `<that run>)`,
    );
  }
  if (kept.length === 0) {
    throw new UserError(
      `No run has source-grid Dice (summaries written before them); add them with ` +
        `deno task eval <run-dir> --grid source --write`,
    );
  }
  return { runs: kept, leftOut };
}

/** A {@linkcode TableCell} of `values`: their mean and sample standard deviation. */
export function cell(values: number[]): TableCell {
  return { values, mean: mean(values), std: sampleStd(values) };
}

function isNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** A run's wall time: `seconds_wall`, else the older `seconds` (training steps), else `null`. */
function wallSeconds(s: RunSummary): number | null {
  if (isNumber(s.seconds_wall)) return s.seconds_wall;
  return isNumber(s.seconds) ? s.seconds : null;
}

/** Mean foreground Dice of each validation volume of a run, by volume id. */
function volumeMeans(s: RunSummary): Map<string, number> {
  const out = new Map<string, number>();
  for (const [id, v] of Object.entries(s.per_volume ?? {})) {
    const d = Object.values(v.dice ?? {}).filter((x): x is number => typeof x === "number");
    if (d.length) out.set(id, mean(d));
  }
  return out;
}

/**
 * Group runs by dataset and method and build the table (of the Dice on `options.grid`: runs
 * without them are left out, with a note). A second run of the same method, dataset and seed
 * replaces the first (with a note): list each run once.
 *
 * @throws {UserError} When `baseline` is given and no run has that method.
 */
export function buildTable(all: RunResult[], options: TableOptions = {}): ResultTable {
  const log = options.log ?? ((line: string) => console.error(line));
  const grid = options.grid ?? "network";
  const { runs, leftOut } = runsOnGrid(all, grid, log);
  // dataset -> method -> seed -> run
  const groups = new Map<string, Map<string, Map<number, RunResult>>>();
  const classesOf = new Map<string, string[]>();
  for (const run of runs) {
    const s = run.summary;
    if (!groups.has(s.dataset)) groups.set(s.dataset, new Map());
    const byMethod = groups.get(s.dataset)!;
    if (!byMethod.has(s.method)) byMethod.set(s.method, new Map());
    const bySeed = byMethod.get(s.method)!;
    const previous = bySeed.get(s.seed);
    if (previous) {
      log(
        `note: ${previous.dir} and ${run.dir} are both ${s.method}, seed ${s.seed} on ` +
          `${s.dataset}; using ${run.dir}`,
      );
    }
    bySeed.set(s.seed, run);
    const classes = classesOf.get(s.dataset) ?? [];
    for (const c of Object.keys(s.dice)) if (!classes.includes(c)) classes.push(c);
    classesOf.set(s.dataset, classes);
  }
  const methods = [...new Set(runs.map((r) => r.summary.method))].sort(byPaperOrder);
  let baseline: string | null = options.baseline ?? "ours-kl";
  if (!methods.includes(baseline)) {
    if (options.baseline !== undefined) {
      throw new UserError(
        `No run of the baseline method "${options.baseline}"; the runs' methods: ` +
          methods.join(", "),
      );
    }
    baseline = null;
  }
  const datasets = [...groups.keys()].sort().map((id) => ({
    id,
    classes: classesOf.get(id)!,
  }));
  const rows: ResultTable["rows"] = methods.map((method) => {
    const entries: Record<string, TableEntry> = {};
    for (const { id, classes } of datasets) {
      const bySeed = groups.get(id)!.get(method);
      if (!bySeed) continue;
      const seeds = [...bySeed.keys()].sort((a, b) => a - b);
      const seedRuns = seeds.map((s) => bySeed.get(s)!);
      const dice: Record<string, TableCell> = {};
      for (const c of classes) {
        dice[c] = cell(
          seedRuns.map((r) => r.summary.dice[c]).filter((v) => typeof v === "number").map((v) =>
            100 * v
          ),
        );
      }
      let test: TableTest | null = null;
      const base = baseline === null ? undefined : groups.get(id)!.get(baseline);
      if (base && method !== baseline) {
        const a: number[] = [];
        const b: number[] = [];
        for (const seed of seeds) {
          const other = base.get(seed);
          if (!other) continue;
          const mine = volumeMeans(bySeed.get(seed)!.summary);
          for (const [vol, value] of volumeMeans(other.summary)) {
            const v = mine.get(vol);
            if (v === undefined) continue;
            a.push(100 * value);
            b.push(100 * v);
          }
        }
        if (a.length > 0) {
          const r = pairedTTestGreater(a, b);
          test = { n: r.n, mean_diff: r.meanDiff, sd: r.sd, t: r.t, df: r.df, p: r.p };
        }
      }
      let seedTest: TableTest | null = null;
      if (base && method !== baseline) {
        const shared = seeds.filter((seed) => base.has(seed));
        if (shared.length >= 2) {
          const r = pairedTTestGreater(
            shared.map((seed) => 100 * base.get(seed)!.summary.dice_mean),
            shared.map((seed) => 100 * bySeed.get(seed)!.summary.dice_mean),
          );
          seedTest = { n: r.n, mean_diff: r.meanDiff, sd: r.sd, t: r.t, df: r.df, p: r.p };
        }
      }
      entries[id] = {
        seeds,
        dice,
        dice_mean: cell(seedRuns.map((r) => 100 * r.summary.dice_mean)),
        seconds: cell(
          seedRuns.map((r) => wallSeconds(r.summary)).filter((v): v is number => v !== null),
        ),
        secondsTrainOnly: seedRuns.some((r) =>
          !isNumber(r.summary.seconds_wall) && isNumber(r.summary.seconds)
        ),
        test,
        seedTest,
        runs: seedRuns.map((r) => r.dir),
        best: seedRuns.map(({ summary: { best } }) =>
          best && isNumber(best.iteration) && isNumber(best.dice_mean)
            ? { iteration: best.iteration, dice_mean: 100 * best.dice_mean }
            : null
        ),
      };
    }
    return { method, datasets: entries };
  });
  return { unit: "percent", grid, left_out: leftOut, baseline, datasets, rows };
}
