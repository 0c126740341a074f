/**
 * Plugin option checks: each plugin entry of a recipe (dataset, model, transform, regularizers,
 * supervised loss) parsed by its registered plugin's own schema ({@linkcode validatePluginOptions}).
 * This is the one module of the recipe that reads the plugin registries.
 *
 * @module
 */
import type { ZodTypeAny } from "../../deps.ts";
import { UserError } from "../errors.ts";
import { datasets } from "../dataset.ts";
import { models } from "../model.ts";
import { transforms } from "../transform.ts";
import { regularizers } from "../regularizer.ts";
import { losses } from "../loss.ts";
import { formatPath, isPlainObject, type PathSegment, recipeError, setKey } from "./_data.ts";
import { closest, describeIssues } from "./issues.ts";
import type { Recipe } from "./schema.ts";

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
