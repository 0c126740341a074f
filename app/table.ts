/**
 * Result tables over runs (paper Table 1): one row per method, per dataset a column per class
 * and the mean, each cell the mean (sample std) in percent over seeds, and a one-sided paired
 * t-test of a baseline method against every other one, pairing the mean foreground Dice of each
 * validation volume by (volume id, seed).
 *
 * @module
 */
import { UserError } from "../core/errors.ts";
import { RunDir } from "../core/run_dir.ts";
import { mean, pairedTTestGreater, sampleStd } from "./stats.ts";
import type { Summary } from "../core/trainer.ts";
import { exists, isDirectory } from "./_fs.ts";

/**
 * The fields of `summary.json` a table reads. `seconds_wall` is missing in summaries written
 * before it existed, which have `seconds` (the training steps only) instead.
 */
export type RunSummary =
  & Pick<Summary, "method" | "dataset" | "seed" | "dice" | "dice_mean" | "per_volume">
  & Partial<Pick<Summary, "seconds_wall">>
  & { seconds?: number };

/** One finished run: its directory and `summary.json`. */
export interface RunResult {
  dir: string;
  summary: RunSummary;
}

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

const GLOB_CHARS = /[*?[]/;

function globSegmentRegExp(segment: string): RegExp {
  let re = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        let body = segment.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (body.startsWith("!")) body = "^" + body.slice(1);
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * Expand a shell-style glob (`*`, `?`, `[abc]` within one path segment) to the existing paths,
 * sorted; a pattern without glob characters is returned as is.
 */
export async function expandGlob(pattern: string): Promise<string[]> {
  if (!GLOB_CHARS.test(pattern)) return [pattern];
  const absolute = pattern.startsWith("/");
  const segments = pattern.split("/").filter((s, i) => s !== "" || i === 0);
  let current = [absolute ? "/" : ""];
  for (const segment of segments) {
    if (segment === "") continue;
    const next: string[] = [];
    for (const base of current) {
      const join = (name: string) =>
        base === "" ? name : base.endsWith("/") ? base + name : `${base}/${name}`;
      if (!GLOB_CHARS.test(segment)) {
        next.push(join(segment));
        continue;
      }
      const re = globSegmentRegExp(segment);
      try {
        for await (const e of Deno.readDir(base === "" ? "." : base)) {
          if (e.name.startsWith(".") && !segment.startsWith(".")) continue;
          if (re.test(e.name)) next.push(join(e.name));
        }
      } catch {
        // not a directory
      }
    }
    current = next;
  }
  const found: string[] = [];
  for (const p of current) if (await exists(p)) found.push(p);
  return found.sort();
}

/**
 * The run directories under `paths` (each a run directory, a glob, or a folder searched for run
 * directories): those with a `summary.json` are returned, those with a `recipe.yaml` but no
 * summary (unfinished) are listed in `unfinished`.
 */
export async function findRunDirs(
  paths: string[],
): Promise<{ finished: string[]; unfinished: string[] }> {
  const finished = new Set<string>();
  const unfinished = new Set<string>();
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (await new RunDir(dir).has("summary")) {
      finished.add(dir);
      return;
    }
    if (await new RunDir(dir).has("recipe")) {
      unfinished.add(dir);
      return;
    }
    if (depth >= 6) return;
    const children: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") {
          children.push(`${dir.replace(/\/+$/, "")}/${e.name}`);
        }
      }
    } catch {
      return;
    }
    for (const c of children.sort()) await visit(c, depth + 1);
  };
  for (const pattern of paths) {
    const matches = await expandGlob(pattern);
    if (matches.length === 0) throw new UserError(`No such run directory: ${pattern}`);
    for (const m of matches) {
      if (!(await isDirectory(m))) throw new UserError(`Not a run directory: ${m}`);
      await visit(m.replace(/(.)\/+$/, "$1"), 0);
    }
  }
  return { finished: [...finished], unfinished: [...unfinished] };
}

/** Read and check `<dir>/summary.json`. */
export async function readRunSummary(dir: string): Promise<RunSummary> {
  const file = new RunDir(dir).file("summary");
  let s: RunSummary;
  try {
    s = JSON.parse(await Deno.readTextFile(file));
  } catch (error) {
    throw new UserError(`Cannot read ${file}: ${(error as Error).message}`);
  }
  const ok = s && typeof s.method === "string" && typeof s.dataset === "string" &&
    typeof s.seed === "number" && typeof s.dice === "object" && s.dice !== null &&
    typeof s.dice_mean === "number";
  if (!ok) {
    throw new UserError(
      `${file} is not a run summary (it needs method, dataset, seed, dice and dice_mean)`,
    );
  }
  s.per_volume ??= {};
  return s;
}

/** Find and read the finished runs under `paths`; `log` receives the notes (unfinished runs). */
export async function loadRuns(
  paths: string[],
  log: (line: string) => void = (line) => console.error(line),
): Promise<RunResult[]> {
  const { finished, unfinished } = await findRunDirs(paths);
  for (const dir of unfinished) log(`note: ${dir} has no summary.json (unfinished), left out`);
  if (finished.length === 0) {
    throw new UserError(`No finished run (a directory with summary.json) in ${paths.join(" ")}`);
  }
  const runs: RunResult[] = [];
  for (const dir of finished) runs.push({ dir, summary: await readRunSummary(dir) });
  return runs;
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
}

/** A result table: see {@linkcode buildTable}. */
export interface ResultTable {
  unit: "percent";
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
}

function cell(values: number[]): TableCell {
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
 * Group runs by dataset and method and build the table. A second run of the same method, dataset
 * and seed replaces the first (with a note): list each run once.
 *
 * @throws {UserError} When `baseline` is given and no run has that method.
 */
export function buildTable(runs: RunResult[], options: TableOptions = {}): ResultTable {
  const log = options.log ?? ((line: string) => console.error(line));
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
  const methods = [...new Set(runs.map((r) => r.summary.method))].sort((a, b) => {
    const ia = PAPER_METHOD_ORDER.indexOf(a);
    const ib = PAPER_METHOD_ORDER.indexOf(b);
    if (ia >= 0 || ib >= 0) return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  });
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
          test = { n: r.n, mean_diff: r.meanDiff, t: r.t, df: r.df, p: r.p };
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
          seedTest = { n: r.n, mean_diff: r.meanDiff, t: r.t, df: r.df, p: r.p };
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
      };
    }
    return { method, datasets: entries };
  });
  return { unit: "percent", baseline, datasets, rows };
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
export function tableCells(table: ResultTable): { header: string[]; rows: string[][] } {
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
  options: { perSeed?: boolean } = {},
): string {
  if (format === "json") {
    return JSON.stringify(
      table,
      (_k, v) => typeof v === "number" && !Number.isFinite(v) ? null : v,
      2,
    ) +
      "\n";
  }
  const { header, rows } = options.perSeed ? perSeedCells(table) : tableCells(table);
  if (format === "csv") {
    return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
  }
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(" | ")} |`;
  const rule = `| ${
    widths.map((w, i) => i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":").join(" | ")
  } |`;
  if (options.perSeed) {
    const perSeedNote = "3D Dice (%) of each run on the validation volumes; lowest: its lowest " +
      "class. min: the run's wall time in minutes (summary.json seconds_wall).";
    return [line(header), rule, ...rows.map(line), "", perSeedNote].join("\n") + "\n";
  }
  const note = "3D Dice (%) on the validation volumes: mean (sample std) over seeds." +
    (table.baseline !== null
      ? ` p: one-sided paired t-test of ${table.baseline} > method on the mean foreground Dice ` +
        "of each validation volume, paired by (volume, seed); p seeds: the same test on each " +
        "seed's mean Dice, paired by seed (the seed is the unit: the claims rest on it)."
      : "") +
    " min: mean wall time of a run in minutes (summary.json seconds_wall)." +
    (table.rows.some((r) => Object.values(r.datasets).some((e) => e.secondsTrainOnly))
      ? " †: some seeds' summaries predate seconds_wall; their time is the training steps only."
      : "");
  return [line(header), rule, ...rows.map(line), "", note].join("\n") + "\n";
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
    header.push(`${prefix}min`);
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
        const timed = e !== undefined && i >= 0 && e.seconds.values.length === e.seeds.length;
        out.push(timed ? formatMinutes(cell([e.seconds.values[i]])) : "");
      }
      rows.push(out);
    }
  }
  return { header, rows };
}
