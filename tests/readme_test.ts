import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { loadPluginModules, Trainer } from "../core/trainer.ts";
import { regularizers } from "../core/regularizer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { TINY_DATASET } from "./_tiny.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

Deno.test("the README's plugin example is examples/smoothness.ts, word for word", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## Writing a regularizer"));
  const block = section.match(/```ts\n([\s\S]*?)```/);
  assert.ok(block, "no ts block in the section");
  assert.equal(block[1], await Deno.readTextFile(`${ROOT}/examples/smoothness.ts`));
});

Deno.test("a plugin loaded from a file path through a recipe trains 2 iterations", async () => {
  registerBuiltins();
  const loaded = await loadRecipe(`${ROOT}/examples/smoothness.yaml`, {
    set: [
      `dataset=${JSON.stringify(TINY_DATASET)}`,
      "model.base=4",
      "model.depth=3",
      "trainer.iterations=2",
      "trainer.labeledBatch=2",
      "trainer.unlabeledBatch=2",
      "backend=wasm",
    ],
  });
  await loadPluginModules(loaded.recipe.plugins);
  assert.ok(regularizers.has("smoothness"));
  validatePluginOptions(loaded.recipe, loaded.file);
  const trainer = await Trainer.create(loaded.recipe, {
    out: null,
    progress: false,
    log: () => {},
  });
  try {
    const v = await trainer.step();
    assert.ok(v.smoothness > 0 && Number.isFinite(v.smoothness), `smoothness ${v.smoothness}`);
    await trainer.step();
  } finally {
    trainer.dispose();
  }
});
