/**
 * Learning curves ({@linkcode RunCurves}) drawn as one hand-written SVG: a panel per loss term and
 * per validation Dice, a line per run (a colour and a dash each), a band per mean over seeds, a
 * shared legend.
 *
 * @module
 */
import { binPoints, type RunCurves } from "./curves.ts";

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

/** {@linkcode binPoints} of a band: its lower and upper edges binned alike. */
function binBand(band: Array<[number, number, number]>): Array<[number, number, number]> {
  const lo = binPoints(band.map(([x, l]) => [x, l]));
  const hi = binPoints(band.map(([x, , h]) => [x, h]));
  return lo.map(([x, l], i) => [x, l, hi[i][1]]);
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

/** Text escaped for SVG (XML): `&`, `<`, `>` and `"`. */
export function esc(s: string): string {
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
