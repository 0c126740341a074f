import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { loadPluginModules } from "../core/plugin_modules.ts";
import { Trainer } from "../core/trainer.ts";
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

Deno.test("the README's layout block names every top-level folder, and examples/ every kind", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## What is in the box"));
  const block = section.match(/```\n([\s\S]*?)```/);
  assert.ok(block, 'no layout block in "What is in the box"');
  const listed = new Map<string, string>();
  let last = "";
  for (const line of block[1].split("\n")) {
    const m = line.match(/^(\S+)\s+(.*)$/);
    if (m) listed.set(last = m[1], m[2]);
    else if (last && line.trim()) listed.set(last, `${listed.get(last)} ${line.trim()}`);
  }
  for (const name of listed.keys()) {
    assert.ok(await Deno.stat(`${ROOT}/${name}`).then(() => true, () => false), `${name} is gone`);
  }
  // every tracked top-level folder (runs/ and node_modules/ are ignored outputs)
  const git = await new Deno.Command("git", {
    args: ["-C", ROOT, "ls-files"],
    stdout: "piped",
  }).output();
  const folders = new Set(
    new TextDecoder().decode(git.stdout).split("\n").filter((f) => f.includes("/"))
      .map((f) => `${f.split("/")[0]}/`),
  );
  for (const folder of folders) assert.ok(listed.has(folder), `${folder} is not in the block`);
  // examples/ holds one plugin of each kind (docs/plugins.md); the line names each kind
  const examples = listed.get("examples/") ?? "";
  const plugins = await Deno.readTextFile(`${ROOT}/docs/plugins.md`);
  for (const kind of ["regularizer", "loss", "transform", "dataset", "model"]) {
    assert.match(plugins, new RegExp(`^## .*${kind}`, "im"), `docs/plugins.md has no ${kind}`);
    assert.match(examples, new RegExp(`\\b${kind}\\b`), `examples/ line does not name a ${kind}`);
  }
});
