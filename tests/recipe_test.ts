import assert from "node:assert/strict";
import { join } from "node:path";
import { YAML, z } from "../deps.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe, parseRecipe, recipeSchema, validatePluginOptions } from "../core/recipe.ts";
import type { Recipe } from "../core/recipe.ts";
import { datasets } from "../core/dataset.ts";
import { models } from "../core/model.ts";
import { transforms } from "../core/transform.ts";
import { regularizers } from "../core/regularizer.ts";
import { registerBuiltins } from "../plugins/mod.ts";

// The trainer registers no plugins: the built-ins come from here.
registerBuiltins();

const MINIMAL = `
method: ours-kl
dataset:
  type: phantom
trainer:
  iterations: 50
`;

/** A fresh temporary directory with `files` written into it (names may contain `/`). */
async function tempRecipes(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "recipe_test_" });
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
  return dir;
}

/** Assert that `run` fails with a UserError naming `file` and containing each fragment. */
async function assertRecipeError(
  run: () => unknown,
  file: string,
  ...fragments: (string | RegExp)[]
): Promise<string> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof UserError, `expected a UserError, got ${error}`);
  const message = error.message;
  assert.ok(
    message.startsWith(`Cannot load recipe "${file}": `),
    `message does not name the file "${file}": ${message}`,
  );
  for (const fragment of fragments) {
    if (typeof fragment === "string") {
      assert.ok(message.includes(fragment), `"${fragment}" not in: ${message}`);
    } else assert.match(message, fragment);
  }
  return message;
}

const noEnv = () => undefined;

Deno.test("a good recipe gets its defaults", async () => {
  const dir = await tempRecipes({ "r.yaml": MINIMAL });
  const path = join(dir, "r.yaml");
  const { recipe, file, resolved } = await loadRecipe(path, { env: noEnv });
  assert.equal(file, path);
  assert.deepEqual(resolved, {
    method: "ours-kl",
    dataset: { type: "phantom" },
    trainer: { iterations: 50 },
  });
  const expected: Recipe = {
    method: "ours-kl",
    seed: 1,
    backend: "auto",
    kernels: "custom",
    plugins: [],
    dataset: { type: "phantom" },
    model: { type: "unet" },
    transform: { type: "affine" },
    augmentation: { rotation: 0, flip: false },
    supervised: { type: "cross-entropy", weight: 1 },
    lambda: 0.1,
    rampUp: { type: "none" },
    pairing: "inverse",
    regularizers: [],
    trainer: {
      iterations: 50,
      labeledBatch: 4,
      unlabeledBatch: 4,
      validateEvery: 50,
      logEvery: 10,
      batchNormStatistics: "per-group",
      nonFinite: "stop",
      readback: "auto",
    },
    optimizer: {
      type: "adam",
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      weightDecay: 0,
      schedule: { type: "constant", warmup: 0, gamma: 0.1, minLr: 0 },
    },
    output: { dir: "runs" },
  };
  assert.deepEqual(recipe, expected);
});

Deno.test("a full recipe keeps its values and plugin options pass through", async () => {
  const dir = await tempRecipes({
    "r.yaml": `
name: full
method: ours-kl
description: everything set
seed: 42
backend: wasm
threads: 4
dataset: {type: phantom, size: 64, split: {labeled: 2}}
model: {type: unet, channels: [8, 16]}
transform: {type: affine, maxRotation: 30}
augmentation: {rotation: 15, flip: true}
supervised: {type: cross-entropy, weight: 0.5}
lambda: 0.3
rampUp: {type: sigmoid, iterations: 40}
regularizers:
  - {type: kl, weight: 2, name: kl-main, temperature: 1.5}
  - {type: mean-teacher}
trainer: {iterations: 100, labeledBatch: 2, unlabeledBatch: 3, validateEvery: 25,
          logEvery: 5, checkpointEvery: 50}
optimizer: {lr: 0.01, weightDecay: 1e-4, schedule: {type: step, warmup: 5, stepSize: 30,
            gamma: 0.5, minLr: 1e-5}}
output: {dir: out}
`,
  });
  const { recipe } = await loadRecipe(join(dir, "r.yaml"), { env: noEnv });
  assert.equal(recipe.name, "full");
  assert.equal(recipe.backend, "wasm");
  assert.equal(recipe.threads, 4);
  assert.deepEqual(recipe.dataset, { type: "phantom", size: 64, split: { labeled: 2 } });
  assert.deepEqual(recipe.model, { type: "unet", channels: [8, 16] });
  assert.deepEqual(recipe.regularizers, [
    { type: "kl", weight: 2, name: "kl-main", temperature: 1.5 },
    { type: "mean-teacher", weight: 1 },
  ]);
  assert.deepEqual(recipe.rampUp, { type: "sigmoid", iterations: 40 });
  assert.equal(recipe.trainer.validateEvery, 25);
  assert.equal(recipe.trainer.unlabeledBatch, 3);
  assert.equal(recipe.trainer.checkpointEvery, 50);
  assert.equal(recipe.optimizer.schedule.stepSize, 30);
  assert.equal(recipe.optimizer.beta1, 0.9);
  assert.equal(recipe.output.dir, "out");
});

Deno.test("extends: two levels, relative paths, deep merge, arrays replaced", async () => {
  const dir = await tempRecipes({
    "common/grand.yaml": `
method: grand
seed: 3
plugins: [./plugins/grand.ts, "https://example.com/p.ts"]
dataset: {type: phantom, size: 32, split: {labeled: 2, unlabeled: 8}}
regularizers: [{type: kl}, {type: mt}]
trainer: {iterations: 10, labeledBatch: 2}
optimizer: {lr: 0.01, schedule: {type: cosine, warmup: 3}}
`,
    "common/sub/base.yaml": `
extends: ../grand.yaml
method: base
dataset: {split: {labeled: 4}}
trainer: {iterations: 20}
`,
    "exp/top.yaml": `
extends: ../common/sub/base.yaml
method: top
regularizers: [{type: entropy, weight: 0.5}]
optimizer: {schedule: {warmup: 7}}
`,
  });
  const { recipe, resolved } = await loadRecipe(join(dir, "exp/top.yaml"), { env: noEnv });
  assert.equal(recipe.method, "top");
  assert.equal(recipe.seed, 3);
  assert.deepEqual(recipe.dataset, {
    type: "phantom",
    size: 32,
    split: { labeled: 4, unlabeled: 8 },
  });
  assert.deepEqual(recipe.regularizers, [{ type: "entropy", weight: 0.5 }]);
  assert.equal(recipe.trainer.iterations, 20);
  assert.equal(recipe.trainer.labeledBatch, 2);
  assert.equal(recipe.optimizer.lr, 0.01);
  assert.equal(recipe.optimizer.schedule.type, "cosine");
  assert.equal(recipe.optimizer.schedule.warmup, 7);
  // Plugins are relative to the file that wrote them; URLs stay as they are.
  assert.deepEqual(recipe.plugins, [
    join(dir, "common/plugins/grand.ts"),
    "https://example.com/p.ts",
  ]);
  assert.equal("extends" in resolved, false);
  assert.deepEqual(resolved.plugins, recipe.plugins);
});

Deno.test("extends: a dataset of another type, or $replace: true, replaces the base's mapping", async () => {
  registerBuiltins();
  const dir = await tempRecipes({
    "mine.yaml": `
extends: ${join(Deno.cwd(), "recipes/ours-kl.yaml")}
dataset:
  type: folder
  root: ./data
  split: { labeled: 2, validation: 1 }
model: { $replace: true, type: unet, base: 4 }
`,
    "bad.yaml": `
extends: ${join(Deno.cwd(), "recipes/ours-kl.yaml")}
model: { $replace: yes please, type: unet }
`,
  });
  const { recipe, resolved } = await loadRecipe(join(dir, "mine.yaml"), { env: noEnv });
  // nothing of the phantom's options (patients, slicesPerPatient, size) is left
  assert.deepEqual(recipe.dataset, {
    type: "folder",
    root: "./data",
    split: { labeled: 2, validation: 1 },
  });
  // $replace: the base's depth, batchNorm and upsampling are gone; the marker itself too
  assert.deepEqual(recipe.model, { type: "unet", base: 4 });
  assert.equal(JSON.stringify(resolved).includes("$replace"), false);
  // the rest still merges: the base's regularizers and trainer are kept
  assert.deepEqual(recipe.regularizers.map((r) => r.type), ["mi", "kl"]);
  assert.equal(recipe.trainer.iterations, 500);
  validatePluginOptions(recipe, "mine.yaml"); // no "unknown key patients"
  await assertRecipeError(
    () => loadRecipe(join(dir, "bad.yaml"), { env: noEnv }),
    join(dir, "bad.yaml"),
    "model.$replace: expected true",
  );
});

Deno.test("--set dataset.root / dataset.cache are relative to the given cwd; the recipe's own to the recipe", async () => {
  const dir = await tempRecipes({
    "recipes/r.yaml": MINIMAL.replace("type: phantom", "type: folder\n  root: ./data"),
  });
  const plain = await loadRecipe(join(dir, "recipes/r.yaml"), { env: noEnv });
  assert.equal(plain.recipe.dataset.root, "./data"); // resolved later against the recipe's folder
  const cwd = join(dir, "elsewhere");
  const { recipe } = await loadRecipe("../recipes/r.yaml", {
    env: noEnv,
    cwd,
    set: ["dataset.root=mine", "dataset.cache=/abs/cache"],
  });
  assert.equal(recipe.dataset.root, join(cwd, "mine"));
  assert.equal(recipe.dataset.cache, "/abs/cache");
  const whole = await loadRecipe(join(dir, "recipes/r.yaml"), {
    env: noEnv,
    cwd,
    set: ["dataset={type: folder, root: d2}"],
  });
  assert.equal(whole.recipe.dataset.root, join(cwd, "d2"));
  await assertRecipeError(
    () => loadRecipe("nope.yaml", { env: noEnv, cwd }),
    "nope.yaml",
    `file not found (looked for ${join(cwd, "nope.yaml")})`,
  );
});

Deno.test("--set resolves the options a dataset declares as pathOptions, and no other", async () => {
  const id = `test-paths-${crypto.randomUUID().slice(0, 8)}`;
  datasets.register({
    id,
    description: "test dataset with one path option",
    options: z.object({ data: z.string(), root: z.string() }).strict(),
    pathOptions: ["data"],
    load: () => {
      throw new Error("not used");
    },
  });
  try {
    const dir = await tempRecipes({ "r.yaml": MINIMAL.replace("type: phantom", `type: ${id}`) });
    const cwd = join(dir, "elsewhere");
    const { recipe } = await loadRecipe(join(dir, "r.yaml"), {
      env: noEnv,
      cwd,
      set: ["dataset.data=d", "dataset.root=r"],
    });
    assert.equal(recipe.dataset.data, join(cwd, "d"));
    assert.equal(recipe.dataset.root, "r"); // not declared: left as typed
    // phantom declares no path option
    const phantom = await loadRecipe(join(dir, "r.yaml"), {
      env: noEnv,
      cwd,
      set: ["dataset={type: phantom, root: r}"],
    });
    assert.equal(phantom.recipe.dataset.root, "r");
  } finally {
    datasets.unregister(id);
  }
});

Deno.test("extends: errors name the chain and the file", async () => {
  const dir = await tempRecipes({
    "a.yaml": "extends: b.yaml\n" + MINIMAL,
    "b.yaml": "extends: ./a.yaml\nseed: 2\n",
    "self.yaml": "extends: self.yaml\n" + MINIMAL,
    "missing.yaml": "extends: nowhere.yaml\n" + MINIMAL,
    "bad.yaml": "extends: 5\n" + MINIMAL,
    "broken-base.yaml": "extends: broken.yaml\n" + MINIMAL,
    "broken.yaml": "seed: [1\n",
  });
  const a = join(dir, "a.yaml");
  await assertRecipeError(
    () => loadRecipe(a),
    a,
    `extends cycle: ${a} -> ${join(dir, "b.yaml")} -> ${a}`,
  );
  const self = join(dir, "self.yaml");
  await assertRecipeError(() => loadRecipe(self), self, `extends cycle: ${self} -> ${self}`);
  const missing = join(dir, "missing.yaml");
  await assertRecipeError(
    () => loadRecipe(missing),
    missing,
    `extends: file not found: "${join(dir, "nowhere.yaml")}"`,
  );
  const bad = join(dir, "bad.yaml");
  await assertRecipeError(() => loadRecipe(bad), bad, "extends: expected the path", "got 5");
  // A syntax error in a base recipe names the base file.
  await assertRecipeError(
    () => loadRecipe(join(dir, "broken-base.yaml")),
    join(dir, "broken.yaml"),
    /: line \d+, column \d+: /,
  );
});

Deno.test("extends: a relative recipe path is reported relative, as given", async () => {
  const dir = await tempRecipes({
    "x/a.yaml": "extends: ../y/b.yaml\n" + MINIMAL,
    "y/b.yaml": "extends: ../x/a.yaml\n",
  });
  const cwd = Deno.cwd();
  Deno.chdir(dir);
  try {
    await assertRecipeError(
      () => loadRecipe("x/a.yaml"),
      "x/a.yaml",
      "extends cycle: x/a.yaml -> y/b.yaml -> x/a.yaml",
    );
  } finally {
    Deno.chdir(cwd);
  }
});

Deno.test("--set: nested keys, list items, lists, bools, new mappings", async () => {
  const dir = await tempRecipes({
    "r.yaml": MINIMAL + "regularizers: [{type: kl}, {type: mt, weight: 0.5}]\n",
  });
  const path = join(dir, "r.yaml");
  const { recipe, resolved } = await loadRecipe(path, {
    env: noEnv,
    set: [
      "trainer.iterations=200",
      "regularizers[0].weight=2",
      "regularizers.1.name=teacher",
      "regularizers[2]={type: entropy}",
      "dataset.split.labeled=3",
      "augmentation.flip=true",
      "model.channels=[8, 16, 32]",
      "name = spaced",
      "description=a=b",
      "plugins=[./extra.ts]",
    ],
  });
  assert.equal(recipe.trainer.iterations, 200);
  assert.equal(recipe.trainer.validateEvery, 200);
  assert.deepEqual(recipe.regularizers, [
    { type: "kl", weight: 2 },
    { type: "mt", weight: 0.5, name: "teacher" },
    { type: "entropy", weight: 1 },
  ]);
  assert.deepEqual(recipe.dataset, { type: "phantom", split: { labeled: 3 } });
  assert.equal(recipe.augmentation.flip, true);
  assert.deepEqual(recipe.model, { type: "unet", channels: [8, 16, 32] });
  assert.equal(recipe.name, "spaced");
  assert.equal(recipe.description, "a=b");
  assert.deepEqual(recipe.plugins, [join(dir, "extra.ts")]);
  assert.deepEqual((resolved.trainer as Record<string, unknown>).iterations, 200);
});

Deno.test("--set: malformed overrides are errors", async () => {
  const dir = await tempRecipes({ "r.yaml": MINIMAL + "regularizers: [{type: kl}]\n" });
  const path = join(dir, "r.yaml");
  const fail = (set: string, ...fragments: string[]) =>
    assertRecipeError(() => loadRecipe(path, { env: noEnv, set: [set] }), path, ...fragments);
  await fail("trainer.iterations", `--set "trainer.iterations": missing "="`);
  await fail("=3", `--set "=3": empty path`);
  await fail("a..b=1", "empty key");
  await fail("regularizers[x]=1", "list index");
  await fail("regularizers[3].weight=1", "regularizers has 1 item", "out of range");
  await fail("trainer.iterations.x=1", "trainer.iterations is 50, not a mapping");
  await fail("trainer[0]=1", "trainer is a mapping, not a list");
  await fail("regularizers.weight=1", "regularizers is a list");
  await fail("trainer.iterations=[1", "invalid YAML value");
  await fail("extends=other.yaml", "extends cannot be set");
  // A well-formed override with a bad value fails validation at its path.
  await fail("trainer.iterations=abc", `trainer.iterations: expected an integer >= 1, got "abc"`);
  await fail(
    "trainer.iteratons=5",
    `unknown key "iteratons" in trainer (did you mean "iterations"?)`,
  );
});

Deno.test("interpolation: defaults, escapes, types and unset variables", async () => {
  const dir = await tempRecipes({
    "r.yaml": `
method: \${METHOD:-ours}-\${VARIANT}
description: "costs $\${PRICE} in \${HOME_DIR}"
seed: \${SEED}
dataset: {type: phantom, root: "\${DATA:-/data}/acdc", tags: ["\${TAG:-a}", b]}
trainer:
  iterations: \${ITERS:-30}
augmentation: {flip: "\${FLIP}"}
name: \${EMPTY:-fallback}
`,
  });
  const path = join(dir, "r.yaml");
  const vars: Record<string, string> = {
    VARIANT: "kl",
    HOME_DIR: "/home/me",
    SEED: "9",
    FLIP: "true",
    EMPTY: "",
  };
  const env = (name: string) => vars[name];
  const { recipe, resolved } = await loadRecipe(path, { env });
  assert.equal(recipe.method, "ours-kl");
  assert.equal(recipe.description, "costs ${PRICE} in /home/me");
  assert.equal(recipe.seed, 9);
  assert.deepEqual(recipe.dataset, { type: "phantom", root: "/data/acdc", tags: ["a", "b"] });
  assert.equal(recipe.trainer.iterations, 30);
  assert.equal(recipe.augmentation.flip, true);
  assert.equal(recipe.name, "fallback");
  // The resolved object escapes literal "${" again, so it loads back to the same recipe.
  assert.equal(resolved.description, "costs $${PRICE} in /home/me");
  await Deno.writeTextFile(join(dir, "resolved.yaml"), YAML.stringify(resolved));
  const again = await loadRecipe(join(dir, "resolved.yaml"), { env: noEnv });
  assert.deepEqual(again.recipe, recipe);

  await assertRecipeError(
    () => loadRecipe(path, { env: (name) => (name === "VARIANT" ? undefined : vars[name]) }),
    path,
    `method: environment variable "VARIANT" is not set`,
  );
  await assertRecipeError(
    () => loadRecipe(path, { env: (name) => (name === "SEED" ? undefined : vars[name]) }),
    path,
    `seed: environment variable "SEED" is not set`,
  );
  // --set values are interpolated too, and a bad reference names its path.
  await assertRecipeError(
    () => loadRecipe(path, { env, set: ["dataset.tags[1]=${NOPE}"] }),
    path,
    `dataset.tags[1]: environment variable "NOPE" is not set`,
  );
  await assertRecipeError(
    () => loadRecipe(path, { env, set: ["description=${bad name}"] }),
    path,
    `description: invalid variable reference "\${bad name}"`,
  );
  await assertRecipeError(
    () => loadRecipe(path, { env, set: ["description=oops ${X"] }),
    path,
    `description: unterminated "\${"`,
  );
  // An interpolated value must still pass validation.
  await assertRecipeError(
    () => loadRecipe(path, { env: (name) => ({ ...vars, SEED: "-1" })[name] }),
    path,
    "seed: expected an integer >= 0, got -1",
  );
});

Deno.test("bad input: unknown keys, with suggestions", async () => {
  const dir = await tempRecipes({
    "top.yaml": MINIMAL + "seeed: 3\n",
    "nested.yaml": `
method: x
dataset: {type: phantom}
trainer: {iteratons: 5}
`,
    "far.yaml": MINIMAL + "optimizer: {zzzzzz: 1}\n",
  });
  const top = join(dir, "top.yaml");
  await assertRecipeError(
    () => loadRecipe(top),
    top,
    `unknown key "seeed" at the top level (did you mean "seed"?)`,
  );
  const nested = join(dir, "nested.yaml");
  await assertRecipeError(
    () => loadRecipe(nested),
    nested,
    `unknown key "iteratons" in trainer (did you mean "iterations"?)`,
    "missing required field trainer.iterations",
  );
  const far = join(dir, "far.yaml");
  await assertRecipeError(
    () => loadRecipe(far),
    far,
    `unknown key "zzzzzz" in optimizer (known keys: type, lr, beta1`,
  );
});

Deno.test("bad input: wrong types, missing fields, bad numbers, unknown enums", async () => {
  const cases: Array<[string, string[]]> = [
    ["method: x\ntrainer: {iterations: 5}\n", ["missing required field dataset"]],
    ["dataset: {type: p}\ntrainer: {iterations: 5}\n", ["missing required field method"]],
    ["method: x\ndataset: {type: p}\n", ["missing required field trainer"]],
    ["method: x\ndataset: {size: 3}\ntrainer: {iterations: 5}\n", [
      "missing required field dataset.type",
    ]],
    ["method: x\ndataset: {type: p}\ntrainer: {}\n", ["missing required field trainer.iterations"]],
    [MINIMAL.replace("50", '"abc"'), [`trainer.iterations: expected an integer >= 1, got "abc"`]],
    [MINIMAL.replace("50", "0"), ["trainer.iterations: expected an integer >= 1, got 0"]],
    [MINIMAL.replace("50", "2.5"), ["trainer.iterations: expected an integer >= 1, got 2.5"]],
    [MINIMAL.replace("50", "1e12"), [
      "trainer.iterations: expected an integer >= 1 and <= 1000000000, got 1000000000000",
    ]],
    [MINIMAL.replace("50", ".nan"), ["trainer.iterations: expected an integer >= 1, got NaN"]],
    [MINIMAL.replace("50", ""), ["trainer.iterations: expected an integer >= 1, got null"]],
    [MINIMAL + "lambda: -0.5\n", ["lambda: expected a number >= 0, got -0.5"]],
    [MINIMAL + "lambda: .inf\n", ["lambda: expected a finite number >= 0, got Infinity"]],
    [MINIMAL + "seed: -1\n", ["seed: expected an integer >= 0"]],
    [MINIMAL + "backend: gpu\n", [
      `backend: expected one of "auto", "wasm", "cpu", "tensorflow", "tensorflow-gpu", "webgpu", got "gpu"`,
    ]],
    [MINIMAL + "threads: 0\n", ["threads: expected an integer >= 1, got 0"]],
    [MINIMAL.replace("iterations: 50", "iterations: 5\n  labeledBatch: 100000"), [
      "trainer.labeledBatch: expected an integer >= 1 and <= 4096, got 100000",
    ]],
    [MINIMAL + "regularizers: [{type: kl}, {type: mt, weight: heavy}]\n", [
      `regularizers[1].weight: expected a number >= 0, got "heavy"`,
    ]],
    [MINIMAL + "regularizers: [{weight: 1}]\n", ["missing required field regularizers[0].type"]],
    [MINIMAL + "regularizers: [{type: kl}, {type: kl}]\n", [
      `regularizers[1]: regularizer name "kl" is already used by regularizers[0]`,
    ]],
    [MINIMAL + "regularizers: {type: kl}\n", ["regularizers: expected a list, got a mapping"]],
    [MINIMAL + "augmentation: {rotation: 270, flip: yes}\n", [
      "augmentation.rotation: expected a number >= 0 and <= 180, got 270",
      `augmentation.flip: expected true or false, got "yes"`,
    ]],
    [MINIMAL + "supervised: {type: dice, weight: -1}\n", [
      "supervised.weight: expected a number >= 0, got -1",
    ]],
    [MINIMAL + "optimizer: {lr: 0, schedule: {gamma: 1.5, type: cosin}}\n", [
      "optimizer.lr: expected a number > 0, got 0",
      "optimizer.schedule.gamma: expected a number > 0 and <= 1, got 1.5",
      `optimizer.schedule.type: expected one of "constant", "step", "cosine", got "cosin" ` +
      `(did you mean "cosine"?)`,
    ]],
    [MINIMAL + "rampUp: {type: sigmoid, iterations: -3}\n", [
      "rampUp.iterations: expected an integer >= 1, got -3",
    ]],
    [MINIMAL + "plugins: ./p.ts\n", [`plugins: expected a list, got "./p.ts"`]],
    [MINIMAL + "model: unet\n", [`model: expected a mapping, got "unet"`]],
    [MINIMAL + "name: 5\n", ["name: expected a string, got 5"]],
    [MINIMAL + "output: {dir: ''}\n", [`output.dir: expected a non-empty string, got ""`]],
  ];
  const dir = await tempRecipes({});
  for (const [i, [text, fragments]] of cases.entries()) {
    const path = join(dir, `case${i}.yaml`);
    await Deno.writeTextFile(path, text);
    await assertRecipeError(() => loadRecipe(path, { env: noEnv }), path, ...fragments);
  }
});

Deno.test("bad input: files that are not one YAML mapping", async () => {
  const bomb = [
    "a: &a [x, x, x, x, x, x, x, x, x, x]",
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
    "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]",
  ].join("\n");
  const junk = new Uint8Array(256).map((_, i) => (i * 37 + 11) % 256);
  const cases: Record<string, [string | Uint8Array, (string | RegExp)[]]> = {
    "list.yaml": ["- method: x\n- seed: 2\n", ["expected a mapping at the top level, got a list"]],
    "scalar.yaml": ["just words\n", [`expected a mapping at the top level, got "just words"`]],
    "empty.yaml": ["# nothing\n", ["the file is empty"]],
    "multi.yaml": [MINIMAL + "---\n" + MINIMAL, ["2 YAML documents"]],
    "syntax.yaml": ["method: x\ntrainer: {iterations: 5\nseed: 1\n", [/line \d+, column \d+: /]],
    "dupe.yaml": [MINIMAL + "method: y\n", ["line 7, column 1: ", "unique"]],
    "bomb.yaml": [bomb, ["YAML aliases expand too much"]],
    "junk.bin": [junk, ["not a text file"]],
    "nul.yaml": ["method: x\0\n", ["not a text file"]],
  };
  const files: Record<string, string | Uint8Array> = {};
  for (const [name, [content]] of Object.entries(cases)) files[name] = content;
  const dir = await tempRecipes(files);
  for (const [name, [, fragments]] of Object.entries(cases)) {
    const path = join(dir, name);
    await assertRecipeError(() => loadRecipe(path, { env: noEnv }), path, ...fragments);
  }
  const missing = join(dir, "missing.yaml");
  await assertRecipeError(() => loadRecipe(missing), missing, "file not found");
  await assertRecipeError(() => loadRecipe(dir), dir, "is a directory");
});

Deno.test("YAML anchors and merge keys work within limits", async () => {
  const dir = await tempRecipes({
    "r.yaml": `
method: x
dataset: &ds {type: phantom, size: 16}
model: {type: unet, <<: {channels: 4}}
trainer: {iterations: 5}
regularizers: [{type: kl, data: *ds}]
`,
  });
  const { recipe } = await loadRecipe(join(dir, "r.yaml"), {
    env: noEnv,
    set: ["dataset.size=32"],
  });
  assert.deepEqual(recipe.dataset, { type: "phantom", size: 32 });
  assert.deepEqual(recipe.model, { type: "unet", channels: 4 });
  // The alias is an independent copy: --set on the anchor's mapping does not change it.
  assert.deepEqual(recipe.regularizers[0].data, { type: "phantom", size: 16 });
});

Deno.test("parseRecipe validates an inline object", () => {
  const recipe = parseRecipe(
    { method: "x", dataset: { type: "phantom" }, trainer: { iterations: 1 } },
    "<inline>",
  );
  assert.equal(recipe.trainer.validateEvery, 1);
  assert.equal(recipe.model.type, "unet");
  assert.deepEqual(recipe, recipeSchema.parse(recipe));
  assert.throws(
    () => parseRecipe({ method: "x", dataset: { type: "p" }, trainer: { iterations: NaN } }, "<i>"),
    (e: unknown) =>
      e instanceof UserError &&
      e.message === `Cannot load recipe "<i>": trainer.iterations: expected an integer >= 1, ` +
          `got NaN`,
  );
  assert.throws(
    () => parseRecipe("method: x", "<i>"),
    /Cannot load recipe "<i>": expected a mapping at the top level, got "method: x"/,
  );
  assert.throws(
    () => parseRecipe({ extends: "a.yaml", method: "x" }, "<i>"),
    /Cannot load recipe "<i>": extends: only recipe files/,
  );
});

Deno.test("validatePluginOptions checks each plugin's options", async () => {
  const suffix = crypto.randomUUID().slice(0, 8);
  const ids = {
    dataset: `test-ds-${suffix}`,
    model: `test-model-${suffix}`,
    transform: `test-tf-${suffix}`,
    reg: `test-reg-${suffix}`,
  };
  const stub = () => {
    throw new Error("not used");
  };
  datasets.register({
    id: ids.dataset,
    description: "test dataset",
    options: z.object({ size: z.number().int().default(16) }).strict(),
    load: stub,
  });
  models.register({
    id: ids.model,
    description: "test model",
    options: z.object({ channels: z.array(z.number()).default([4]) }).strict(),
    create: stub,
  });
  transforms.register({
    id: ids.transform,
    description: "test transform",
    options: z.object({ maxRotation: z.number().min(0).max(180).default(10) }).strict(),
    create: stub,
  });
  regularizers.register({
    id: ids.reg,
    description: "test regularizer",
    options: z.object({ radius: z.number().positive().default(1) }).strict(),
    create: stub,
  });
  try {
    const recipe = parseRecipe({
      method: "x",
      dataset: { type: ids.dataset, size: 32 },
      model: { type: ids.model },
      transform: { type: ids.transform, maxRotation: 20 },
      regularizers: [
        { type: ids.reg, weight: 2 },
        { type: ids.reg, name: "wide", radius: 3 },
      ],
      trainer: { iterations: 1 },
    }, "<inline>");
    assert.deepEqual(validatePluginOptions(recipe, "<inline>"), {
      dataset: { size: 32 },
      model: { channels: [4] },
      transform: { maxRotation: 20 },
      regularizers: [
        { type: ids.reg, weight: 2, name: ids.reg, options: { radius: 1 } },
        { type: ids.reg, weight: 1, name: "wide", options: { radius: 3 } },
      ],
      supervised: { type: "cross-entropy", weight: 1, options: {} },
    });

    // Unknown ids: the registry's message, prefixed with the location.
    const unknown = parseRecipe({
      ...recipe,
      dataset: { type: "no-such-dataset" },
      regularizers: [{ type: "no-such-reg" }],
    }, "<inline>");
    await assertRecipeError(
      () => validatePluginOptions(unknown, "x.yaml"),
      "x.yaml",
      `dataset.type: Unknown dataset "no-such-dataset"; known datasets: `,
      ids.dataset,
      `regularizers[0].type: Unknown regularizer "no-such-reg"; known regularizers: `,
      ids.reg,
    );

    // Bad options: the path inside the recipe.
    const bad = parseRecipe({
      ...recipe,
      transform: { type: ids.transform, maxRotation: 400 },
      regularizers: [{ type: ids.reg, radius: "big" }, { type: ids.reg, name: "b", radus: 2 }],
    }, "<inline>");
    await assertRecipeError(
      () => validatePluginOptions(bad, "r.yaml"),
      "r.yaml",
      "transform.maxRotation: expected a number <= 180, got 400",
      `regularizers[0].radius: expected a number, got "big"`,
      `unknown key "radus" in regularizers[1] (did you mean "radius"?)`,
    );
    const typo = parseRecipe({ ...recipe, dataset: { type: ids.dataset, sise: 3 } }, "<i>");
    await assertRecipeError(
      () => validatePluginOptions(typo, "r.yaml"),
      "r.yaml",
      `unknown key "sise" in dataset (did you mean "size"?)`,
    );
  } finally {
    datasets.unregister(ids.dataset);
    models.unregister(ids.model);
    transforms.unregister(ids.transform);
    regularizers.unregister(ids.reg);
  }
});

Deno.test("supervised.type is checked against the losses registry, with its options", async () => {
  const base = {
    method: "x",
    dataset: { type: "phantom" },
    model: { type: "unet" },
    trainer: { iterations: 1 },
  };
  const ok = parseRecipe({
    ...base,
    supervised: { type: "dice-ce", weight: 0.5, diceWeight: 2 },
  }, "<inline>");
  assert.deepEqual(validatePluginOptions(ok, "<inline>").supervised, {
    type: "dice-ce",
    weight: 0.5,
    options: { diceWeight: 2, ceWeight: 1, smooth: 1e-5, includeBackground: false },
  });
  const typo = parseRecipe({ ...base, supervised: { type: "dise" } }, "<inline>");
  await assertRecipeError(
    () => validatePluginOptions(typo, "r.yaml"),
    "r.yaml",
    `supervised.type: Unknown loss "dise"; known losses: cross-entropy, dice, dice-ce ` +
      `(did you mean "dice"?)`,
  );
  const badKey = parseRecipe({ ...base, supervised: { type: "dice", smoth: 1 } }, "<inline>");
  await assertRecipeError(
    () => validatePluginOptions(badKey, "r.yaml"),
    "r.yaml",
    `unknown key "smoth" in supervised (did you mean "smooth"?)`,
  );
});

Deno.test("compose's parts are checked like the recipe's transform: ids and options", async () => {
  const base = { method: "x", dataset: { type: "phantom" }, trainer: { iterations: 1 } };
  const ok = parseRecipe({
    ...base,
    transform: { type: "compose", transforms: [{ type: "flip" }, { type: "affine", shear: 0 }] },
  }, "<inline>");
  validatePluginOptions(ok, "<inline>");
  const bad = parseRecipe({
    ...base,
    transform: {
      type: "compose",
      transforms: [
        { type: "nope" },
        { type: "afine" },
        { type: "flip", horizntal: 0.3 },
        { type: "compose", transforms: [{ type: "affine", rotation: 999 }] },
      ],
    },
  }, "<inline>");
  await assertRecipeError(
    () => validatePluginOptions(bad, "r.yaml"),
    "r.yaml",
    `transform.transforms[0].type: Unknown transform "nope"; known transforms: affine, compose, ` +
      `flip`,
    `transform.transforms[1].type: Unknown transform "afine"; known transforms: affine, ` +
      `compose, flip (did you mean "affine"?)`,
    `unknown key "horizntal" in transform.transforms[2] (did you mean "horizontal"?)`,
    "transform.transforms[3].transforms[0].rotation: expected a number <= 180, got 999",
  );
});
