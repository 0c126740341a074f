import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { TINY_DATASET } from "./_tiny.ts";

const RECIPES = fileURLToPath(new URL("../recipes", import.meta.url));

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`.replace(/\/+/g, "/");
    if (e.isDirectory) yield* walk(p);
    else if (e.name.endsWith(".yaml")) yield p;
  }
}

const files: string[] = [];
for await (const f of walk(RECIPES)) files.push(f);
files.sort();

Deno.test("the recipes folder holds the phantom's Ours (KL) and partial supervision", () => {
  const names = files.map((f) => f.slice(RECIPES.length).replace(/^\//, ""));
  assert.ok(names.includes("ours-kl.yaml"));
  assert.ok(names.includes("partial.yaml"));
});

for (const file of files) {
  const name = file.slice(RECIPES.length).replace(/^\//, "");
  Deno.test(`recipe ${name} validates and trains 2 iterations on a tiny phantom`, async () => {
    registerBuiltins();
    const loaded = await loadRecipe(file);
    validatePluginOptions(loaded.recipe, file);
    const tiny = await loadRecipe(file, {
      set: [
        `dataset=${JSON.stringify(TINY_DATASET)}`,
        "model.base=4",
        "model.depth=3",
        "trainer.iterations=2",
        "trainer.validateEvery=2",
        "trainer.labeledBatch=2",
        `trainer.unlabeledBatch=${loaded.recipe.trainer.unlabeledBatch > 0 ? 2 : 0}`,
        "backend=wasm",
      ],
    });
    const trainer = await Trainer.create(tiny.recipe, {
      out: null,
      progress: false,
      log: () => {},
    });
    try {
      const summary = await trainer.run();
      assert.equal(summary.iterations, 2);
      assert.ok(Number.isFinite(summary.dice_mean));
    } finally {
      trainer.dispose();
    }
  });
}
