/**
 * `extends:` chains: a recipe file and its bases, deep-merged (a mapping with `$replace: true`,
 * or with a `type` other than the base's, replaces the base's).
 *
 * @module
 */
import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import {
  cloneData,
  describeValue,
  formatPath,
  hasKey,
  isPlainObject,
  type PathSegment,
  Problem,
  recipeError,
  setKey,
} from "./_data.ts";
import { MAX_EXTENDS_DEPTH } from "./schema.ts";
import { readRecipeFile } from "./yaml.ts";

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
export function stripReplaceMarkers(value: unknown, path: PathSegment[]): unknown {
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
export async function loadChain(
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
