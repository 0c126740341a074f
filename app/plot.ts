/**
 * Figures of runs: learning curves (every loss term and the validation Dice against the
 * iteration, from `metrics.jsonl`) as a hand-written SVG, and paper Fig. 2-style overlays (a
 * validation slice in grey with each method's predicted contours, one colour per class, beside
 * the ground truth) as PNG, predicted with each run's `best.ckpt`.
 *
 * @module
 */
import { encodePng, YAML } from "../deps.ts";
import type { Volume } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe } from "../core/recipe.ts";
import { findRunDirs } from "./find_runs.ts";
import { PAPER_METHOD_ORDER } from "./result_table.ts";
import { RUN_FILES, RunDir } from "../core/run_dir.ts";
import { Trainer } from "../core/trainer.ts";

/** Line colours (Tableau 10). */
export const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/**
 * Dash patterns (SVG `stroke-dasharray`; `""` is solid), taken in turn once the ten colours are
 * used: curve `i` is drawn in `PALETTE[i % 10]` with `DASHES[floor(i / 10) % 4]`, so that up to 40
 * curves differ in colour or dash.
 */
export const DASHES = ["", "7 4", "2 3", "9 3 2 3"];

/** The colour and dash of curve `i` (see {@linkcode DASHES}). */
export function curveStyle(i: number): { colour: string; dash: string } {
  return {
    colour: PALETTE[i % PALETTE.length],
    dash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length],
  };
}

/** Contour colours of the foreground classes (RGB), class 1 first: red, green, blue, ... */
export const CLASS_COLOURS: Array<[number, number, number]> = [
  [255, 48, 48],
  [48, 230, 48],
  [64, 140, 255],
  [255, 220, 0],
  [255, 0, 255],
  [0, 230, 230],
];

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

/** {@linkcode binPoints} of a band: its lower and upper edges binned alike. */
function binBand(band: Array<[number, number, number]>): Array<[number, number, number]> {
  const lo = binPoints(band.map(([x, l]) => [x, l]));
  const hi = binPoints(band.map(([x, , h]) => [x, h]));
  return lo.map(([x, l], i) => [x, l, hi[i][1]]);
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

/** About `n` round tick values covering `[lo, hi]`. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  // integer multiples of the step, rounded, so that no tick reads -1.4e-16 instead of 0
  const tick = (k: number) => Number((k * step).toPrecision(12)) || 0;
  let k0 = Math.floor(lo / step);
  let k1 = Math.ceil(hi / step);
  if (tick(k0) > lo) k0--;
  if (tick(k1) < hi) k1++;
  const ticks: number[] = [];
  for (let k = k0; k <= k1; k++) ticks.push(tick(k));
  return ticks;
}

function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** One panel: a title and a line per run. */
interface Panel {
  title: string;
  series: Array<{
    colour: string;
    dash: string;
    points: Array<[number, number]>;
    band?: Array<[number, number, number]>;
  }>;
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const m = { l: 56, r: 12, t: 24, b: 34 };
  const pts = p.series.flatMap((s) => [
    ...s.points,
    ...(s.band ?? []).flatMap(([x, lo, hi]): Array<[number, number]> => [[x, lo], [x, hi]]),
  ]);
  const out = [`<g transform="translate(${x0},${y0})">`];
  out.push(
    `<text x="${w / 2}" y="15" text-anchor="middle" font-size="13" font-weight="bold">${
      esc(p.title)
    }</text>`,
  );
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`,
  );
  if (pts.length === 0) {
    out.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle">no data</text>`);
    return out.join("") + "</g>";
  }
  const xt = niceTicks(Math.min(...pts.map((q) => q[0])), Math.max(...pts.map((q) => q[0])));
  const yt = niceTicks(Math.min(...pts.map((q) => q[1])), Math.max(...pts.map((q) => q[1])));
  const [x1, x2, y1, y2] = [xt[0], xt[xt.length - 1], yt[0], yt[yt.length - 1]];
  const sx = (x: number) => m.l + ((x - x1) / (x2 - x1 || 1)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y1) / (y2 - y1 || 1)) * ph;
  for (const t of xt) {
    const x = sx(t).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#e4e4e4"/>` +
        `<text x="${x}" y="${m.t + ph + 14}" text-anchor="middle" font-size="10">${
          fmtTick(t)
        }</text>`,
    );
  }
  for (const t of yt) {
    const y = sy(t).toFixed(1);
    out.push(
      `<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e4e4e4"/>` +
        `<text x="${m.l - 4}" y="${y}" text-anchor="end" dominant-baseline="middle" ` +
        `font-size="10">${fmtTick(t)}</text>`,
    );
  }
  out.push(
    `<text x="${m.l + pw / 2}" y="${h - 4}" text-anchor="middle" font-size="11">iteration</text>`,
  );
  const xy = (x: number, y: number) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
  // the bands first, under every line
  for (const s of p.series) {
    if (!s.band || s.band.length < 2) continue;
    const edge = [
      ...s.band.map(([x, , hi]) => xy(x, hi)),
      ...[...s.band].reverse().map(([x, lo]) => xy(x, lo)),
    ];
    out.push(
      `<polygon points="${edge.join(" ")}" fill="${s.colour}" fill-opacity="0.18" stroke="none"/>`,
    );
  }
  for (const s of p.series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y]) => xy(x, y)).join(" ");
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    out.push(
      s.points.length === 1
        ? `<circle cx="${sx(s.points[0][0]).toFixed(1)}" cy="${
          sy(s.points[0][1]).toFixed(1)
        }" r="2.5" fill="${s.colour}"/>`
        : `<polyline points="${d}" fill="none" stroke="${s.colour}" stroke-width="1.5"${dash}/>`,
    );
  }
  return out.join("") + "</g>";
}

/**
 * Learning curves as one SVG: a panel per loss term (binned to at most 300 points per run) and
 * per validation Dice (mean, then each class), a line per run (each its own colour and dash,
 * {@linkcode curveStyle}; a mean over seeds with its band), a shared legend.
 */
export function learningCurvesSvg(runs: RunCurves[], title = "Learning curves"): string {
  const termNames: string[] = [];
  const valNames: string[] = [];
  for (const r of runs) {
    for (const k of Object.keys(r.terms)) if (!termNames.includes(k)) termNames.push(k);
    for (const k of Object.keys(r.validation)) if (!valNames.includes(k)) valNames.push(k);
  }
  const panels: Panel[] = [
    ...termNames.map((k) => ({
      title: k === "loss" ? "loss (total)" : k === "sup" ? "sup (supervised)" : k,
      series: runs.map((r, i) => ({
        ...curveStyle(i),
        points: binPoints(r.terms[k] ?? []),
        band: r.termBands?.[k] ? binBand(r.termBands[k]) : undefined,
      })),
    })),
    ...valNames.map((k) => ({
      title: `validation Dice ${k}`,
      series: runs.map((r, i) => ({
        ...curveStyle(i),
        points: r.validation[k] ?? [],
        band: r.validationBands?.[k],
      })),
    })),
  ];
  const cols = Math.min(3, Math.max(1, panels.length));
  const [pw, ph] = [380, 250];
  // four legend entries a row, two where a label is long (a run folder)
  const perRow = runs.some((r) => r.label.length > 26) ? 2 : 4;
  const legendRows = Math.ceil(runs.length / perRow);
  const top = 34 + 18 * legendRows;
  const width = cols * pw;
  const height = top + Math.ceil(panels.length / cols) * ph + 8;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="16">${esc(title)}</text>`,
  ];
  runs.forEach((r, i) => {
    const x = 20 + (i % perRow) * (width / perRow);
    const y = 34 + Math.floor(i / perRow) * 18;
    const { colour, dash } = curveStyle(i);
    const band = r.termBands || r.validationBands
      ? `<rect x="${x}" y="${y - 5}" width="24" height="10" fill="${colour}" fill-opacity="0.18"/>`
      : "";
    out.push(
      band +
        `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${colour}" stroke-width="3"${
          dash ? ` stroke-dasharray="${dash}"` : ""
        }/>` +
        `<text x="${x + 30}" y="${y}" dominant-baseline="middle" font-size="12">${
          esc(r.label)
        }</text>`,
    );
  });
  panels.forEach((p, i) => {
    out.push(panelSvg(p, (i % cols) * pw, top + Math.floor(i / cols) * ph, pw, ph));
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * An RGB panel of slice `z` of a volume: the image in grey, upscaled `scale` times (nearest),
 * with the contour of each foreground class of `labels` in its colour.
 */
export function overlayPanel(
  volume: Pick<Volume, "shape" | "image">,
  labels: Uint8Array,
  z: number,
  scale: number,
): { width: number; height: number; data: Uint8Array } {
  const [, h, w] = volume.shape;
  const W = w * scale;
  const H = h * scale;
  const off = z * h * w;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < h * w; i++) {
    const v = volume.image[off + i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const range = hi - lo || 1;
  const lab = (y: number, x: number) =>
    labels[off + Math.floor(y / scale) * w + Math.floor(x / scale)];
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const src = off + Math.floor(y / scale) * w + Math.floor(x / scale);
      const g = Math.round((255 * (volume.image[src] - lo)) / range);
      let rgb: [number, number, number] = [g, g, g];
      const l = lab(y, x);
      if (l > 0) {
        let edge = false;
        for (let dy = -1; dy <= 1 && !edge; dy++) {
          for (let dx = -1; dx <= 1 && !edge; dx++) {
            const yy = y + dy;
            const xx = x + dx;
            if (yy < 0 || xx < 0 || yy >= H || xx >= W) continue;
            if (lab(yy, xx) !== l) edge = true;
          }
        }
        if (edge) rgb = CLASS_COLOURS[(l - 1) % CLASS_COLOURS.length];
      }
      data.set(rgb, (y * W + x) * 3);
    }
  }
  return { width: W, height: H, data };
}

/** Panels side by side, separated by `gap` white pixels, as one PNG. */
export function panelsPng(
  panels: Array<{ width: number; height: number; data: Uint8Array }>,
  text: Record<string, string> = {},
  gap = 4,
): Uint8Array {
  const H = Math.max(...panels.map((p) => p.height));
  const W = panels.reduce((a, p) => a + p.width, 0) + gap * (panels.length - 1);
  const data = new Uint8Array(W * H * 3).fill(255);
  let x0 = 0;
  for (const p of panels) {
    for (let y = 0; y < p.height; y++) {
      data.set(p.data.subarray(y * p.width * 3, (y + 1) * p.width * 3), (y * W + x0) * 3);
    }
    x0 += p.width + gap;
  }
  return encodePng({ width: W, height: H, data, channels: 3, depth: 8, text });
}

/** The slice of a volume to show: most foreground classes, then most foreground pixels. */
export function pickSlice(volume: Pick<Volume, "shape" | "label">): number {
  const [d, h, w] = volume.shape;
  let best = Math.floor(d / 2);
  let bestKey = [-1, -1];
  for (let z = 0; z < d; z++) {
    const seen = new Set<number>();
    let fg = 0;
    for (let i = z * h * w; i < (z + 1) * h * w; i++) {
      const l = volume.label[i];
      if (l > 0) {
        fg++;
        seen.add(l);
      }
    }
    if (seen.size > bestKey[0] || (seen.size === bestKey[0] && fg > bestKey[1])) {
      bestKey = [seen.size, fg];
      best = z;
    }
  }
  return best;
}

/** Options of {@linkcode plotRuns}. */
export interface PlotOptions {
  /** Output directory. */
  out: string;
  /** Validation slices to overlay (one per volume, the first volumes). @default 3 */
  slices?: number;
  /** Skip the overlays (no checkpoints loaded). */
  noOverlays?: boolean;
  /** Messages, default to standard error. */
  log?: (line: string) => void;
}

interface RunInfoForPlot {
  dir: string;
  method: string;
  seed: number;
  label: string;
}

async function describeRun(dir: string): Promise<{ method: string; seed: number }> {
  try {
    const file = new RunDir(dir).file("recipe");
    const r = YAML.parse(await Deno.readTextFile(file)) as Record<string, unknown>;
    return {
      method: String(r.method ?? r.name ?? dir),
      seed: typeof r.seed === "number" ? r.seed : 1,
    };
  } catch (error) {
    throw new UserError(
      `Cannot read ${new RunDir(dir).file("recipe")}: ${(error as Error).message}`,
    );
  }
}

/**
 * Write `learning-curves.svg` (one curve per method: the mean of its seeds with their range as a
 * band; runs of one method and seed named by their folder) and, for runs with a `best.ckpt`, `overlay-<k>-<volume>-z<slice>.png`
 * (ground truth, then one panel per method, in the paper's order: its lowest seed) and
 * `overlays.svg` (the PNGs with their labels) into `options.out`. Returns the files written.
 */
export async function plotRuns(paths: string[], options: PlotOptions): Promise<string[]> {
  const log = options.log ?? ((line: string) => console.error(line));
  const { finished, unfinished } = await findRunDirs(paths);
  const dirs = [...finished, ...unfinished];
  if (dirs.length === 0) throw new UserError(`No run directory in ${paths.join(" ")}`);
  const infos: RunInfoForPlot[] = [];
  for (const dir of dirs) {
    const { method, seed } = await describeRun(dir);
    infos.push({ dir, method, seed, label: method });
  }
  // the paper's order (as in the table), then by seed
  const rank = (m: string) => {
    const i = PAPER_METHOD_ORDER.indexOf(m);
    return i < 0 ? PAPER_METHOD_ORDER.length : i;
  };
  infos.sort((a, b) =>
    rank(a.method) - rank(b.method) || (a.method < b.method ? -1 : a.method > b.method ? 1 : 0) ||
    a.seed - b.seed
  );
  const byMethod = new Map<string, RunInfoForPlot[]>();
  for (const i of infos) byMethod.set(i.method, [...(byMethod.get(i.method) ?? []), i]);
  for (const group of byMethod.values()) {
    if (group.length === 1) continue;
    for (const i of group) {
      // two runs of one method and seed (two run folders): the folder tells them apart
      const twin = group.some((o) => o !== i && o.seed === i.seed);
      i.label = `${i.method} s${i.seed}${twin ? ` (${i.dir})` : ""}`;
    }
  }
  await Deno.mkdir(options.out, { recursive: true });
  const files: string[] = [];

  const curves: RunCurves[] = [];
  for (const [method, group] of byMethod) {
    const own: RunCurves[] = [];
    for (const i of group) {
      let text = "";
      try {
        text = await Deno.readTextFile(new RunDir(i.dir).file("metrics"));
      } catch {
        log(`note: ${i.dir} has no ${RUN_FILES.metrics}`);
      }
      own.push(parseMetrics(text, i.label));
    }
    // several seeds of a method: their mean, with the seeds' range as a band
    const seeds = group.map((i) => i.seed);
    if (group.length > 1 && new Set(seeds).size === seeds.length) {
      const mean = meanCurves(own, `${method}: mean of seeds ${seeds.join(", ")}`);
      if (Object.keys(mean.terms).length + Object.keys(mean.validation).length > 0) {
        curves.push(mean);
        continue;
      }
      log(`note: the seeds of ${method} logged no common iteration; drawn one by one`);
    }
    curves.push(...own);
  }
  const svgFile = `${options.out}/learning-curves.svg`;
  await Deno.writeTextFile(svgFile, learningCurvesSvg(curves));
  files.push(svgFile);

  if (options.noOverlays) return files;
  // one run per method: its lowest seed with a best.ckpt
  const chosen = new Map<string, RunInfoForPlot>();
  for (const i of infos) {
    if (chosen.has(i.method)) continue;
    if (await new RunDir(i.dir).has("best")) chosen.set(i.method, i); // else no checkpoint yet
  }
  const runs = [...chosen.values()];
  if (runs.length === 0) {
    log("note: no run has a best.ckpt; no overlays");
    return files;
  }
  for (const [method, group] of byMethod) {
    if (chosen.has(method)) continue;
    log(`note: no overlay of ${method}: no best.ckpt in ${group.map((i) => i.dir).join(", ")}`);
  }
  let reference: { dataset: string; volumes: Volume[]; z: number[] } | null = null;
  const predictions: Array<{ label: string; pred: Uint8Array[] }> = [];
  for (const run of runs) {
    const dir = new RunDir(run.dir);
    const loaded = await loadRecipe(dir.file("recipe"));
    const trainer = await Trainer.create(loaded.recipe, {
      baseDir: (await dir.info()).baseDir,
      out: null,
      progress: false,
      log: () => {},
    });
    try {
      if (reference === null) {
        const volumes = trainer.dataset.validation.slice(0, options.slices ?? 3);
        reference = { dataset: trainer.dataset.id, volumes, z: volumes.map(pickSlice) };
      } else if (trainer.dataset.id !== reference.dataset) {
        log(`note: ${run.dir} is on ${trainer.dataset.id}, not ${reference.dataset}; not overlaid`);
        continue;
      } else {
        const [, h, w] = reference.volumes[0].shape;
        const own = trainer.dataset.validation[0]?.shape;
        if (own && (own[1] !== h || own[2] !== w)) {
          log(`note: ${run.dir} works on ${own[1]}x${own[2]} slices, not ${h}x${w}; not overlaid`);
          continue;
        }
      }
      await trainer.loadCheckpoint(dir.checkpoint("best"), { weightsOnly: true });
      const model = trainer.evaluationModel();
      const pred: Uint8Array[] = [];
      for (const v of reference.volumes) pred.push(await trainer.predictVolume(v, model));
      predictions.push({ label: run.label, pred });
    } finally {
      trainer.dispose();
    }
  }
  if (!reference) return files;
  const labels = ["ground truth", ...predictions.map((p) => p.label)];
  const figure: Array<{ file: string; width: number; height: number; title: string }> = [];
  for (const [k, v] of reference.volumes.entries()) {
    const z = reference.z[k];
    const scale = Math.max(1, Math.floor(256 / Math.max(v.shape[1], v.shape[2])));
    const panels = [
      overlayPanel(v, v.label, z, scale),
      ...predictions.map((p) => overlayPanel(v, p.pred[k], z, scale)),
    ];
    const name = `overlay-${k + 1}-${v.id.replace(/[^A-Za-z0-9._-]+/g, "_")}-z${z}.png`;
    const png = panelsPng(panels, {
      Title: `${v.id} slice ${z}`,
      Description: `left to right: ${labels.join(" | ")}`,
    });
    await Deno.writeFile(`${options.out}/${name}`, png);
    files.push(`${options.out}/${name}`);
    figure.push({
      file: name,
      width: panels.reduce((a, p) => a + p.width, 0) + 4 * (panels.length - 1),
      height: panels[0].height,
      title: `${v.id}, slice ${z}`,
    });
  }
  // overlays.svg: the PNGs stacked, each column labelled
  const panelW = figure.length ? (figure[0].width + 4) / labels.length : 0;
  const width = Math.max(...figure.map((f) => f.width), 200);
  let y = 24;
  const body: string[] = [];
  labels.forEach((l, i) =>
    body.push(
      `<text x="${(i + 0.5) * panelW}" y="16" text-anchor="middle" font-size="13">${esc(l)}</text>`,
    )
  );
  for (const f of figure) {
    body.push(`<text x="2" y="${y + 12}" font-size="11">${esc(f.title)}</text>`);
    body.push(
      `<image href="${esc(f.file)}" x="0" y="${y + 16}" width="${f.width}" height="${f.height}"/>`,
    );
    y += 16 + f.height + 8;
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" ` +
    `viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n` +
    `<rect width="${width}" height="${y}" fill="white"/>\n${body.join("\n")}\n</svg>\n`;
  await Deno.writeTextFile(`${options.out}/overlays.svg`, svg);
  files.push(`${options.out}/overlays.svg`);
  return files;
}
