/**
 * Two sets of runs of the same methods side by side (`table <runs> --versus <other runs>`): what
 * a change of protocol did to each method. Per method and dataset: each set's mean (std) over
 * seeds and, over the seeds both sets have, the mean difference of each class's Dice and of the
 * mean, with a two-sided paired t-test whose unit is the seed. A seed draws the labeled patients
 * and the initial weights, so seed k of one protocol and seed k of the other share their split:
 * the pairing removes that part of the spread.
 *
 * @module
 */
import { byPaperOrder, type ResultTable, type TableCell, type TableEntry } from "./result_table.ts";
import { pairedTTestGreater } from "./stats.ts";
import { formatCell, formatP, renderCells } from "./table_format.ts";

/** One method on one dataset in both sets. */
export interface ComparedEntry {
  /** This set's seeds and mean (std), or `null` where it has no such run. */
  this: { seeds: number[]; dice_mean: TableCell } | null;
  /** The other set's (`--versus`). */
  versus: { seeds: number[]; dice_mean: TableCell } | null;
  /** The seeds both sets have. */
  paired: number[];
  /** By class name: mean over the paired seeds of this minus versus, in points. */
  diff: Record<string, number>;
  /** The same for the mean foreground Dice. */
  diff_mean: number;
  /** Two-sided paired t-test of the mean Dice over the paired seeds (`NaN` under 2 seeds). */
  p: number;
}

/** The comparison of two tables: see {@linkcode compareTables}. */
export interface ProtocolComparison {
  /** How the note names the two sets (the paths as typed). */
  labels: { this: string; versus: string };
  grid: ResultTable["grid"];
  datasets: Array<{ id: string; classes: string[] }>;
  rows: Array<{ method: string; datasets: Record<string, ComparedEntry> }>;
}

/** The entry's per-seed values of `c` by seed, or `null` when a seed lacks one. */
function bySeed(e: TableEntry, c: TableCell): Map<number, number> | null {
  if (c.values.length !== e.seeds.length) return null;
  return new Map(e.seeds.map((s, i) => [s, c.values[i]]));
}

/** Mean over `seeds` of `a - b`; `NaN` without seeds or values. */
function meanDiff(a: Map<number, number> | null, b: Map<number, number> | null, seeds: number[]) {
  if (!a || !b || seeds.length === 0) return NaN;
  return seeds.reduce((sum, s) => sum + a.get(s)! - b.get(s)!, 0) / seeds.length;
}

/**
 * Compare `mine` with `versus` (two {@linkcode buildTable} results on the same grid): a row per
 * method of either (in the paper's order), a dataset entry where either has runs.
 */
export function compareTables(
  mine: ResultTable,
  versus: ResultTable,
  labels: { this: string; versus: string },
): ProtocolComparison {
  const datasets: ProtocolComparison["datasets"] = [];
  for (const d of [...mine.datasets, ...versus.datasets]) {
    const known = datasets.find((x) => x.id === d.id);
    if (!known) datasets.push({ id: d.id, classes: [...d.classes] });
    else for (const c of d.classes) if (!known.classes.includes(c)) known.classes.push(c);
  }
  datasets.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const methods = [...new Set([...mine.rows, ...versus.rows].map((r) => r.method))]
    .sort(byPaperOrder);
  const rows = methods.map((method) => {
    const a = mine.rows.find((r) => r.method === method)?.datasets ?? {};
    const b = versus.rows.find((r) => r.method === method)?.datasets ?? {};
    const out: Record<string, ComparedEntry> = {};
    for (const { id, classes } of datasets) {
      const ea = a[id], eb = b[id];
      if (!ea && !eb) continue;
      const paired = ea && eb ? ea.seeds.filter((s) => eb.seeds.includes(s)) : [];
      const diff: Record<string, number> = {};
      for (const c of classes) {
        const ca = ea?.dice[c], cb = eb?.dice[c];
        diff[c] = ca && cb ? meanDiff(bySeed(ea, ca), bySeed(eb, cb), paired) : NaN;
      }
      const ma = ea ? bySeed(ea, ea.dice_mean) : null, mb = eb ? bySeed(eb, eb.dice_mean) : null;
      let p = NaN;
      if (ma && mb && paired.length >= 2) {
        const oneSided = pairedTTestGreater(
          paired.map((s) => ma.get(s)!),
          paired.map((s) => mb.get(s)!),
        ).p;
        p = Number.isNaN(oneSided) ? NaN : Math.min(1, 2 * Math.min(oneSided, 1 - oneSided));
      }
      out[id] = {
        this: ea ? { seeds: ea.seeds, dice_mean: ea.dice_mean } : null,
        versus: eb ? { seeds: eb.seeds, dice_mean: eb.dice_mean } : null,
        paired,
        diff,
        diff_mean: meanDiff(ma, mb, paired),
        p,
      };
    }
    return { method, datasets: out };
  });
  return { labels, grid: mine.grid, datasets, rows };
}

/** A difference in points with its sign, `+12.34`; empty when there is none. */
function formatDiff(v: number): string {
  if (!Number.isFinite(v)) return "";
  return (v >= 0 ? "+" : "") + v.toFixed(2);
}

/** The comparison as a header and rows of strings. */
export function comparisonCells(
  cmp: ProtocolComparison,
): { header: string[]; rows: string[][] } {
  const many = cmp.datasets.length > 1;
  const header = ["method"];
  for (const d of cmp.datasets) {
    const prefix = many ? `${d.id} ` : "";
    header.push(`${prefix}seeds`, `${prefix}mean`, `${prefix}versus seeds`, `${prefix}versus mean`);
    header.push(`${prefix}paired`);
    if (d.classes.length > 1) { for (const c of d.classes) header.push(`${prefix}Δ ${c}`); }
    header.push(`${prefix}Δ mean`, `${prefix}p seeds`);
  }
  const rows = cmp.rows.map((row) => {
    const out = [row.method];
    for (const d of cmp.datasets) {
      const e = row.datasets[d.id];
      out.push(
        e?.this ? String(e.this.seeds.length) : "",
        e?.this ? formatCell(e.this.dice_mean) : "",
        e?.versus ? String(e.versus.seeds.length) : "",
        e?.versus ? formatCell(e.versus.dice_mean) : "",
        e ? String(e.paired.length) : "",
      );
      if (d.classes.length > 1) {
        for (const c of d.classes) out.push(formatDiff(e?.diff[c] ?? NaN));
      }
      out.push(formatDiff(e?.diff_mean ?? NaN), e && e.paired.length >= 2 ? formatP(e.p) : "");
    }
    return out;
  });
  return { header, rows };
}

/** The note printed under the Markdown comparison. */
export function comparisonNote(cmp: ProtocolComparison): string {
  return `3D Dice (%) on the validation volumes${
    cmp.grid === "source" ? ", on each scan's own grid" : ""
  }: mean (sample std) over seeds of ${cmp.labels.this} (seeds, mean) and of ` +
    `${cmp.labels.versus} (versus). paired: the seeds both have (a seed draws the same labeled ` +
    "patients in both, and the same initial weights where the model is the same). Δ: the first " +
    "minus the versus, in points, mean over " +
    "the paired seeds; p seeds: two-sided paired t-test of the mean Dice over them (the seed is " +
    "the unit).";
}

/** Render a comparison as Markdown (with its note), CSV or JSON. */
export function formatComparison(cmp: ProtocolComparison, format: "md" | "csv" | "json"): string {
  if (format === "json") {
    return JSON.stringify(
      cmp,
      (_k, v) => typeof v === "number" && !Number.isFinite(v) ? null : v,
      2,
    ) + "\n";
  }
  const { header, rows } = comparisonCells(cmp);
  return renderCells(header, rows, format, format === "md" ? comparisonNote(cmp) : "");
}
