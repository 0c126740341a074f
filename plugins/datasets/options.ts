/**
 * The options every file-based dataset plugin shares: {@linkcode commonOptionFields} (their zod
 * fields, to spread into a plugin's own `z.object({...})` beside its `split`) and
 * {@linkcode CommonDatasetOptions} (their parsed type).
 *
 * @module
 */
import { z } from "../../deps.ts";
import type { Fit, PreprocessOptions } from "./preprocess.ts";
import type { SplitOptions } from "./_split.ts";

/** The zod fields {@linkcode commonOptionFields} returns, to spread into a plugin's schema. */
export interface CommonOptionFields {
  /** Data folder, relative to the recipe's folder. */
  root: z.ZodString;
  /** Side of the square slices. */
  size: z.ZodDefault<z.ZodNumber>;
  /** How slices are brought to `size x size`. */
  fit: z.ZodDefault<z.ZodEnum<["stretch", "pad", "crop", "center"]>>;
  /** Per-volume intensity normalisation. */
  normalize: z.ZodDefault<z.ZodEnum<["minmax", "none"]>>;
  /** Through-plane axis. */
  sliceAxis: z.ZodDefault<
    z.ZodUnion<[z.ZodLiteral<"auto">, z.ZodLiteral<0>, z.ZodLiteral<1>, z.ZodLiteral<2>]>
  >;
  /** Explicit labeled patients. */
  labeledPatients: z.ZodOptional<z.ZodArray<z.ZodString>>;
  /** Cache folder, or `false`. */
  cache: z.ZodOptional<z.ZodUnion<[z.ZodString, z.ZodLiteral<false>]>>;
  /** Seed of the split. */
  seed: z.ZodOptional<z.ZodNumber>;
}

/**
 * Zod fields of `PreprocessOptions` (all but `window`) and of the options every file plugin has,
 * with `size` defaulting to `defaultSize`: spread them into the plugin's `z.object({...})`.
 */
export function commonOptionFields(defaultSize: number): CommonOptionFields {
  return {
    root: z.string().min(1, "root must name the data folder").describe(
      "Data folder, relative to the recipe's folder.",
    ),
    size: z.number().int()
      .min(16, "size must be at least 16 pixels")
      .max(1024, "size must be at most 1024 pixels")
      .default(defaultSize).describe("Side of the square slices in pixels."),
    fit: z.enum(["stretch", "pad", "crop", "center"]).default("stretch").describe(
      "How a slice is brought to `size x size`: `stretch` resizes each axis (SSL4MIS); `pad` " +
        "scales the longer side to `size` and zero-pads the other; `crop` scales the shorter " +
        "side and centre-crops the other; `center` crops or pads without scaling.",
    ),
    normalize: z.enum(["minmax", "none"]).default("minmax").describe(
      "`minmax`: per volume to [0, 1] (after the window); `none`: raw values.",
    ),
    sliceAxis: z.union([z.literal("auto"), z.literal(0), z.literal(1), z.literal(2)]).default(
      "auto",
    ).describe(
      "The through-plane axis, in the row-major order of the file (`0` = `z` for NIfTI and " +
        "MetaImage); `auto` = the axis of largest spacing, ties and unknown spacing -> 0.",
    ),
    labeledPatients: z.array(z.string().min(1)).min(1, "labeledPatients must not be empty")
      .optional().describe("Explicit labeled patients (instead of a seeded draw)."),
    cache: z.union([z.string().min(1), z.literal(false)]).optional().describe(
      "Cache directory, or `false` for none; the per-user cache (`~/.cache/mi-ssl`) when absent.",
    ),
    seed: z.number().int().optional().describe("Seed of the split; the run seed when absent."),
  };
}

/** The options every file-based plugin shares (see {@linkcode commonOptionFields}). */
export interface CommonDatasetOptions {
  /** Data folder (relative paths are resolved against the recipe's folder). */
  root: string;
  /** Side of the square slices. @default the plugin's (256; spleen 512) */
  size: number;
  /** How slices are brought to `size x size`. @default "stretch" */
  fit: Fit;
  /** Per-volume intensity normalisation. @default "minmax" */
  normalize: "minmax" | "none";
  /** Through-plane axis (`auto`: the one with the largest spacing). @default "auto" */
  sliceAxis: "auto" | 0 | 1 | 2;
  /** Patients per split (defaults: see each plugin). */
  split: SplitOptions;
  /** Explicit labeled patients, instead of a seeded draw. */
  labeledPatients?: string[];
  /** Cache folder, or `false`. @default the per-user cache folder (`~/.cache/mi-ssl`) */
  cache?: string | false;
  /** Seed of the split. @default the run seed */
  seed?: number;
}

/**
 * The preprocessing of a file-based plugin with `options`: what its `load` applies to every
 * case (`loadSplitDataset`) and what its `preprocessing()` hook tells `predict`, so
 * both come from this one function.
 *
 * @param window The plugin's intensity window, if it has one.
 */
export function filePreprocessing(
  options: Pick<CommonDatasetOptions, "size" | "fit" | "normalize" | "sliceAxis">,
  window?: [number, number] | null,
): PreprocessOptions {
  return {
    size: options.size,
    fit: options.fit,
    normalize: options.normalize,
    sliceAxis: options.sliceAxis,
    ...(window ? { window } : {}),
  };
}
