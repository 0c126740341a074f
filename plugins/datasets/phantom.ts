/**
 * The embedded default dataset: a procedural short-axis cardiac MRI phantom with ACDC-style
 * labels (0 background, 1 RV, 2 Myo, 3 LV). Every pixel flows from one seed, so a run needs no
 * download and is exactly reproducible.
 *
 * Each patient gets its own heart geometry (centre, LV radius, myocardial thickness, eccentricity,
 * orientation, RV crescent size and side), contrast, body outline with distracting blobs and a
 * bright descending aorta, a smooth multiplicative bias field and Gaussian noise. Through the
 * slices (base to apex) the LV and myocardium shrink smoothly while the RV shrinks faster and
 * may vanish near the apex.
 *
 * @module
 */
import { z } from "../../deps.ts";
import type {
  DatasetContext,
  DatasetFactory,
  SegmentationDataset,
  SliceSet,
  Volume,
} from "../../core/dataset.ts";
import { Rng } from "../../core/rng.ts";

/** Patient counts of each split of the phantom. */
export interface PhantomSplit {
  /** Patients whose slices are labeled training data. @default {2} */
  labeled: number;
  /** Patients whose slices are unlabeled training data. @default {14} */
  unlabeled: number;
  /** Patients kept as validation volumes. @default {8} */
  validation: number;
}

/** Options of the `phantom` dataset. */
export interface PhantomOptions {
  /** Number of generated patients; the splits may leave some unused. @default {24} */
  patients: number;
  /** Short-axis slices per patient, base to apex. @default {8} */
  slicesPerPatient: number;
  /** Side of the square slices in pixels (at least 16). @default {64} */
  size: number;
  /** Patient counts per split; their sum must not exceed `patients`. */
  split: PhantomSplit;
  /** Standard deviation of the additive Gaussian noise (intensities are in [0, 1]). @default {0.05} */
  noise: number;
  /** Seed of the split and of the pixels. @default the run seed from the context */
  seed?: number;
}

/** The split schema, every count with a default. */
const phantomSplit = z.object({
  labeled: z.number().int().min(1, "split.labeled must be at least 1").default(2).describe(
    "Patients whose slices are labeled training data.",
  ),
  unlabeled: z.number().int().min(0).default(14).describe(
    "Patients whose slices are unlabeled training data.",
  ),
  validation: z.number().int().min(0).default(8).describe("Patients kept as validation volumes."),
}).strict();

/**
 * Strict schema of {@linkcode PhantomOptions}: unknown keys are rejected, every field has a
 * default, and the split counts must fit in `patients`.
 */
export const phantomOptions: z.ZodType<PhantomOptions, z.ZodTypeDef, unknown> = z.object({
  patients: z.number().int().min(1, "patients must be at least 1")
    .max(10000, "patients must be at most 10000").default(24).describe(
      "Number of generated patients; the splits may leave some unused.",
    ),
  slicesPerPatient: z.number().int().min(1, "slicesPerPatient must be at least 1")
    .max(1024, "slicesPerPatient must be at most 1024").default(8).describe(
      "Short-axis slices per patient, base to apex.",
    ),
  size: z.number().int()
    .min(16, "size must be at least 16 pixels")
    .max(1024, "size must be at most 1024 pixels")
    .default(64).describe("Side of the square slices in pixels (at least 16)."),
  split: phantomSplit.default({}).describe(
    "Patient counts per split (`labeled`, `unlabeled`, `validation`); their sum must not " +
      "exceed `patients`.",
  ),
  noise: z.number().min(0, "noise must be non-negative").max(1).default(0.05).describe(
    "Standard deviation of the additive Gaussian noise (intensities are in [0, 1]).",
  ),
  seed: z.number().int().optional().describe(
    "Seed of the split and of the pixels; the run seed when absent.",
  ),
}).strict().superRefine((o, ctx) => {
  const { labeled, unlabeled, validation } = o.split;
  const total = labeled + unlabeled + validation;
  if (total > o.patients) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: ["split"],
      message: `split.labeled + split.unlabeled + split.validation ` +
        `(${labeled} + ${unlabeled} + ${validation} = ${total}) must not exceed patients ` +
        `(${o.patients})`,
    });
  }
});

/** One generated patient: `slicesPerPatient x size x size` values, slice-major, row-major. */
export interface PhantomPatient {
  /** Intensities in [0, 1]. */
  images: Float32Array;
  /** Labels: 0 background, 1 RV, 2 Myo, 3 LV. */
  labels: Uint8Array;
}

/** Label values, as in ACDC. */
const BG = 0, RV = 1, MYO = 2, LV = 3;

/** A Gaussian blob of the background anatomy that drifts through the slices. */
interface Blob {
  x: number;
  y: number;
  vx: number;
  vy: number;
  /** `1 / (2 sigma^2)`. */
  inv: number;
  amplitude: number;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Generate one patient volume of the phantom. All randomness comes from `rng`, so a generator
 * in the same state gives the same bytes.
 *
 * @param rng The patient's generator (it is advanced).
 * @param options Stack depth, slice size and noise level.
 * @returns Images in [0, 1] and labels in 0..3, `slicesPerPatient * size * size` values each.
 */
export function generatePhantomPatient(
  rng: Rng,
  options: Pick<PhantomOptions, "slicesPerPatient" | "size" | "noise">,
): PhantomPatient {
  const depth = options.slicesPerPatient;
  const size = options.size;
  const n = size * size;
  const images = new Float32Array(depth * n);
  const labels = new Uint8Array(depth * n);
  const u = size / 64; // lengths below are in pixels of a 64 x 64 slice

  // Heart geometry at the base.
  const half = (size - 1) / 2;
  const cx = half + clamp(rng.normal() * 2.5, -5, 5) * u;
  const cy = half + clamp(rng.normal() * 2.5, -5, 5) * u;
  const driftX = rng.normal() * 1.5 * u;
  const driftY = rng.normal() * 1.5 * u;
  const r0 = rng.uniform(7.5, 10.5) * u; // mean LV cavity radius
  const t0 = rng.uniform(2.5, 3.8) * u; // myocardial thickness
  const ecc = Math.sqrt(rng.uniform(1, 1.3)); // axis ratio = ecc^2
  const theta = rng.uniform(0, Math.PI);
  const cosT = Math.cos(theta), sinT = Math.sin(theta);
  const lvShrink = rng.uniform(0.45, 0.65); // fraction of the LV radius lost at the apex
  // RV: an ellipse beside the LV (image left, anterior), elongated across that direction.
  const phi = Math.PI + rng.uniform(-0.25, 0.6);
  const cosP = Math.cos(phi), sinP = Math.sin(phi);
  const rvReach = rng.uniform(0.5, 0.75);
  const rvAlong = rng.uniform(0.85, 1.1);
  const rvAcross = rng.uniform(1.35, 1.8);
  const rvVanish = rng.uniform(0.9, 1.4);
  const rvWall = 1.2 * u;
  const seam = 0.3 * u; // dilation of LV+Myo removed from the RV
  // Papillary muscles: two dark dots inside the LV cavity (labeled LV, as in ACDC).
  const papAngle = rng.uniform(0, 2 * Math.PI);
  const papSpread = rng.uniform(0.6, 1.2);
  const papRadius = rng.uniform(0.7, 1.1) * u;

  // Contrast.
  const blood = rng.uniform(0.7, 0.9);
  const rvBlood = blood * rng.uniform(0.85, 1);
  const myo = rng.uniform(0.25, 0.4);
  const air = rng.uniform(0, 0.05);
  const tissue = rng.uniform(0.3, 0.45);
  const fat = rng.uniform(0.2, 0.35);

  // Body outline with a bright subcutaneous fat rim.
  const bx = half + rng.normal() * 1.5 * u;
  const by = half + rng.normal() * 1.5 * u;
  const ba = rng.uniform(0.5, 0.7) * size;
  const bb = rng.uniform(0.42, 0.58) * size;
  const rim = rng.uniform(1.5, 3) * u;

  // Background blobs: dark (lung-like) and bright (organ- or fat-like).
  const blobs: Blob[] = [];
  const blobCount = 4 + rng.int(5);
  for (let i = 0; i < blobCount; i++) {
    const sigma = rng.uniform(3, 9) * u;
    blobs.push({
      x: rng.uniform(0.05, 0.95) * size,
      y: rng.uniform(0.05, 0.95) * size,
      vx: rng.normal() * 2 * u,
      vy: rng.normal() * 2 * u,
      inv: 1 / (2 * sigma * sigma),
      amplitude: rng.next() < 0.5 ? -rng.uniform(0.15, 0.3) : rng.uniform(0.1, 0.35),
    });
  }
  // Descending aorta: a bright disc behind the heart, labeled background.
  const aoAngle = rng.uniform(0.05, 0.45) * Math.PI;
  const aoRadius = rng.uniform(2.5, 3.8) * u;
  const aoDist = (r0 * ecc + t0) * rng.uniform(1.15, 1.4) + aoRadius + u;
  const aoIntensity = blood * rng.uniform(0.8, 1);

  // Bias field: a low-order polynomial in [-1, 1]^2, clamped.
  const c1 = rng.uniform(-0.15, 0.15), c2 = rng.uniform(-0.15, 0.15);
  const c3 = rng.uniform(-0.15, 0.15), c4 = rng.uniform(-0.15, 0.15);
  const c5 = rng.uniform(-0.15, 0.15);
  const bias = new Float32Array(n);
  for (let y = 0; y < size; y++) {
    const py = (2 * y) / (size - 1) - 1;
    for (let x = 0; x < size; x++) {
      const px = (2 * x) / (size - 1) - 1;
      bias[y * size + x] = clamp(
        1 + c1 * px + c2 * py + c3 * px * py + c4 * (px * px - 1 / 3) + c5 * (py * py - 1 / 3),
        0.6,
        1.4,
      );
    }
  }

  const raw = new Float32Array(n);
  const tmp = new Float32Array(n);
  for (let k = 0; k < depth; k++) {
    const f = depth > 1 ? k / (depth - 1) : 0; // 0 at the base, 1 at the apex
    const off = k * n;
    const hx = cx + driftX * f, hy = cy + driftY * f;
    const r = Math.max(1.2, r0 * (1 - lvShrink * Math.pow(f, 1.3)));
    const t = Math.max(1.5, t0 * (1 - 0.2 * f));
    const a = r * ecc, b = r / ecc;
    const ia2 = 1 / (a * a), ib2 = 1 / (b * b);
    const oa = a + t, ob = b + t;
    const ioa2 = 1 / (oa * oa), iob2 = 1 / (ob * ob);
    const isa2 = 1 / ((oa + seam) * (oa + seam)), isb2 = 1 / ((ob + seam) * (ob + seam));
    const outer = r + t;
    const rvScale = 1 - f / rvVanish;
    const hasRv = rvScale > 0;
    const rx = hx + cosP * outer * rvReach, ry = hy + sinP * outer * rvReach;
    const ra = Math.max(1e-3, outer * rvAlong * rvScale);
    const rb = Math.max(1e-3, outer * rvAcross * Math.sqrt(Math.max(rvScale, 0)));
    const ira2 = 1 / (ra * ra), irb2 = 1 / (rb * rb);
    const iwa2 = 1 / ((ra + rvWall) * (ra + rvWall)), iwb2 = 1 / ((rb + rvWall) * (rb + rvWall));
    const papOn = r > 3 * u;
    const papX = [0, 1].map((i) => hx + 0.62 * r * Math.cos(papAngle + i * papSpread));
    const papY = [0, 1].map((i) => hy + 0.62 * r * Math.sin(papAngle + i * papSpread));
    const papR2 = papRadius * papRadius;
    const ax = hx + Math.cos(aoAngle) * aoDist, ay = hy + Math.sin(aoAngle) * aoDist;
    const aoR2 = aoRadius * aoRadius;
    const blobX = blobs.map((bl) => bl.x + bl.vx * f);
    const blobY = blobs.map((bl) => bl.y + bl.vy * f);
    const iba2 = 1 / (ba * ba), ibb2 = 1 / (bb * bb);
    const inner = Math.max(0, ba - rim), innerB = Math.max(0, bb - rim);
    const irim2a = 1 / Math.max(inner * inner, 1e-6), irim2b = 1 / Math.max(innerB * innerB, 1e-6);

    for (let y = 0; y < size; y++) {
      const dy = y - hy;
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        const dx = x - hx;
        const pu = dx * cosT + dy * sinT;
        const pv = -dx * sinT + dy * cosT;
        const pu2 = pu * pu, pv2 = pv * pv;
        let label = BG;
        let value: number;
        if (pu2 * ia2 + pv2 * ib2 <= 1) {
          label = LV;
          value = blood;
          if (papOn) {
            for (let p = 0; p < 2; p++) {
              const ex = x - papX[p], ey = y - papY[p];
              if (ex * ex + ey * ey <= papR2) value = myo;
            }
          }
        } else if (pu2 * ioa2 + pv2 * iob2 <= 1) {
          label = MYO;
          value = myo;
        } else {
          let rvWallHere = false;
          if (hasRv) {
            const ex = x - rx, ey = y - ry;
            const ru = ex * cosP + ey * sinP;
            const rw = -ex * sinP + ey * cosP;
            const ru2 = ru * ru, rw2 = rw * rw;
            if (ru2 * ira2 + rw2 * irb2 <= 1 && pu2 * isa2 + pv2 * isb2 > 1) label = RV;
            else if (ru2 * iwa2 + rw2 * iwb2 <= 1) rvWallHere = true;
          }
          if (label === RV) {
            value = rvBlood;
          } else if (rvWallHere) {
            value = myo;
          } else {
            const ex = x - bx, ey = y - by;
            const ex2 = ex * ex, ey2 = ey * ey;
            if (ex2 * iba2 + ey2 * ibb2 > 1) {
              value = air;
            } else {
              value = ex2 * irim2a + ey2 * irim2b > 1 ? tissue + fat : tissue;
              for (let j = 0; j < blobs.length; j++) {
                const gx = x - blobX[j], gy = y - blobY[j];
                const e = (gx * gx + gy * gy) * blobs[j].inv;
                if (e < 12) value += blobs[j].amplitude * Math.exp(-e); // beyond ~5 sigma: 0
              }
              const ox = x - ax, oy = y - ay;
              if (ox * ox + oy * oy <= aoR2) value = aoIntensity;
            }
          }
        }
        labels[off + i] = label;
        raw[i] = value;
      }
    }

    // Partial-volume blur (separable [1 2 1] / 4, edges replicated), bias, noise, clip.
    for (let y = 0; y < size; y++) {
      const row = y * size;
      for (let x = 0; x < size; x++) {
        const l = raw[row + (x > 0 ? x - 1 : x)], rr = raw[row + (x < size - 1 ? x + 1 : x)];
        tmp[row + x] = 0.25 * l + 0.5 * raw[row + x] + 0.25 * rr;
      }
    }
    for (let y = 0; y < size; y++) {
      const up = (y > 0 ? y - 1 : y) * size, down = (y < size - 1 ? y + 1 : y) * size;
      const row = y * size;
      for (let x = 0; x < size; x++) {
        const v = 0.25 * tmp[up + x] + 0.5 * tmp[row + x] + 0.25 * tmp[down + x];
        const noisy = v * bias[row + x] + options.noise * rng.normal();
        images[off + row + x] = noisy < 0 ? 0 : noisy > 1 ? 1 : noisy;
      }
    }
  }
  return { images, labels };
}

/** `phantom007`-style ids, zero-padded to at least three digits. */
function patientId(index: number, count: number): string {
  const width = Math.max(3, String(count - 1).length);
  return `phantom${String(index).padStart(width, "0")}`;
}

function sliceSet(
  ids: string[],
  data: Map<string, PhantomPatient>,
  depth: number,
  size: number,
  withLabels: boolean,
): SliceSet {
  const per = depth * size * size;
  const images = new Float32Array(ids.length * per);
  const labels = withLabels ? new Uint8Array(ids.length * per) : null;
  const patients: string[] = [];
  ids.forEach((id, i) => {
    const p = data.get(id)!;
    images.set(p.images, i * per);
    labels?.set(p.labels, i * per);
    for (let k = 0; k < depth; k++) patients.push(id);
  });
  return { count: ids.length * depth, height: size, width: size, images, labels, patients };
}

/**
 * The `phantom` dataset: procedural short-axis cardiac MRI slices, split by patient with a
 * seeded shuffle. Same seed, same split and same pixels.
 *
 * @example
 * ```ts
 * import { phantomDataset, phantomOptions } from "./phantom.ts";
 * const data = await phantomDataset.load(phantomOptions.parse({}), { seed: 1, baseDir: "." });
 * data.labeled.count; // 2 patients x 8 slices = 16
 * ```
 */
export const phantomDataset: DatasetFactory<PhantomOptions> = {
  id: "phantom",
  description: "Procedural short-axis cardiac MRI phantom (RV, Myo, LV), generated from the seed",
  options: phantomOptions,
  access: () => ({ read: [], write: [] }), // generated in memory
  // Its images are in [0, 1] already; a new scan is min-max normalised and stretched to `size`.
  preprocessing: (options) => ({
    size: options.size,
    fit: "stretch",
    normalize: "minmax",
    sliceAxis: "auto",
  }),
  load(options: PhantomOptions, context: DatasetContext): Promise<SegmentationDataset> {
    const start = performance.now();
    const seed = options.seed ?? context.seed;
    const { patients, slicesPerPatient: depth, size } = options;
    const root = new Rng(seed);
    const splitRng = root.fork();
    const patientRngs = Array.from({ length: patients }, () => root.fork());
    const ids = Array.from({ length: patients }, (_, i) => patientId(i, patients));
    const order = splitRng.shuffle(ids.map((_, i) => i));
    const { labeled, unlabeled, validation } = options.split;
    const pick = (from: number, count: number) =>
      order.slice(from, from + count).sort((x, y) => x - y);
    const labeledIdx = pick(0, labeled);
    const unlabeledIdx = pick(labeled, unlabeled);
    const validationIdx = pick(labeled + unlabeled, validation);

    const data = new Map<string, PhantomPatient>();
    for (const i of [...labeledIdx, ...unlabeledIdx, ...validationIdx]) {
      data.set(ids[i], generatePhantomPatient(patientRngs[i], options));
    }
    const toIds = (idx: number[]) => idx.map((i) => ids[i]);
    const inPlane = 160 / size; // 2.5 mm at 64 x 64
    const volumes: Volume[] = toIds(validationIdx).map((id) => {
      const p = data.get(id)!;
      return {
        id,
        patient: id,
        shape: [depth, size, size],
        spacing: [8, inPlane, inPlane],
        image: p.images,
        label: p.labels,
      };
    });
    const dataset: SegmentationDataset = {
      id: "phantom",
      classNames: ["background", "RV", "Myo", "LV"],
      labeled: sliceSet(toIds(labeledIdx), data, depth, size, true),
      unlabeled: sliceSet(toIds(unlabeledIdx), data, depth, size, false),
      validation: volumes,
      splits: {
        labeled: toIds(labeledIdx),
        unlabeled: toIds(unlabeledIdx),
        validation: toIds(validationIdx),
      },
    };
    context.log?.(
      `Generated ${data.size} phantom patients (${depth} x ${size} x ${size}) ` +
        `in ${(performance.now() - start).toFixed(0)} ms`,
    );
    return Promise.resolve(dataset);
  },
};
