/**
 * The loader: {@linkcode loadRecipe} reads a recipe file, follows its `extends:` chain, applies
 * `--set` overrides, interpolates `${VAR}`, resolves the paths given on the command line, and
 * validates the result.
 *
 * @module
 */
import { dirname, isAbsolute, normalize, resolve } from "node:path";
import { datasets } from "../dataset.ts";
import { hasKey, isPlainObject, Problem, recipeError } from "./_data.ts";
import { loadChain, stripReplaceMarkers } from "./extends.ts";
import { escapeInterpolation, interpolate } from "./interpolate.ts";
import { parseRecipe, type Recipe } from "./schema.ts";
import { applySet } from "./set.ts";

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
   * The folder that `path` and the relative data paths given with `set` (the options the
   * dataset's factory lists in `pathOptions`, e.g. `dataset.root`, `dataset.cache`) are resolved
   * against: paths typed on a command line are relative to where it is typed, not to the
   * recipe's folder. @default {Deno.cwd()}
   */
  cwd?: string;
}

/**
 * The options of dataset `type` that are paths, as its factory declares them (`pathOptions` of
 * `DatasetFactory`, core/dataset.ts). A dataset from a plugin module is not registered yet when
 * its recipe loads (the recipe names the module): for it, an option named like a registered
 * dataset's path option counts as a path (the `root` and `cache` of `commonOptionFields`).
 */
function datasetPathOptions(type: unknown): readonly string[] {
  if (typeof type === "string" && datasets.has(type)) return datasets.get(type).pathOptions ?? [];
  return [...new Set(datasets.ids().flatMap((id) => datasets.get(id).pathOptions ?? []))];
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
 * import { loadRecipe } from "../recipe.ts";
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
  /** Dataset options given with --set (the paths among them resolved against `cwd` below). */
  const setKeys = new Set<string>();
  for (const spec of options.set ?? []) {
    try {
      applySet(merged, spec);
    } catch (error) {
      if (!(error instanceof Problem)) throw error;
      throw recipeError(display, `--set "${spec}": ${error.message}`);
    }
    const target = spec.slice(0, spec.indexOf("=")).replace(/\s+/g, "");
    const option = /^dataset\.([^.[\]]+)$/.exec(target);
    if (option !== null) setKeys.add(option[1]);
    else if (target === "dataset") {
      // a whole dataset mapping: its paths are the command line's
      setKeys.clear();
      const dataset = merged.dataset;
      if (isPlainObject(dataset)) { for (const key of Object.keys(dataset)) setKeys.add(key); }
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
    const paths = datasetPathOptions(dataset.type);
    for (const key of setKeys) {
      if (!paths.includes(key) || !hasKey(dataset, key)) continue;
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
