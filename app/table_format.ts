/**
 * A result table ({@linkcode ResultTable}) as text: Markdown with a note under it, CSV or JSON,
 * one row per method (mean (std) over seeds, the p-values, the wall time) or, `--per-seed`, one
 * row per run with its lowest class.
 *
 * @module
 */
import { cell, type ResultTable, type TableCell } from "./result_table.ts";
import { pairsForPower } from "./stats.ts";
import { UserError } from "../core/errors.ts";

/**
 * A `--power` value: a positive number of Dice points.
 *
 * @throws {UserError} Otherwise.
 */
export function parsePowerPoints(value: string): number {
  const points = Number(value);
  if (value.trim() === "" || !Number.isFinite(points) || points <= 0) {
    throw new UserError(`--power takes a positive number of Dice points, not "${value}"`);
  }
  return points;
}

/** How a table is printed. */
export interface TableFormatOptions {
  /** One row per run (`--per-seed`). */
  perSeed?: boolean;
  /**
   * `--power D`: a column with the seeds the seed-level test needs to detect a true difference
   * of `D` points (one-sided, level 0.05, power 0.8), from each row's measured spread of seed
   * differences against the baseline.
   */
  power?: number;
}

/** The most seeds `--power` looks at. */
const MAX_POWER_SEEDS = 1000;

/** Seeds needed for `points` at 80 % power from a seed test's spread, as text. */
function seedsForPower(sd: number, points: number): string {
  if (!(Number.isFinite(sd) && sd > 0)) return "n/a";
  const n = pairsForPower(points, sd, 0.05, 0.8, MAX_POWER_SEEDS);
  return n === null ? `>${MAX_POWER_SEEDS}` : String(n);
}

/** `85.08 (1.23)`, or `85.08` for one seed. */
export function formatCell(c: TableCell | undefined): string {
  if (!c || c.values.length === 0) return "";
  return Number.isFinite(c.std) ? `${c.mean.toFixed(2)} (${c.std.toFixed(2)})` : c.mean.toFixed(2);
}

/** Mean seconds as minutes, `45.9`; empty without values. */
export function formatMinutes(c: TableCell | undefined): string {
  if (!c || c.values.length === 0) return "";
  return (c.mean / 60).toFixed(1);
}

/** A p-value as `0.0367`, `3.2e-5`, or `n/a`. */
export function formatP(p: number): string {
  if (!Number.isFinite(p)) return "n/a";
  if (p === 0) return "0";
  return p < 0.001 ? p.toExponential(1) : p.toFixed(4);
}

/** The table as a header and rows of strings (what `md` and `csv` print). */
export function tableCells(
  table: ResultTable,
  options: TableFormatOptions = {},
): { header: string[]; rows: string[][] } {
  const power = table.baseline !== null ? options.power : undefined;
  const many = table.datasets.length > 1;
  const header = ["method"];
  for (const d of table.datasets) {
    const prefix = many ? `${d.id} ` : "";
    header.push(`${prefix}seeds`);
    if (d.classes.length > 1) { for (const c of d.classes) header.push(`${prefix}${c}`); }
    header.push(`${prefix}mean`);
    if (table.baseline !== null) {
      header.push(`${prefix}p (${table.baseline} >)`, `${prefix}p seeds`);
    }
    if (power !== undefined) header.push(`${prefix}seeds for ${power}`);
    header.push(`${prefix}min`);
  }
  const rows = table.rows.map((row) => {
    const out = [row.method];
    for (const d of table.datasets) {
      const e = row.datasets[d.id];
      out.push(e ? String(e.seeds.length) : "");
      if (d.classes.length > 1) { for (const c of d.classes) out.push(formatCell(e?.dice[c])); }
      out.push(formatCell(e?.dice_mean));
      if (table.baseline !== null) {
        out.push(
          !e ? "" : row.method === table.baseline ? "-" : e.test ? formatP(e.test.p) : "n/a",
          !e
            ? ""
            : row.method === table.baseline
            ? "-"
            : e.seedTest
            ? formatP(e.seedTest.p)
            : "n/a",
        );
      }
      if (power !== undefined) {
        out.push(
          !e
            ? ""
            : row.method === table.baseline
            ? "-"
            : e.seedTest
            ? seedsForPower(e.seedTest.sd, power)
            : "n/a",
        );
      }
      out.push(formatMinutes(e?.seconds) + (e?.secondsTrainOnly ? "†" : ""));
    }
    return out;
  });
  return { header, rows };
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Render a table as Markdown (`md`, with a note under it), `csv` or `json`. */
export function formatTable(
  table: ResultTable,
  format: "md" | "csv" | "json",
  options: TableFormatOptions = {},
): string {
  if (format === "json") {
    return JSON.stringify(
      table,
      (_k, v) => typeof v === "number" && !Number.isFinite(v) ? null : v,
      2,
    ) +
      "\n";
  }
  const { header, rows } = options.perSeed ? perSeedCells(table) : tableCells(table, options);
  if (format === "csv") return renderCells(header, rows, "csv");
  if (options.perSeed) {
    const perSeedNote = `3D Dice (%) of each run on the validation volumes${gridNote(table)}; ` +
      "lowest: its lowest class. best: the run's highest validation mean Dice during training " +
      "(network grid) and its iteration, chosen on these same volumes: it shows a run that " +
      "peaked and fell, it is no result. min: the run's wall time in minutes (summary.json " +
      "seconds_wall)." + leftOutNote(table);
    return renderCells(header, rows, "md", perSeedNote);
  }
  const note = `3D Dice (%) on the validation volumes${gridNote(table)}: mean (sample std) over ` +
    "seeds." +
    (table.baseline !== null
      ? ` p: one-sided paired t-test of ${table.baseline} > method on the mean foreground Dice ` +
        "of each validation volume, paired by (volume, seed); p seeds: the same test on each " +
        "seed's mean Dice, paired by seed (the seed is the unit: the claims rest on it)."
      : "") +
    (table.baseline !== null && options.power !== undefined
      ? ` seeds for ${options.power}: the seeds the seed-level test needs to detect a true ` +
        `difference of ${options.power} points with 80 % power at level 0.05 (one-sided), from ` +
        "the row's measured standard deviation of its seed differences."
      : "") +
    " min: mean wall time of a run in minutes (summary.json seconds_wall)." +
    (table.rows.some((r) => Object.values(r.datasets).some((e) => e.secondsTrainOnly))
      ? " †: some seeds' summaries predate seconds_wall; their time is the training steps only."
      : "") +
    leftOutNote(table);
  return renderCells(header, rows, "md", note);
}

/**
 * A header and rows of strings as CSV, or as a Markdown table (first column left-aligned, the
 * others right-aligned) with `note` under it.
 */
export function renderCells(
  header: string[],
  rows: string[][],
  format: "md" | "csv",
  note = "",
): string {
  if (format === "csv") {
    return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
  }
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(" | ")} |`;
  const rule = `| ${
    widths.map((w, i) => i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":").join(" | ")
  } |`;
  return [line(header), rule, ...rows.map(line), ...(note ? ["", note] : [])].join("\n") + "\n";
}

/** How the note names the grid: nothing for the network's (the default, as ever). */
function gridNote(table: ResultTable): string {
  return table.grid === "source"
    ? ", on each scan's own grid (summary.json dice_source: probabilities resampled to the " +
      "scan's grid, then the argmax, against the stored label)"
    : "";
}

/**
 * The runs a source-grid table left out, said in its note by their last two path parts grouped by
 * folder (`full seeds 1, 2; partial seed 3`): the note is the same wherever the runs lie.
 */
function leftOutNote(table: ResultTable): string {
  const n = table.left_out.length;
  if (!n) return "";
  const byFolder = new Map<string, string[]>();
  for (const dir of table.left_out) {
    const parts = dir.split(/[\\/]+/).filter((p) => p !== "");
    const run = parts.pop() ?? dir, folder = parts.pop() ?? ".";
    byFolder.set(folder, [...byFolder.get(folder) ?? [], run]);
  }
  const said = [...byFolder].map(([folder, runs]) => {
    const seeds = runs.map((r) => /^seed(\d+)$/.exec(r)?.[1]);
    return seeds.every((s) => s !== undefined)
      ? `${folder} seed${seeds.length > 1 ? "s" : ""} ` +
        seeds.map(Number).sort((a, b) => a - b).join(", ")
      : `${folder}: ${runs.join(", ")}`;
  });
  return ` Left out: ${n} run(s) without source-grid Dice (${said.join("; ")}).`;
}

/**
 * One row per run instead of per method (`table --per-seed`): each seed's Dice (%) per class, its
 * mean and its lowest class, so that a class lost on one seed shows (the means hide it).
 */
export function perSeedCells(table: ResultTable): { header: string[]; rows: string[][] } {
  const many = table.datasets.length > 1;
  const header = ["method", "seed"];
  for (const d of table.datasets) {
    const prefix = many ? `${d.id} ` : "";
    if (d.classes.length > 1) { for (const c of d.classes) header.push(`${prefix}${c}`); }
    header.push(`${prefix}mean`);
    if (d.classes.length > 1) header.push(`${prefix}lowest`);
    header.push(`${prefix}best (iteration)`, `${prefix}min`);
  }
  const rows: string[][] = [];
  for (const row of table.rows) {
    const seeds = [
      ...new Set(Object.values(row.datasets).flatMap((e) => e.seeds)),
    ].sort((a, b) => a - b);
    for (const seed of seeds) {
      const out = [row.method, String(seed)];
      for (const d of table.datasets) {
        const e = row.datasets[d.id];
        const i = e ? e.seeds.indexOf(seed) : -1;
        const at = (c: TableCell) => (i >= 0 && i < c.values.length ? c.values[i] : NaN);
        const classes = d.classes.map((c) =>
          e?.dice[c] && e.dice[c].values.length === e.seeds.length ? at(e.dice[c]) : NaN
        );
        const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "");
        if (d.classes.length > 1) out.push(...classes.map(fmt));
        out.push(e ? fmt(at(e.dice_mean)) : "");
        if (d.classes.length > 1) {
          const known = classes.map((v, k) => [v, k] as const).filter(([v]) => Number.isFinite(v));
          const low = known.reduce<readonly [number, number] | null>(
            (m, x) => (m === null || x[0] < m[0] ? x : m),
            null,
          );
          out.push(low === null ? "" : `${d.classes[low[1]]} ${low[0].toFixed(2)}`);
        }
        const best = i >= 0 ? e?.best?.[i] : null;
        out.push(best ? `${best.dice_mean.toFixed(2)} (${best.iteration})` : "");
        const timed = e !== undefined && i >= 0 && e.seconds.values.length === e.seeds.length;
        out.push(timed ? formatMinutes(cell([e.seconds.values[i]])) : "");
      }
      rows.push(out);
    }
  }
  return { header, rows };
}
