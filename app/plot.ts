/**
 * Figures of runs: learning curves (every loss term and the validation Dice against the
 * iteration, from `metrics.jsonl`) as a hand-written SVG, and paper Fig. 2-style overlays (a
 * validation slice in grey with each method's predicted contours, one colour per class, beside
 * the ground truth) as PNG, predicted with each run's `best.ckpt`.
 *
 * This module is `plot` itself ({@linkcode plotRuns}); its parts live in their own files and are
 * re-exported here: the curves read from `metrics.jsonl` (`curves.ts`), drawn as SVG
 * (`curves_svg.ts`), and the overlay pixels (`overlays.ts`).
 *
 * @module
 */
import { YAML } from "../deps.ts";
import type { Volume } from "../core/dataset.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe } from "../core/recipe.ts";
import { findRunDirs } from "./find_runs.ts";
import { PAPER_METHOD_ORDER } from "./result_table.ts";
import { RUN_FILES, RunDir } from "../core/run_dir.ts";
import { Trainer } from "../core/trainer.ts";
import { meanCurves, parseMetrics, type RunCurves } from "./curves.ts";
import { esc, learningCurvesSvg } from "./curves_svg.ts";
import { overlayPanel, panelsPng, pickSlice } from "./overlays.ts";

export { binPoints, meanCurves, parseMetrics, type RunCurves } from "./curves.ts";
export { curveStyle, DASHES, learningCurvesSvg, niceTicks, PALETTE } from "./curves_svg.ts";
export { CLASS_COLOURS, overlayPanel, panelsPng, pickSlice } from "./overlays.ts";

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
      let text: string | null = null;
      try {
        text = await new RunDir(i.dir).readMetrics();
      } catch {
        // unreadable: said below like a missing one
      }
      if (text === null) log(`note: ${i.dir} has no ${RUN_FILES.metrics}`);
      own.push(parseMetrics(text ?? "", i.label));
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
