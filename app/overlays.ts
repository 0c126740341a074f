/**
 * Paper Fig. 2-style overlays as pixels: a slice of a volume in grey with each class's contour in
 * its colour, panels side by side as one PNG, and the slice worth showing.
 *
 * @module
 */
import { encodePng } from "../deps.ts";
import type { Volume } from "../core/dataset.ts";

/** Contour colours of the foreground classes (RGB), class 1 first: red, green, blue, ... */
export const CLASS_COLOURS: Array<[number, number, number]> = [
  [255, 48, 48],
  [48, 230, 48],
  [64, 140, 255],
  [255, 220, 0],
  [255, 0, 255],
  [0, 230, 230],
];

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
