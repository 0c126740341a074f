/**
 * Recipes: the YAML files that describe one training run, validated strictly.
 *
 * {@linkcode loadRecipe} reads a recipe file, follows its `extends:` chain (deep merge; a mapping
 * with `$replace: true`, or with a `type` other than the base's, replaces the base's), applies
 * command-line `--set path=value` overrides, expands `${VAR}` / `${VAR:-default}` references and
 * validates the result with {@linkcode recipeSchema}. {@linkcode validatePluginOptions} then checks
 * the options of the dataset, model, transform and regularizer plugins against their own schemas.
 *
 * Every problem is reported as one {@linkcode UserError} of the form
 * `Cannot load recipe "<file>": <path inside it>: <reason>`, e.g.
 * `Cannot load recipe "recipes/x.yaml": trainer.iterations: expected an integer >= 1, got "abc"`.
 *
 * @module
 */
import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { YAML, z } from "../deps.ts";
import type { ZodIssue, ZodTypeAny } from "../deps.ts";
import { UserError } from "./errors.ts";
import { datasets } from "./dataset.ts";
import { models } from "./model.ts";
import { transforms } from "./transform.ts";
import { regularizers } from "./regularizer.ts";
import { losses } from "./loss.ts";

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
const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Longest `extends:` chain. */
const MAX_EXTENDS_DEPTH = 32;
/** Aliases a YAML document may expand (alias bombs fail cleanly). */
const MAX_ALIAS_COUNT = 100;
/** At most this many issues are listed in one message. */
const MAX_ISSUES = 10;

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

/** What {@linkcode loadRecipe} returns. */
export interface LoadedRecipe {
  /** The validated recipe, defaults applied. */
  recipe: Recipe;
  /** Absolute path of the recipe file. */
  file: string;
  /**
   * The merged, overridden, interpolated raw object (no defaults, no `extends`, plugin paths
   * absolute), to write to the run directory as YAML. A literal `${` in a string is written as
   * `$${`, so loading the written file gives the same recipe.
   */
  resolved: Record<string, unknown>;
  /** Absolute paths of the files read: the recipe, then each file of its `extends:` chain. */
  files: string[];
}

/** Options of {@linkcode loadRecipe}. */
export interface LoadRecipeOptions {
  /**
   * Overrides `path=value`, applied in order after `extends` merging, e.g.
   * `trainer.iterations=200`, `regularizers[0].weight=2`, `regularizers.0.weight=2`,
   * `plugins=[./my.ts]`. The value is parsed as YAML; a missing mapping on the path is created.
   */
  set?: string[];
  /** Environment lookup for `${VAR}` interpolation. @default {Deno.env.get} */
  env?: (name: string) => string | undefined;
  /**
   * The folder that `path` and the relative data paths given with `set` (`dataset.root`,
   * `dataset.cache`) are resolved against: paths typed on a command line are relative to where
   * it is typed, not to the recipe's folder. @default {Deno.cwd()}
   */
  cwd?: string;
}

/** The dataset options that are paths (the file-based datasets' `root` and `cache`). */
const DATASET_PATH_KEYS = ["root", "cache"] as const;

/** Options of each plugin, parsed by the plugin's own schema. */
export interface PluginOptions {
  /** Options of the dataset plugin (`dataset` without `type`). */
  dataset: unknown;
  /** Options of the model plugin (`model` without `type`). */
  model: unknown;
  /** Options of the transform plugin (`transform` without `type`). */
  transform: unknown;
  /** Each regularizer: its id, weight, name (defaults to the id) and parsed options. */
  regularizers: Array<{ type: string; weight: number; name: string; options: unknown }>;
  /** The supervised loss: its id (in `losses`), weight and parsed options. */
  supervised: { type: string; weight: number; options: unknown };
}

// ---------------------------------------------------------------------------------------------
// Errors and paths
// ---------------------------------------------------------------------------------------------

type PathSegment = string | number;

/** `a.b[1].c` */
function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** The error thrown for every problem: `Cannot load recipe "<file>": <reasons>`. */
function recipeError(file: string, reasons: string | string[]): UserError {
  const list = Array.isArray(reasons) ? reasons : [reasons];
  const shown = list.slice(0, MAX_ISSUES);
  if (list.length > shown.length) shown.push(`and ${list.length - shown.length} more problems`);
  return new UserError(`Cannot load recipe "${file}": ${shown.join("; ")}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Short description of a value for messages: `"abc"`, `12`, `a mapping`, ... */
function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const s = value.length > 60 ? value.slice(0, 57) + "..." : value;
    return JSON.stringify(s);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/** Set `object[key] = value`, also for a key named `__proto__`. */
function setKey(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

function hasKey(object: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/** The value at `path` inside `root`, or `undefined`. */
function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let current = root;
  for (const segment of path) {
    if (Array.isArray(current) && typeof segment === "number") current = current[segment];
    else if (isPlainObject(current) && hasKey(current, String(segment))) {
      current = current[String(segment)];
    } else return undefined;
  }
  return current;
}

/**
 * What a value that is not plain data is, in words (YAML's `!!binary`, `!!timestamp`, `!!set`,
 * `!!omap` / `!!pairs` give byte arrays, dates, sets and maps), or null for plain data.
 */
function foreignValue(value: object): string | null {
  if (Array.isArray(value)) return null;
  if (ArrayBuffer.isView(value)) return "a !!binary value";
  if (value instanceof Date) return "a !!timestamp value";
  if (value instanceof Set) return "a !!set value";
  if (value instanceof Map) return "an !!omap or !!pairs value";
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null ? null : "a tagged value";
}

/**
 * A deep copy of plain YAML data (aliases become independent copies). Throws a
 * {@linkcode Problem} naming the place of a value that is not plain data (`!!binary`,
 * `!!timestamp`, `!!set`, ...), a mapping or list that contains itself (a recursive alias), or a
 * key `__proto__` (which would silently vanish in a plain object).
 */
function cloneData(value: unknown, path: PathSegment[] = [], open = new Set<object>()): unknown {
  if (value === null || typeof value !== "object") return value;
  const at = () => (path.length > 0 ? `${formatPath(path)}: ` : "");
  const foreign = foreignValue(value);
  if (foreign !== null) {
    throw new Problem(
      `${at()}${foreign} is not supported in a recipe; write a plain string, number, list or ` +
        `mapping`,
    );
  }
  if (open.has(value)) {
    throw new Problem(
      `${at()}a YAML alias refers to a mapping or list that contains it (a cycle, which a ` +
        `recipe cannot hold)`,
    );
  }
  open.add(value);
  try {
    if (Array.isArray(value)) {
      return value.map((item, i) => {
        path.push(i);
        try {
          return cloneData(item, path, open);
        } finally {
          path.pop();
        }
      });
    }
    const record = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(record)) {
      path.push(key);
      try {
        if (key === "__proto__") {
          throw new Problem(`${at()}the key "__proto__" is not allowed in a recipe`);
        }
        setKey(out, key, cloneData(record[key], path, open));
      } finally {
        path.pop();
      }
    }
    return out;
  } finally {
    open.delete(value);
  }
}

/** Where non-finite numbers (`.inf`, `.nan`, `1e999`) sit in `value`, as messages. */
function nonFiniteNumbers(value: unknown, path: PathSegment[] = [], out: string[] = []): string[] {
  if (typeof value === "number" && !Number.isFinite(value)) {
    out.push(`${formatPath(path) || "(top level)"}: expected a finite number, got ${value}`);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => nonFiniteNumbers(item, [...path, i], out));
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) nonFiniteNumbers(value[key], [...path, key], out);
  }
  return out;
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The closest of `candidates` to `word` within edit distance 2 (case-insensitive first). */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = candidate.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Remove wrappers (default, optional, effects, ...) around a schema. */
function unwrapSchema(schema: ZodTypeAny | undefined): ZodTypeAny | undefined {
  let current = schema;
  for (let i = 0; i < 32 && current !== undefined; i++) {
    if (current instanceof z.ZodDefault) current = current.removeDefault();
    else if (current instanceof z.ZodOptional || current instanceof z.ZodNullable) {
      current = current.unwrap();
    } else if (current instanceof z.ZodEffects) current = current.innerType();
    else if (current instanceof z.ZodCatch) current = current.removeCatch();
    else if (current instanceof z.ZodBranded || current instanceof z.ZodReadonly) {
      current = current.unwrap();
    } else if (current instanceof z.ZodPipeline) current = current._def.in;
    else if (current instanceof z.ZodLazy) current = current.schema;
    else return current;
  }
  return current;
}

/** The (unwrapped) schema of the value at `path`, when it can be found. */
function schemaAt(schema: ZodTypeAny, path: readonly PathSegment[]): ZodTypeAny | undefined {
  let current = unwrapSchema(schema);
  for (const segment of path) {
    if (current instanceof z.ZodObject) {
      current = unwrapSchema((current.shape as Record<string, ZodTypeAny>)[String(segment)]);
    } else if (current instanceof z.ZodArray) current = unwrapSchema(current.element);
    else if (current instanceof z.ZodRecord) current = unwrapSchema(current.valueSchema);
    else return undefined;
  }
  return current;
}

/** What a schema expects, in words (`a mapping`, `one of "a", "b"`), when known. */
function expectation(schema: ZodTypeAny | undefined, zodExpected?: string): string {
  if (schema instanceof z.ZodEnum) {
    return `one of ${(schema.options as string[]).map((o) => JSON.stringify(o)).join(", ")}`;
  }
  if (schema instanceof z.ZodLiteral) return JSON.stringify(schema.value);
  if (schema instanceof z.ZodObject || schema instanceof z.ZodRecord) return "a mapping";
  if (schema instanceof z.ZodArray || schema instanceof z.ZodTuple) return "a list";
  if (schema instanceof z.ZodString) return "a string";
  if (schema instanceof z.ZodBoolean) return "true or false";
  if (schema instanceof z.ZodNumber) return "a number";
  switch (zodExpected) {
    case "object":
      return "a mapping";
    case "array":
      return "a list";
    case "string":
      return "a string";
    case "boolean":
      return "true or false";
    case "number":
      return "a number";
    case "integer":
      return "an integer";
    default:
      return zodExpected ?? "another value";
  }
}

/** Whether zod wrote `issue.message` itself (rather than a schema author). */
function isDefaultMessage(issue: ZodIssue, data: unknown): boolean {
  try {
    const { message } = z.defaultErrorMap(issue, { data, defaultError: "" });
    return message === issue.message || issue.message === "Required";
  } catch {
    return false;
  }
}

/** Describe one zod issue; `prefix` locates the validated value inside the recipe. */
function describeIssue(
  issue: ZodIssue,
  input: unknown,
  schema: ZodTypeAny,
  prefix: readonly PathSegment[],
  extraKeys: readonly string[],
): string[] {
  const fullPath = [...prefix, ...issue.path];
  const where = formatPath(fullPath);
  const value = valueAt(input, issue.path);
  const parent = valueAt(input, issue.path.slice(0, -1));
  const present = issue.path.length === 0 ||
    (isPlainObject(parent) && hasKey(parent, String(issue.path[issue.path.length - 1]))) ||
    (Array.isArray(parent) && value !== undefined);
  const custom = !isDefaultMessage(issue, value);

  if (issue.code === "unrecognized_keys") {
    const node = schemaAt(schema, issue.path);
    const known = [
      ...(node instanceof z.ZodObject ? Object.keys(node.shape) : []),
      ...(issue.path.length === 0 ? extraKeys : []),
    ];
    const place = where === "" ? "at the top level" : `in ${where}`;
    return issue.keys.map((key) => {
      const guess = closest(key, known);
      const hint = guess !== undefined
        ? ` (did you mean "${guess}"?)`
        : known.length > 0
        ? ` (known keys: ${known.join(", ")})`
        : "";
      return `unknown key "${key}" ${place}${hint}`;
    });
  }

  const missing = !present && value === undefined &&
    (issue.code === "invalid_type" || (custom && issue.message.startsWith("expected ")));
  if (missing) return [`missing required field ${where === "" ? "(top level)" : where}`];

  const at = where === "" ? "" : `${where}: `;
  let reason: string;
  if (custom) {
    reason = issue.message;
  } else {
    switch (issue.code) {
      case "invalid_type":
        reason = `expected ${expectation(schemaAt(schema, issue.path), issue.expected)}`;
        break;
      case "invalid_enum_value": {
        reason = `expected one of ${issue.options.map((o) => JSON.stringify(o)).join(", ")}`;
        const guess = typeof value === "string"
          ? closest(value, issue.options.map(String))
          : undefined;
        if (guess !== undefined) {
          return [`${at}${reason}, got ${describeValue(value)} (did you mean "${guess}"?)`];
        }
        break;
      }
      case "invalid_literal":
        reason = `expected ${JSON.stringify(issue.expected)}`;
        break;
      case "too_small":
      case "too_big": {
        const op = issue.code === "too_small"
          ? (issue.inclusive ? ">=" : ">")
          : (issue.inclusive ? "<=" : "<");
        const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
        if (issue.type === "number" || issue.type === "bigint") {
          reason = `expected a number ${op} ${bound}`;
        } else if (issue.type === "string") {
          reason = `expected a string of ${op} ${bound} characters`;
        } else if (issue.type === "array" || issue.type === "set") {
          reason = `expected a list of ${op} ${bound} items`;
        } else reason = issue.message;
        break;
      }
      case "not_finite":
        reason = "expected a finite number";
        break;
      case "not_multiple_of":
        reason = `expected a multiple of ${issue.multipleOf}`;
        break;
      default:
        reason = issue.message;
    }
  }
  if (reason.startsWith("expected ") && !reason.includes(", got ")) {
    reason += `, got ${value === undefined ? "nothing" : describeValue(value)}`;
  }
  return [`${at}${reason}`];
}

/** Describe every issue of a failed parse, duplicates removed. */
function describeIssues(
  issues: readonly ZodIssue[],
  input: unknown,
  schema: ZodTypeAny,
  prefix: readonly PathSegment[] = [],
  extraKeys: readonly string[] = [],
): string[] {
  const out: string[] = [];
  // Unknown keys first: a misspelt key often explains a "missing required field" next to it.
  const sorted = [
    ...issues.filter((issue) => issue.code === "unrecognized_keys"),
    ...issues.filter((issue) => issue.code !== "unrecognized_keys"),
  ];
  for (const issue of sorted) {
    for (const line of describeIssue(issue, input, schema, prefix, extraKeys)) {
      if (!out.includes(line)) out.push(line);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/**
 * Validate an already-merged recipe object (no `extends`, no interpolation) and apply defaults.
 *
 * @param raw The recipe object, e.g. parsed YAML or an object built in code.
 * @param source Where it came from, used in messages (`"recipes/x.yaml"`, `"<inline>"`).
 * @throws {UserError} `Cannot load recipe "<source>": <path>: <reason>[; ...]`.
 *
 * @example
 * ```ts
 * import { parseRecipe } from "./recipe.ts";
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

/** Parse `options` with `schema`, or collect described issues into `problems`. */
function parseOptions(
  schema: ZodTypeAny,
  options: Record<string, unknown>,
  prefix: PathSegment[],
  extraKeys: string[],
  problems: string[],
): unknown {
  const result = schema.safeParse(options);
  if (result.success) return result.data;
  problems.push(...describeIssues(result.error.issues, options, schema, prefix, extraKeys));
  return undefined;
}

/** `entry` without `keys`. */
function omit(entry: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(entry)) if (!keys.includes(key)) setKey(out, key, entry[key]);
  return out;
}

/**
 * Check each plugin's options against its own schema: `dataset.type` in `datasets`,
 * `model.type` in `models`, `transform.type` in `transforms`, `regularizers[i].type` in
 * `regularizers`, `supervised.type` in `losses`. Plugins must be registered (plugin modules
 * imported, `registerBuiltins()` called) before the call.
 *
 * @param recipe A validated recipe.
 * @param source The recipe's file (or `"<inline>"`), used in messages.
 * @returns The parsed options of every plugin.
 * @throws {UserError} For an unknown id (`Cannot load recipe "<source>": dataset.type: Unknown
 *   dataset "x"; known datasets: a, b`) or bad options (`...: regularizers[0].radius: expected a
 *   number, got "big"`).
 */
export function validatePluginOptions(recipe: Recipe, source: string): PluginOptions {
  const problems: string[] = [];
  const lookup = <T>(
    registry: { get(id: string): T; ids(): string[] },
    id: string,
    path: string,
  ): T | undefined => {
    try {
      return registry.get(id);
    } catch (error) {
      if (error instanceof UserError) {
        const guess = closest(id, registry.ids());
        problems.push(
          `${path}: ${error.message}` + (guess === undefined ? "" : ` (did you mean "${guess}"?)`),
        );
        return undefined;
      }
      throw error;
    }
  };
  const single = (
    registry: { get(id: string): { options: ZodTypeAny }; ids(): string[] },
    key: "dataset" | "model" | "transform",
  ): unknown => {
    const entry = recipe[key] as Record<string, unknown>;
    const factory = lookup(registry, String(entry.type), `${key}.type`);
    if (factory === undefined) return undefined;
    return parseOptions(factory.options, omit(entry, ["type"]), [key], ["type"], problems);
  };
  const dataset = single(datasets, "dataset");
  const model = single(models, "model");
  const transform = single(transforms, "transform");
  // Nested transform entries (compose's parts), checked like the recipe's own transform.
  const checkParts = (entry: Record<string, unknown>, path: PathSegment[]): void => {
    const factory = transforms.has(String(entry.type)) ? transforms.get(String(entry.type)) : null;
    const key = factory?.partsOption;
    if (key === undefined || !Array.isArray(entry[key])) return;
    (entry[key] as unknown[]).forEach((part, i) => {
      if (!isPlainObject(part) || typeof part.type !== "string") return; // the schema says why
      const at = [...path, key, i];
      const partFactory = lookup(transforms, part.type, `${formatPath(at)}.type`);
      if (partFactory === undefined) return;
      const before = problems.length;
      parseOptions(partFactory.options, omit(part, ["type"]), at, ["type"], problems);
      if (problems.length === before) checkParts(part, at);
    });
  };
  if (transform !== undefined) {
    checkParts(recipe.transform as Record<string, unknown>, ["transform"]);
  }
  const regs: PluginOptions["regularizers"] = recipe.regularizers.map((entry, i) => {
    const record = entry as Record<string, unknown>;
    const factory = lookup(regularizers, entry.type, `regularizers[${i}].type`);
    const options = factory === undefined ? undefined : parseOptions(
      factory.options,
      omit(record, ["type", "weight", "name"]),
      ["regularizers", i],
      ["type", "weight", "name"],
      problems,
    );
    return { type: entry.type, weight: entry.weight, name: entry.name ?? entry.type, options };
  });
  const sup = recipe.supervised as Record<string, unknown> & Recipe["supervised"];
  const lossFactory = lookup(losses, sup.type, "supervised.type");
  const supervised = {
    type: sup.type,
    weight: sup.weight,
    options: lossFactory === undefined ? undefined : parseOptions(
      lossFactory.options,
      omit(sup, ["type", "weight"]),
      ["supervised"],
      ["type", "weight"],
      problems,
    ),
  };
  if (problems.length > 0) throw recipeError(source, problems);
  return { dataset, model, transform, regularizers: regs, supervised };
}

/** A reason, without location, thrown by the helpers below and wrapped by `loadRecipe`. */
class Problem extends Error {}

// ---------------------------------------------------------------------------------------------
// Reading files and extends
// ---------------------------------------------------------------------------------------------

/** Read and parse one YAML recipe file into a plain mapping (`display` is used in messages). */
async function readRecipeFile(
  abs: string,
  display: string,
  referrer?: { display: string },
): Promise<Record<string, unknown>> {
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(abs);
    if (info.isDirectory) throw recipeError(display, "is a directory, not a recipe file");
    if (info.size > MAX_FILE_BYTES) {
      throw recipeError(
        display,
        `file is too large (${info.size} bytes; a recipe is at most ${MAX_FILE_BYTES} bytes)`,
      );
    }
    bytes = await Deno.readFile(abs);
  } catch (error) {
    if (error instanceof UserError) throw error;
    if (error instanceof Deno.errors.NotFound) {
      if (referrer !== undefined) {
        throw recipeError(
          referrer.display,
          `extends: file not found: "${display}" (looked for ${abs})`,
        );
      }
      throw recipeError(display, `file not found (looked for ${abs})`);
    }
    throw recipeError(display, `cannot read the file: ${(error as Error).message}`);
  }
  if (bytes.length > MAX_FILE_BYTES) {
    throw recipeError(display, `file is too large (a recipe is at most ${MAX_FILE_BYTES} bytes)`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw recipeError(display, "not a text file (invalid UTF-8)");
  }
  if (text.includes("\0")) throw recipeError(display, "not a text file (it contains NUL bytes)");
  return parseYamlRecipe(text, display);
}

/**
 * Problems of a parsed YAML document that its `errors` do not list: warnings (an unknown tag
 * like `!foo`, an unsupported `%YAML` version), and keys that are not plain names (a complex key
 * `? [a]`, an alias, null), which would otherwise be turned into strings like `"[ a ]"`.
 */
function yamlProblems(doc: YAML.Document, lines: YAML.LineCounter): string[] {
  const at = (node: { range?: [number, number, number] | null } | null | undefined) => {
    const offset = node?.range?.[0];
    if (offset === undefined) return "";
    const { line, col } = lines.linePos(offset);
    return `line ${line}, column ${col}: `;
  };
  const problems: string[] = doc.warnings.map((w) => {
    const tag = /^Unresolved tag: (\S+)/.exec(w.message);
    const standard = tag?.[1].replace(/^tag:yaml\.org,2002:/, "!!");
    const reason = tag === null
      ? firstLine(w.message)
      : standard !== tag[1]
      ? `the tag ${standard} does not fit its value (a recipe holds plain YAML: mappings, ` +
        `lists, strings, numbers, true/false and null; leave tags out)`
      : `unknown YAML tag ${tag[1]} (a recipe holds plain YAML: mappings, lists, strings, ` +
        `numbers, true/false and null)`;
    const pos = w.linePos?.[0];
    return pos ? `line ${pos.line}, column ${pos.col}: ${reason}` : `invalid YAML: ${reason}`;
  });
  YAML.visit(doc, {
    Pair(_, pair) {
      const key = pair.key as YAML.Node | null;
      if (YAML.isCollection(key)) {
        problems.push(
          `${at(key)}a key must be a plain name, got a ${YAML.isSeq(key) ? "list" : "mapping"} ` +
            `(complex keys like "? [a]" are not supported)`,
        );
      } else if (YAML.isAlias(key)) {
        problems.push(`${at(key)}a key must be a plain name, got the alias *${key.source}`);
      } else if (key === null || (YAML.isScalar(key) && key.value === null)) {
        problems.push(`${at(YAML.isNode(pair.value) ? pair.value : null)}a key is empty or null`);
      }
    },
  });
  return problems;
}

/** Parse recipe YAML text: exactly one document holding a mapping. */
function parseYamlRecipe(text: string, display: string): Record<string, unknown> {
  let docs: ReturnType<typeof YAML.parseAllDocuments>;
  const lines = new YAML.LineCounter();
  try {
    docs = YAML.parseAllDocuments(text, {
      merge: true,
      uniqueKeys: true,
      prettyErrors: true,
      lineCounter: lines,
    });
  } catch (error) {
    throw recipeError(display, `invalid YAML: ${firstLine((error as Error).message)}`);
  }
  if (!Array.isArray(docs)) throw recipeError(display, "the file is empty; expected a mapping");
  if (docs.length === 0) throw recipeError(display, "the file is empty; expected a mapping");
  if (docs.length > 1) {
    throw recipeError(
      display,
      `the file holds ${docs.length} YAML documents; a recipe is a single document`,
    );
  }
  const doc = docs[0];
  if (doc.errors.length > 0) {
    throw recipeError(display, doc.errors.slice(0, 3).map(describeYamlError));
  }
  const problems = yamlProblems(doc, lines);
  if (problems.length > 0) throw recipeError(display, problems);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const message = (error as Error).message;
    if (/alias count/i.test(message)) {
      throw recipeError(
        display,
        `YAML aliases expand too much (more than ${MAX_ALIAS_COUNT}; an alias bomb?)`,
      );
    }
    throw recipeError(display, `invalid YAML: ${firstLine(message)}`);
  }
  if (value === null || value === undefined) {
    throw recipeError(display, "the file is empty; expected a mapping");
  }
  if (!isPlainObject(value)) {
    throw recipeError(display, `expected a mapping at the top level, got ${describeValue(value)}`);
  }
  try {
    return cloneData(value) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof Problem) throw recipeError(display, error.message);
    if (error instanceof RangeError) throw recipeError(display, "the YAML is nested too deeply");
    throw error;
  }
}

/** The first line of a YAML error message, without its ` at line 1, column 3:` suffix. */
function firstLine(message: string): string {
  return message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
}

/** `line 3, column 5: <message>` for a YAML parse error. */
function describeYamlError(error: { message: string; linePos?: { line: number; col: number }[] }) {
  const first = firstLine(error.message);
  const pos = error.linePos?.[0];
  return pos ? `line ${pos.line}, column ${pos.col}: ${first}` : `invalid YAML: ${first}`;
}

/** The key that makes a mapping replace the base's instead of merging into it. */
export const REPLACE_KEY = "$replace";

/**
 * Mappings merge key by key; arrays, scalars and null replace. A mapping replaces the base's
 * whole (no key of the base's survives) when it says `$replace: true`, or when both have a
 * `type` and they differ (a `dataset` of another type shares no options with the base's).
 */
function deepMerge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return cloneData(override);
  if (override[REPLACE_KEY] === true) return cloneData(override);
  if (
    hasKey(base, "type") && hasKey(override, "type") && typeof override.type === "string" &&
    base.type !== override.type
  ) {
    return cloneData(override);
  }
  const out = cloneData(base) as Record<string, unknown>;
  for (const key of Object.keys(override)) {
    setKey(out, key, hasKey(out, key) ? deepMerge(out[key], override[key]) : override[key]);
  }
  return out;
}

/** Drop every `$replace` key once the chain is merged (a value other than a boolean is an error). */
function stripReplaceMarkers(value: unknown, path: PathSegment[]): unknown {
  if (Array.isArray(value)) return value.map((item, i) => stripReplaceMarkers(item, [...path, i]));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    if (key === REPLACE_KEY) {
      if (typeof value[key] !== "boolean") {
        throw new Problem(
          `${formatPath([...path, key])}: expected true (replace the base's mapping) or false, ` +
            `got ${describeValue(value[key])}`,
        );
      }
      continue;
    }
    setKey(out, key, stripReplaceMarkers(value[key], [...path, key]));
  }
  return out;
}

interface ChainFile {
  abs: string;
  display: string;
}

/** Load `file` and its `extends:` chain, merged; `pluginsDir` is where `plugins` was written. */
async function loadChain(
  file: ChainFile,
  stack: ChainFile[],
): Promise<{ raw: Record<string, unknown>; pluginsDir?: string; files: string[] }> {
  const referrer = stack[stack.length - 1];
  const raw = await readRecipeFile(file.abs, file.display, referrer);
  const dir = dirname(file.abs);
  const ownPluginsDir = hasKey(raw, "plugins") ? dir : undefined;
  if (!hasKey(raw, "extends")) return { raw, pluginsDir: ownPluginsDir, files: [file.abs] };

  const target = raw.extends;
  delete raw.extends;
  if (typeof target !== "string" || target.trim() === "") {
    throw recipeError(
      file.display,
      `extends: expected the path of a base recipe, got ${describeValue(target)}`,
    );
  }
  const base: ChainFile = {
    abs: resolve(dir, target),
    display: isAbsolute(target)
      ? normalize(target)
      : normalize(join(dirname(file.display), target)),
  };
  const chain = [...stack, file];
  if (chain.some((f) => f.abs === base.abs)) {
    const names = [...chain.slice(chain.findIndex((f) => f.abs === base.abs)), base];
    throw recipeError(
      chain[0].display,
      `extends cycle: ${names.map((f) => f.display).join(" -> ")}`,
    );
  }
  if (chain.length >= MAX_EXTENDS_DEPTH) {
    throw recipeError(
      chain[0].display,
      `extends chain is longer than ${MAX_EXTENDS_DEPTH} files (at "${file.display}")`,
    );
  }
  const loaded = await loadChain(base, chain);
  return {
    raw: deepMerge(loaded.raw, raw) as Record<string, unknown>,
    pluginsDir: ownPluginsDir ?? loaded.pluginsDir,
    files: [file.abs, ...loaded.files],
  };
}

// ---------------------------------------------------------------------------------------------
// --set overrides
// ---------------------------------------------------------------------------------------------

type SetSegment = { key: string; bracket: false } | { index: number; bracket: true };

/** Parse `a.b[1].c` / `a.b.1.c` into segments; throws a reason string. */
function parseSetPath(path: string): SetSegment[] {
  const segments: SetSegment[] = [];
  let i = 0;
  while (i < path.length) {
    if (path[i] === "[") {
      const end = path.indexOf("]", i);
      const digits = end < 0 ? "" : path.slice(i + 1, end);
      if (!/^\d+$/.test(digits)) {
        throw new Problem(`expected a list index like [0] at character ${i + 1} of the path`);
      }
      segments.push({ index: Number(digits), bracket: true });
      i = end + 1;
    } else {
      let end = i;
      while (end < path.length && path[end] !== "." && path[end] !== "[") end++;
      const key = path.slice(i, end).trim();
      if (key === "") throw new Problem(`empty key at character ${i + 1} of the path`);
      if (key === "__proto__") throw new Problem(`the key "__proto__" is not allowed in a recipe`);
      segments.push({ key, bracket: false });
      i = end;
    }
    if (i < path.length) {
      if (path[i] === ".") {
        i++;
        if (i >= path.length || path[i] === "." || path[i] === "[") {
          throw new Problem(`empty key at character ${i + 1} of the path`);
        }
      } else if (path[i] !== "[") {
        throw new Problem(`unexpected "${path[i]}" at character ${i + 1} of the path`);
      }
    }
  }
  if (segments.length === 0) throw new Problem("empty path");
  return segments;
}

/** Apply one `--set path=value` to `root` (in place); throws a reason string. */
function applySet(root: Record<string, unknown>, spec: string): void {
  const eq = spec.indexOf("=");
  if (eq < 0) throw new Problem(`missing "=" (expected path=value, e.g. trainer.iterations=200)`);
  const segments = parseSetPath(spec.slice(0, eq).trim());
  const first = segments[0];
  if (!first.bracket && first.key === "extends") {
    throw new Problem("extends cannot be set with --set; write it in the recipe file");
  }
  let value: unknown;
  try {
    const lines = new YAML.LineCounter();
    const doc = YAML.parseDocument(spec.slice(eq + 1), { uniqueKeys: true, lineCounter: lines });
    const problems = [...doc.errors.map((e) => firstLine(e.message)), ...yamlProblems(doc, lines)];
    if (problems.length > 0) throw new Problem(`invalid YAML value: ${problems.join("; ")}`);
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    if (error instanceof Problem) throw error;
    throw new Problem(`invalid YAML value: ${firstLine((error as Error).message)}`);
  }
  value = cloneData(value === undefined ? null : value);

  let container: unknown = root;
  const walked: PathSegment[] = [];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    const last = i === segments.length - 1;
    const next = segments[i + 1];
    const fresh = () => (next !== undefined && next.bracket ? [] : {});
    const here = formatPath(walked);
    if (Array.isArray(container)) {
      const index = segment.bracket
        ? segment.index
        : /^\d+$/.test(segment.key)
        ? Number(segment.key)
        : undefined;
      if (index === undefined) {
        throw new Problem(`${here} is a list; use ${here}[i] to pick an item`);
      }
      if (index > container.length) {
        throw new Problem(
          `${here} has ${container.length} item${container.length === 1 ? "" : "s"}, ` +
            `so index ${index} is out of range (use ${container.length} to append)`,
        );
      }
      if (last) {
        container[index] = value;
        return;
      }
      const child = container[index];
      if (child === undefined || child === null) container[index] = fresh();
      else if (typeof child !== "object") {
        throw new Problem(
          `${formatPath([...walked, index])} is ${describeValue(child)}, not a mapping or list`,
        );
      }
      container = container[index];
      walked.push(index);
    } else if (isPlainObject(container)) {
      if (segment.bracket) {
        throw new Problem(`${here === "" ? "the recipe" : here} is a mapping, not a list`);
      }
      const key = segment.key;
      if (last) {
        setKey(container, key, value);
        return;
      }
      const child = hasKey(container, key) ? container[key] : undefined;
      if (child === undefined || child === null) setKey(container, key, fresh());
      else if (typeof child !== "object") {
        throw new Problem(
          `${formatPath([...walked, key])} is ${describeValue(child)}, not a mapping or list`,
        );
      }
      container = container[key];
      walked.push(key);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Interpolation
// ---------------------------------------------------------------------------------------------

/** Expand `${VAR}` / `${VAR:-default}` in one string; `$${` is a literal `${`. */
function interpolateString(
  text: string,
  path: readonly PathSegment[],
  env: (name: string) => string | undefined,
): unknown {
  let out = "";
  let references = 0;
  let literal = false;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith("$${", i)) {
      out += "${";
      literal = true;
      i += 3;
    } else if (text.startsWith("${", i)) {
      const end = text.indexOf("}", i + 2);
      if (end < 0) {
        throw new Problem(
          `${formatPath(path)}: unterminated "\${" (write "$\${" for a literal "\${")`,
        );
      }
      const body = text.slice(i + 2, end);
      const match = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/.exec(body);
      if (match === null) {
        throw new Problem(
          `${formatPath(path)}: invalid variable reference "\${${body}}" ` +
            `(expected \${NAME} or \${NAME:-default}; write "$\${" for a literal "\${")`,
        );
      }
      const [, name, fallback] = match;
      let got: string | undefined;
      try {
        got = env(name);
      } catch (error) {
        throw new Problem(
          `${formatPath(path)}: cannot read environment variable "${name}": ${
            (error as Error).message
          }`,
        );
      }
      if ((got === undefined || got === "") && fallback !== undefined) got = fallback;
      if (got === undefined) {
        throw new Problem(
          `${formatPath(path)}: environment variable "${name}" is not set ` +
            `(write \${${name}:-value} to give a default)`,
        );
      }
      out += got;
      references++;
      i = end + 1;
    } else {
      out += text[i];
      literal = true;
      i++;
    }
  }
  // A value that is exactly one reference takes the YAML type of its text (numbers, booleans).
  if (references === 1 && !literal && out.trim() === out && out !== "") {
    try {
      const typed = YAML.parse(out);
      if (typeof typed === "number" || typeof typed === "boolean") return typed;
    } catch {
      // stays a string
    }
  }
  return out;
}

/** Interpolate every string value (not keys) of `value`. */
function interpolate(
  value: unknown,
  path: PathSegment[],
  env: (name: string) => string | undefined,
): unknown {
  if (typeof value === "string") return interpolateString(value, path, env);
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, [...path, i], env));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      setKey(out, key, interpolate(value[key], [...path, key], env));
    }
    return out;
  }
  return value;
}

/** Write every `${` of string values as `$${`, so interpolating again gives the same strings. */
function escapeInterpolation(value: unknown): unknown {
  if (typeof value === "string") return value.replaceAll("${", () => "$${");
  if (Array.isArray(value)) return value.map(escapeInterpolation);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setKey(out, key, escapeInterpolation(value[key]));
    return out;
  }
  return value;
}

/** Whether `spec` is a URL or other scheme-qualified specifier (`https:`, `npm:`, `file:`). */
export function isUrlLike(spec: string): boolean {
  return /^[A-Za-z][A-Za-z\d+.-]+:/.test(spec);
}

/** Resolve relative plugin module paths against `dir`. */
function resolvePlugins(raw: Record<string, unknown>, dir: string): void {
  const plugins = raw.plugins;
  if (!Array.isArray(plugins)) return;
  raw.plugins = plugins.map((spec) => {
    if (typeof spec !== "string" || spec.trim() === "" || isUrlLike(spec)) return spec;
    return isAbsolute(spec) ? normalize(spec) : resolve(dir, spec);
  });
}

// ---------------------------------------------------------------------------------------------
// loadRecipe
// ---------------------------------------------------------------------------------------------

function defaultEnv(name: string): string | undefined {
  return Deno.env.get(name);
}

/**
 * Load a recipe file: read the YAML, follow `extends:` (deep merge: mappings merge key by key,
 * lists and scalars replace; a mapping with `$replace: true`, or whose `type` differs from the
 * base's, replaces the base's mapping whole), apply `--set` overrides, expand `${VAR}` / `${VAR:-default}` in
 * every string value (`$${` is a literal `${`; a value that is exactly one reference, like
 * `iterations: ${ITERS}`, takes the number or boolean its text spells), resolve relative
 * `plugins` paths (against the file that wrote the list; a list set with `--set` against the
 * loaded file), then validate with {@linkcode recipeSchema}.
 *
 * @param path The recipe file; messages name it as given.
 * @param options `--set` overrides and the environment lookup.
 * @throws {UserError} `Cannot load recipe "<file>": <path inside it>: <reason>[; ...]`.
 *
 * @example
 * ```ts
 * import { loadRecipe } from "./recipe.ts";
 * const { recipe } = await loadRecipe("recipes/ours-kl.yaml", {
 *   set: ["trainer.iterations=200", "regularizers[0].weight=2"],
 * });
 * ```
 */
export async function loadRecipe(
  path: string,
  options: LoadRecipeOptions = {},
): Promise<LoadedRecipe> {
  const file = resolve(options.cwd ?? Deno.cwd(), path);
  const display = path;
  const { raw: chained, pluginsDir, files } = await loadChain({ abs: file, display }, []);
  delete chained.extends;
  let merged: Record<string, unknown>;
  try {
    merged = stripReplaceMarkers(chained, []) as Record<string, unknown>;
  } catch (error) {
    if (!(error instanceof Problem)) throw error;
    throw recipeError(display, error.message);
  }

  let dirForPlugins = pluginsDir ?? dirname(file);
  /** Dataset path options given with --set (resolved against `cwd` once interpolated). */
  const setPaths = new Set<string>();
  for (const spec of options.set ?? []) {
    try {
      applySet(merged, spec);
    } catch (error) {
      if (!(error instanceof Problem)) throw error;
      throw recipeError(display, `--set "${spec}": ${error.message}`);
    }
    const target = spec.slice(0, spec.indexOf("=")).replace(/\s+/g, "");
    for (const key of DATASET_PATH_KEYS) {
      if (target === `dataset.${key}`) setPaths.add(key);
      else if (target === "dataset") {
        // a whole dataset mapping: its paths are the command line's
        const dataset = merged.dataset;
        if (isPlainObject(dataset) && hasKey(dataset, key)) setPaths.add(key);
        else setPaths.delete(key);
      }
    }
    if (/^\s*plugins\s*(=|$)/.test(spec.slice(0, spec.indexOf("=") + 1))) {
      dirForPlugins = dirname(file);
    }
  }

  let resolved: Record<string, unknown>;
  try {
    resolved = interpolate(merged, [], options.env ?? defaultEnv) as Record<string, unknown>;
  } catch (error) {
    if (!(error instanceof Problem)) throw error;
    throw recipeError(display, error.message);
  }
  resolvePlugins(resolved, dirForPlugins);
  const dataset = resolved.dataset;
  if (isPlainObject(dataset)) {
    for (const key of setPaths) {
      const value = dataset[key];
      if (typeof value === "string" && value !== "" && !isUrlLike(value)) {
        dataset[key] = resolve(options.cwd ?? Deno.cwd(), value);
      }
    }
  }

  const recipe = parseRecipe(resolved, display);
  return {
    recipe,
    file,
    resolved: escapeInterpolation(resolved) as Record<string, unknown>,
    files,
  };
}
