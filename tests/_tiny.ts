import { parseRecipe, type Recipe } from "../core/recipe.ts";

/** A tiny phantom that trains in milliseconds. */
export const TINY_DATASET = {
  type: "phantom",
  patients: 6,
  slicesPerPatient: 2,
  size: 32,
  split: { labeled: 2, unlabeled: 2, validation: 2 },
};

/** A tiny U-Net. */
export const TINY_MODEL = { type: "unet", base: 4, depth: 3 };

/** A tiny Ours (KL)-style recipe object, with `extra` merged on top (shallowly). */
export function tinyRecipe(extra: Record<string, unknown> = {}): Recipe {
  return parseRecipe({
    method: "ours-kl",
    seed: 3,
    backend: "wasm",
    dataset: TINY_DATASET,
    model: TINY_MODEL,
    regularizers: [{ type: "mi", weight: 1 }, { type: "kl", weight: 1 }],
    augmentation: { rotation: 10 },
    trainer: { iterations: 4, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 },
    ...extra,
  }, "<tiny>");
}
