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
 * This module is the recipe's public face; each concept lives in its own file under
 * `core/recipe/`: `schema.ts` (limits, the zod schema, the `Recipe` type, `parseRecipe`),
 * `issues.ts` (zod issues turned into messages with suggestions), `plugin_options.ts` (plugin
 * option checks against the registries), `yaml.ts` (reading files), `extends.ts` (`extends` and
 * `$replace`), `set.ts` (`--set`), `interpolate.ts` (`${VAR}`) and `load.ts` (the loader).
 *
 * @module
 */
export {
  isReservedMetricName,
  parseRecipe,
  type Recipe,
  recipeSchema,
  RESERVED_METRIC_NAMES,
} from "./recipe/schema.ts";
export { type PluginOptions, validatePluginOptions } from "./recipe/plugin_options.ts";
export { REPLACE_KEY } from "./recipe/extends.ts";
export { isUrlLike, type LoadedRecipe, loadRecipe, type LoadRecipeOptions } from "./recipe/load.ts";
