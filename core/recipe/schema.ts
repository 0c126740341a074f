/**
 * The recipe's schema: its limits, the zod schema of every fixed field ({@linkcode recipeSchema}),
 * the {@linkcode Recipe} type, and {@linkcode parseRecipe}, which validates a merged recipe
 * object against it.
 *
 * @module
 */
import { z } from "../../deps.ts";
import { describeValue, hasKey, isPlainObject, nonFiniteNumbers, recipeError } from "./_data.ts";
import { describeIssues } from "./issues.ts";

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/** Largest accepted iteration count (and interval: validateEvery, logEvery, ...). */
const MAX_ITERATIONS = 1e9;
/** Largest accepted batch size. */
const MAX_BATCH = 4096;
/** Largest accepted thread count. */
const MAX_THREADS = 1024;
/** Largest accepted seed (seeds are used as unsigned 32-bit integers). */
const MAX_SEED = 2 ** 32 - 1;
/** Largest recipe file read. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Longest `extends:` chain. */
export const MAX_EXTENDS_DEPTH = 32;
/** Aliases a YAML document may expand (alias bombs fail cleanly). */
export const MAX_ALIAS_COUNT = 100;

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

/** Bounds of a number field; `cap` is a sanity limit only mentioned when exceeded. */
interface NumberSpec {
  int?: boolean;
  min?: number;
  gt?: number;
  max?: number;
  lt?: number;
  cap?: number;
}

/** What a number field expects, e.g. `expected an integer >= 1`, for the value it got. */
function describeNumber(spec: NumberSpec, value: unknown): string {
  const kind = spec.int
    ? "an integer"
    : typeof value === "number" && !Number.isFinite(value)
    ? "a finite number"
    : "a number";
  const bounds: string[] = [];
  if (spec.min !== undefined) bounds.push(`>= ${spec.min}`);
  else if (spec.gt !== undefined) bounds.push(`> ${spec.gt}`);
  if (spec.max !== undefined) bounds.push(`<= ${spec.max}`);
  else if (spec.lt !== undefined) bounds.push(`< ${spec.lt}`);
  else if (spec.cap !== undefined && typeof value === "number" && value > spec.cap) {
    bounds.push(`<= ${spec.cap}`);
  }
  return `expected ${kind}${bounds.length > 0 ? " " + bounds.join(" and ") : ""}`;
}

/** Whether `value` satisfies `spec`. */
function checkNumber(spec: NumberSpec, value: unknown): value is number {
  if (typeof value !== "number" || !Number.isFinite(value)) return false;
  if (spec.int && !Number.isInteger(value)) return false;
  if (spec.min !== undefined && value < spec.min) return false;
  if (spec.gt !== undefined && value <= spec.gt) return false;
  if (spec.max !== undefined && value > spec.max) return false;
  if (spec.lt !== undefined && value >= spec.lt) return false;
  if (spec.cap !== undefined && value > spec.cap) return false;
  return true;
}

/** A finite number field with bounds, reporting `expected ... ` messages. */
function num(spec: NumberSpec): z.ZodType<number, z.ZodTypeDef, unknown> {
  return z.custom<number>(
    (value) => checkNumber(spec, value),
    (value: unknown) => ({ message: describeNumber(spec, value) }),
  );
}

const count = (min: number, cap: number) => num({ int: true, min, cap });
const nonEmptyString = () => z.string().min(1, "expected a non-empty string");

/**
 * A plugin entry: `type` plus the plugin's own options, checked later by the plugin schema.
 * With `defaultType`, an entry without `type` (or no entry at all) uses that plugin.
 */
const pluginEntry = (defaultType?: string) => {
  const type = z.string().min(1, "expected a non-empty plugin id");
  return z.object({ type: defaultType === undefined ? type : type.default(defaultType) })
    .passthrough();
};

const regularizerEntry = z.object({
  type: z.string().min(1, "expected a non-empty plugin id"),
  weight: num({ min: 0 }).default(1),
  /** The metrics key and checkpoint prefix of the term: a plain name, no `/`. */
  name: z.string().regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
    "expected a name of letters, digits, '_', '.' and '-' (it is a metrics key and a " +
      "checkpoint prefix)",
  ).optional(),
}).passthrough();

const augmentationSchema = z.object({
  rotation: num({ min: 0, max: 180 }).default(0),
  flip: z.boolean().default(false),
}).strict();

const supervisedSchema = z.object({
  type: z.string().min(1, "expected a non-empty plugin id").default("cross-entropy"),
  weight: num({ min: 0 }).default(1),
}).passthrough();

const rampUpSchema = z.object({
  type: z.enum(["none", "sigmoid"]).default("none"),
  iterations: count(1, MAX_ITERATIONS).optional(),
}).strict();

const trainerSchema = z.object({
  iterations: count(1, MAX_ITERATIONS),
  labeledBatch: count(1, MAX_BATCH).default(4),
  unlabeledBatch: count(0, MAX_BATCH).default(4),
  validateEvery: count(1, MAX_ITERATIONS).optional(),
  logEvery: count(1, MAX_ITERATIONS).default(10),
  checkpointEvery: count(1, MAX_ITERATIONS).optional(),
  /**
   * Batch-norm statistics of the one forward pass over `[x_l, x_u, T(x_u)]`: `per-group`
   * normalises each of the three groups with its own statistics (as separate forward passes
   * would, like the reference code); `joint` uses one set over the whole batch (the PyTorch
   * peer's single `model(cat(...))`).
   */
  batchNormStatistics: z.enum(["per-group", "joint"]).default("per-group"),
  /**
   * What a NaN or infinite loss term does: `stop` the run (the last checkpoint stays the good
   * one), or `skip` the step without updating anything (counted in `summary.json`).
   */
  nonFinite: z.enum(["stop", "skip"]).default("stop"),
  /**
   * When the loss terms are read back to the host: `step` after every step (the host waits for
   * the GPU each step), `log` once per logged iteration (`logEvery`), before validation and
   * checkpoints and at the end, the update of a step whose loss is not finite skipped on the
   * device; `auto` is `log` on webgpu with the custom kernels, `step` elsewhere.
   */
  readback: z.enum(["auto", "step", "log"]).default("auto"),
}).strict().transform((t) => ({ ...t, validateEvery: t.validateEvery ?? t.iterations }));

const scheduleSchema = z.object({
  type: z.enum(["constant", "step", "cosine"]).default("constant"),
  warmup: count(0, MAX_ITERATIONS).default(0),
  stepSize: count(1, MAX_ITERATIONS).optional(),
  gamma: num({ gt: 0, max: 1 }).default(0.1),
  minLr: num({ min: 0 }).default(0),
}).strict();

const optimizerSchema = z.object({
  type: z.enum(["adam"]).default("adam"),
  lr: num({ gt: 0 }).default(1e-3),
  beta1: num({ min: 0, lt: 1 }).default(0.9),
  beta2: num({ min: 0, lt: 1 }).default(0.999),
  epsilon: num({ gt: 0 }).default(1e-8),
  weightDecay: num({ min: 0 }).default(0),
  schedule: scheduleSchema.default({}),
}).strict();

const outputSchema = z.object({
  dir: nonEmptyString().default("runs"),
}).strict();

/**
 * The schema of a recipe (after `extends` merging, `--set` overrides and interpolation).
 * Every fixed level is strict, so a misspelt key is an error; plugin entries (`dataset`, `model`,
 * `transform`, `regularizers[i]`) pass their extra keys through to the plugin's own schema,
 * checked by {@linkcode validatePluginOptions}.
 *
 * `extends` is accepted by the schema for completeness but only {@linkcode loadRecipe} can
 * follow it; {@linkcode parseRecipe} rejects it.
 */
export const recipeSchema = z.object({
  extends: z.string().optional(),
  name: nonEmptyString().optional(),
  method: nonEmptyString(),
  description: z.string().optional(),
  seed: num({ int: true, min: 0, cap: MAX_SEED }).default(1),
  backend: z.enum(["auto", "wasm", "cpu", "tensorflow", "tensorflow-gpu", "webgpu"]).default(
    "auto",
  ),
  /**
   * `custom`: this project's gradients and kernels (low-memory back-propagation, fused Adam and
   * batch norm, SIMD wasm kernels); `builtin`: tfjs's own wherever it has one, for debugging and
   * for comparing (see `runtime/tfjs_internals.ts`).
   */
  kernels: z.enum(["custom", "builtin"]).default("custom"),
  threads: count(1, MAX_THREADS).optional(),
  plugins: z.array(nonEmptyString()).default([]),
  dataset: pluginEntry(),
  model: pluginEntry("unet").default({ type: "unet" }),
  transform: pluginEntry("affine").default({ type: "affine" }),
  augmentation: augmentationSchema.default({}),
  supervised: supervisedSchema.default({}),
  lambda: num({ min: 0 }).default(0.1),
  rampUp: rampUpSchema.default({}),
  /**
   * How the paired terms (`mi`, `kl`, `mse`, `mean-teacher`, `entropy-min`'s transformed side)
   * compare the two predictions: `inverse` = `f(x)` vs `T^-1 f(T x)` (paper Eq. 8), `forward` =
   * `T f(x)` vs `f(T x)` (the authors' code). See `Pairing` in `core/regularizer.ts`.
   */
  pairing: z.enum(["inverse", "forward"]).default("inverse"),
  regularizers: z.array(regularizerEntry).default([]).superRefine((list, ctx) => {
    const seen = new Map<string, number>();
    list.forEach((entry, i) => {
      if (entry === null || typeof entry !== "object") return;
      const name = entry.name ?? entry.type;
      if (typeof name !== "string") return;
      if (isReservedMetricName(name)) {
        ctx.addIssue({
          code: "custom",
          path: [i, entry.name === undefined ? "type" : "name"],
          message: `regularizer name "${name}" is a key the trainer writes to metrics.jsonl ` +
            `itself (reserved: ${RESERVED_METRIC_NAMES.join(", ")}, val_*, seconds_*); ` +
            `give the regularizer another "name"`,
        });
        return;
      }
      const first = seen.get(name);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: `regularizer name "${name}" is already used by regularizers[${first}]; ` +
            `give each regularizer a distinct "name"`,
        });
      } else seen.set(name, i);
    });
  }),
  trainer: trainerSchema,
  optimizer: optimizerSchema.default({}),
  output: outputSchema.default({}),
}).strict();

/** A validated recipe, defaults applied. */
export type Recipe = z.infer<typeof recipeSchema>;

/**
 * The keys the trainer writes to `metrics.jsonl` itself, besides each regularizer's term under
 * its name: a regularizer may not be named (by `name`, else its `type`) like one of these, nor
 * start with `val_` or `seconds_`, or its value would overwrite the trainer's (or be overwritten).
 */
export const RESERVED_METRIC_NAMES: readonly string[] = [
  "iteration",
  "loss",
  "sup",
  "lr",
  "ramp",
  "seconds",
  "seconds_train",
  "seconds_validation",
  "seconds_data",
  "seconds_wall",
  "val_dice",
  "val_dice_mean",
];

/** Whether `name` is a metrics key of the trainer's own (see {@linkcode RESERVED_METRIC_NAMES}). */
export function isReservedMetricName(name: string): boolean {
  return RESERVED_METRIC_NAMES.includes(name) || name.startsWith("val_") ||
    name.startsWith("seconds_");
}

/**
 * Validate an already-merged recipe object (no `extends`, no interpolation) and apply defaults.
 *
 * @param raw The recipe object, e.g. parsed YAML or an object built in code.
 * @param source Where it came from, used in messages (`"recipes/x.yaml"`, `"<inline>"`).
 * @throws {UserError} `Cannot load recipe "<source>": <path>: <reason>[; ...]`.
 *
 * @example
 * ```ts
 * import { parseRecipe } from "../recipe.ts";
 * const recipe = parseRecipe(
 *   { method: "x", dataset: { type: "phantom" }, trainer: { iterations: 1 } },
 *   "<inline>",
 * );
 * recipe.trainer.validateEvery; // 1
 * ```
 */
export function parseRecipe(raw: unknown, source: string): Recipe {
  if (!isPlainObject(raw)) {
    throw recipeError(source, `expected a mapping at the top level, got ${describeValue(raw)}`);
  }
  if (hasKey(raw, "extends")) {
    throw recipeError(
      source,
      "extends: only recipe files loaded with loadRecipe can extend another recipe",
    );
  }
  const result = recipeSchema.safeParse(raw);
  if (!result.success) {
    throw recipeError(source, describeIssues(result.error.issues, raw, recipeSchema));
  }
  // The recipe's own fields check finiteness; plugin options pass through to schemas where a
  // plain z.number() takes Infinity: no number in a recipe may be infinite or NaN.
  const infinite = nonFiniteNumbers(raw);
  if (infinite.length > 0) throw recipeError(source, infinite);
  const recipe = result.data;
  if (recipe.regularizers.length > 0 && recipe.trainer.unlabeledBatch === 0) {
    const names = recipe.regularizers.map((r) => r.name ?? r.type).join(", ");
    throw recipeError(
      source,
      `trainer.unlabeledBatch: is 0, so the regularizers (${names}) would never run: they are ` +
        `computed on the unlabeled batch. Set unlabeledBatch >= 1, or remove the regularizers ` +
        `for plain supervised training`,
    );
  }
  return recipe;
}
