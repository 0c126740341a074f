import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadCheckpoint } from "../core/checkpoint.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { NonFiniteLossError, Trainer } from "../core/trainer.ts";
import { registerTestPlugins } from "./_test_plugins.ts";
import { tinyRecipe } from "./_tiny.ts";

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
const MOD = new URL("../mod.ts", import.meta.url).href;
const quiet = { progress: false, log: () => {} };

function cliCommand(args: string[], cwd?: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", CLI, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

const TINY = `method: tiny
seed: 2
backend: wasm
dataset: { type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 4, depth: 3 }
augmentation: { rotation: 10 }
regularizers: [{ type: mi }, { type: kl }]
trainer: { iterations: 40, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 10 }
`;

/** metrics.jsonl without the clock fields (`seconds_train`, `seconds_wall`, ...). */
async function metrics(dir: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  return text.trim().split("\n").map((l) =>
    Object.fromEntries(Object.entries(JSON.parse(l)).filter(([k]) => !k.startsWith("seconds")))
  );
}

Deno.test("SIGINT writes a checkpoint, exits 130, and --resume finishes with the metrics of an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.yaml`, TINY);
    const full = await cliCommand(["run", `${dir}/r.yaml`, "--out", `${dir}/full`, "--quiet"])
      .output();
    assert.equal(full.code, 0, new TextDecoder().decode(full.stderr));

    const child = cliCommand(["run", `${dir}/r.yaml`, "--out", `${dir}/cut`, "--quiet"]).spawn();
    // wait until training is under way, then interrupt
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        const text = await Deno.readTextFile(`${dir}/cut/metrics.jsonl`);
        if (text.split("\n").length > 4) break;
      } catch {
        // not yet
      }
    }
    child.kill("SIGINT");
    const cut = await child.output();
    const stderr = new TextDecoder().decode(cut.stderr);
    assert.equal(cut.code, 130, stderr);
    assert.match(
      stderr,
      /Interrupted by SIGINT after iteration \d+; checkpoint written\. Resume with: deno task run --resume/,
    );
    const ckpt = await loadCheckpoint<{ iteration: number }>(`${dir}/cut/latest.ckpt`);
    assert.ok(
      ckpt.meta.iteration > 0 && ckpt.meta.iteration < 40,
      `stopped at ${ckpt.meta.iteration}`,
    );
    await assert.rejects(() => Deno.stat(`${dir}/cut/summary.json`));

    const resumed = await cliCommand(["run", "--resume", `${dir}/cut`, "--quiet"]).output();
    assert.equal(resumed.code, 0, new TextDecoder().decode(resumed.stderr));
    assert.deepEqual(await metrics(`${dir}/cut`), await metrics(`${dir}/full`));
    const a = JSON.parse(await Deno.readTextFile(`${dir}/full/summary.json`));
    const b = JSON.parse(await Deno.readTextFile(`${dir}/cut/summary.json`));
    assert.deepEqual(b.dice, a.dice);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Run `command` to its end, or kill it after `ms` (then `code` is that of a killed process). */
async function outputWithin(command: Deno.Command, ms: number): Promise<Deno.CommandOutput> {
  const child = command.spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    return await child.output();
  } finally {
    clearTimeout(timer);
  }
}

/** Read `child`'s stderr until `pattern` appears in it (the text so far), or it ends. */
async function stderrUntil(child: Deno.ChildProcess, pattern: RegExp): Promise<string> {
  const reader = child.stderr.getReader();
  let seen = "";
  while (!pattern.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return seen;
}

Deno.test("a folder being trained is locked: a second --resume or --out is refused; a killed trainer's lock is the OS's to release", async () => {
  const dir = await Deno.makeTempDir();
  const run = `${dir}/run`;
  try {
    await Deno.writeTextFile(
      `${dir}/r.yaml`,
      TINY.replace("iterations: 40", "iterations: 100000").replace(
        "validateEvery: 10",
        "validateEvery: 5, checkpointEvery: 5",
      ),
    );
    const first = cliCommand(["run", `${dir}/r.yaml`, "--out", run, "--quiet"]).spawn();
    for (let i = 0; i < 1200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        await Deno.stat(`${run}/latest.ckpt`);
        break;
      } catch {
        // not yet
      }
    }
    const lock = JSON.parse(await Deno.readTextFile(`${run}/run.lock`));
    assert.equal(lock.pid, first.pid);
    // without the lock it would train on (killed after 120 s, and the test fails)
    const second = await outputWithin(cliCommand(["run", "--resume", run, "--quiet"]), 120_000);
    const stderr = new TextDecoder().decode(second.stderr);
    assert.equal(second.code, 2, stderr);
    assert.match(stderr, new RegExp(`is being trained by process ${first.pid} \\(since `));
    const out = await cliCommand(["run", `${dir}/r.yaml`, "--out", run, "--quiet"]).output();
    assert.equal(out.code, 2);
    assert.match(new TextDecoder().decode(out.stderr), /already holds a run/);
    // killed: no handler runs, run.lock stays behind, and the OS has released its lock
    first.kill("SIGKILL");
    await first.output();
    await Deno.stat(`${run}/run.lock`);
    const resumed = cliCommand(["run", "--resume", run]).spawn();
    const seen = await stderrUntil(resumed, /resuming .* at iteration \d+/);
    const from = Number(/resuming .* at iteration (\d+)/.exec(seen)?.[1]);
    assert.ok(from > 0, seen);
    assert.equal(JSON.parse(await Deno.readTextFile(`${run}/run.lock`)).pid, resumed.pid);
    // SIGINT once it trains (its handler is in place from the first step on)
    for (let i = 0; i < 1200; i++) {
      const text = await Deno.readTextFile(`${run}/metrics.jsonl`);
      const past = (line: string) => {
        try {
          return JSON.parse(line).iteration > from;
        } catch {
          return false; // a line being written
        }
      };
      if (text.split("\n").some(past)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    resumed.kill("SIGINT");
    const end = await resumed.output();
    assert.equal(end.code, 130);
    assert.match(new TextDecoder().decode(end.stderr), /Interrupted by SIGINT/);
    // a run that ends (here by SIGINT) gives the lock back and removes the file
    await assert.rejects(() => Deno.stat(`${run}/run.lock`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--resume of a directory without a checkpoint exits 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const res = await cliCommand(["run", "--resume", dir]).output();
    assert.equal(res.code, 2);
    assert.match(new TextDecoder().decode(res.stderr), /Cannot resume .*no latest\.ckpt/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a process killed while saving never leaves a corrupt checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/saver.ts`,
      `import { initBackend, saveCheckpoint, tf } from "${MOD}";
await initBackend("cpu");
const tensors = new Map([["a", tf.fill([256, 1024], 1)], ["b", tf.fill([1000], 2)]]);
for (let i = 1; ; i++) {
  await saveCheckpoint("${dir}/latest.ckpt", { iteration: i }, tensors);
  console.log(i);
}
`,
    );
    for (let trial = 0; trial < 4; trial++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-config",
          "--allow-read",
          "--allow-write",
          "--allow-env",
          "--allow-sys",
          `${dir}/saver.ts`,
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = child.stdout.getReader();
      let seen = "";
      while (!/\n\d+\n\d+\n/.test("\n" + seen)) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      assert.match(seen, /\d+\n\d+\n/, "the saver did not run");
      await new Promise((r) => setTimeout(r, 7 * trial));
      child.kill("SIGKILL");
      await reader.cancel();
      await child.status;
      const ckpt = await loadCheckpoint<{ iteration: number }>(`${dir}/latest.ckpt`);
      assert.ok(ckpt.meta.iteration >= 1);
      assert.ok(ckpt.tensors.get("a")!.data.every((v) => v === 1));
      assert.ok(ckpt.tensors.get("b")!.data.every((v) => v === 2));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// test-nan-at: a regularizer that returns NaN at one iteration, for the bad-number paths.
registerTestPlugins();

Deno.test("a NaN loss term stops the run naming the term and iteration, keeping the last good checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const recipe = tinyRecipe({
    regularizers: [{ type: "kl" }, { type: "test-nan-at", at: 2 }],
    trainer: { iterations: 6, labeledBatch: 2, unlabeledBatch: 2, checkpointEvery: 1 },
  });
  const trainer = await Trainer.create(recipe, { ...quiet, out: `${dir}/run` });
  try {
    await assert.rejects(() => trainer.run(), (e: unknown) => {
      assert.ok(e instanceof NonFiniteLossError);
      assert.match((e as Error).message, /iteration 3: loss term "(loss|test-nan-at)" is NaN/);
      return true;
    });
    const ckpt = await loadCheckpoint<{ iteration: number }>(`${dir}/run/latest.ckpt`);
    assert.equal(ckpt.meta.iteration, 2);
    // the weights are those of the checkpoint: the bad step changed nothing
    for (const [name, v] of trainer.model.trainable) {
      assert.deepEqual([...v.dataSync()], [...ckpt.tensors.get(name)!.data], name);
    }
    for (const [name, v] of trainer.model.state) {
      assert.deepEqual([...v.dataSync()], [...ckpt.tensors.get(name)!.data], name);
    }
  } finally {
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer.nonFinite: skip skips and counts the bad steps", async () => {
  const recipe = tinyRecipe({
    regularizers: [{ type: "test-nan-at", at: 1 }],
    trainer: { iterations: 3, labeledBatch: 2, unlabeledBatch: 2, nonFinite: "skip" },
  });
  const trainer = await Trainer.create(recipe, { ...quiet, out: null });
  try {
    const summary = await trainer.run();
    assert.equal(summary.skipped_steps, 1);
    assert.equal(summary.iterations, 3);
  } finally {
    trainer.dispose();
  }
});

Deno.test("an unwritable output directory is an error before training starts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "not a directory");
    await assert.rejects(
      () => Trainer.create(tinyRecipe(), { ...quiet, out: `${dir}/file/run` }),
      (e: unknown) =>
        e instanceof UserError && /Cannot write the run directory/.test((e as Error).message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- hostile recipes ----

const GOOD = {
  method: "x",
  seed: 1,
  backend: "wasm",
  dataset: {
    type: "phantom",
    patients: 4,
    slicesPerPatient: 2,
    size: 32,
    split: { labeled: 1, unlabeled: 1, validation: 2 },
  },
  model: { type: "unet", base: 4, depth: 3 },
  transform: { type: "affine", rotation: 30, scale: [0.8, 1.2] },
  regularizers: [{ type: "mi", radius: 1 }, { type: "kl", weight: 1 }],
  trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2 },
  optimizer: { lr: 0.001, schedule: { type: "cosine" } },
};

/** Every path to a leaf or node of `obj`. */
function paths(obj: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (obj === null || typeof obj !== "object") return [prefix];
  const out: (string | number)[][] = prefix.length ? [prefix] : [];
  for (const [k, v] of Object.entries(obj)) {
    out.push(...paths(v, [...prefix, Array.isArray(obj) ? Number(k) : k]));
  }
  return out;
}

function mutate(path: (string | number)[], value: unknown, remove = false): unknown {
  const copy = structuredClone(GOOD) as Record<string | number, unknown>;
  let node = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (remove) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else node[last] = value;
  return copy;
}

const JUNK: unknown[] = [
  null,
  "text",
  -1,
  0,
  1e308,
  -1e308,
  2 ** 53 + 7,
  0.5,
  true,
  [],
  [1, "a", null],
  {},
  { type: "unknown-plugin" },
  "${UNSET_VARIABLE_FOR_TEST}",
];

/**
 * Load and validate a recipe text: the recipe and its parsed plugin options (the recipe with each
 * plugin entry's options as its plugin parsed them), or the clean `UserError` message. Anything
 * else (another error, a stack in the message, a message that does not name the file) fails.
 */
async function outcome(
  text: string,
  label: string,
): Promise<{ parsed: Record<string, unknown> } | { message: string }> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.yaml`, text);
    try {
      const loaded = await loadRecipe(`${dir}/r.yaml`);
      const p = validatePluginOptions(loaded.recipe, loaded.file);
      const options = (o: unknown) => o as Record<string, unknown>;
      return {
        parsed: {
          ...loaded.recipe,
          dataset: { type: loaded.recipe.dataset.type, ...options(p.dataset) },
          model: { type: loaded.recipe.model.type, ...options(p.model) },
          transform: { type: loaded.recipe.transform.type, ...options(p.transform) },
          regularizers: p.regularizers.map((r) => ({
            type: r.type,
            weight: r.weight,
            ...options(r.options),
          })),
        },
      };
    } catch (e) {
      assert.ok(e instanceof UserError, `${label}: ${(e as Error)?.stack ?? e}`);
      assert.ok(!/\n\s+at /.test((e as Error).message), `${label}: stack in message`);
      assert.match((e as Error).message, /r\.yaml/, label);
      return { message: (e as Error).message };
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether every part of `value` is in `parsed` (extra defaults in `parsed` are fine). */
function reflects(parsed: unknown, value: unknown): boolean {
  if (Array.isArray(value)) {
    return Array.isArray(parsed) && parsed.length === value.length &&
      value.every((v, i) => reflects(parsed[i], v));
  }
  if (value !== null && typeof value === "object") {
    return parsed !== null && typeof parsed === "object" &&
      Object.entries(value).every(([k, v]) => reflects((parsed as Record<string, unknown>)[k], v));
  }
  return Object.is(parsed, value);
}

/**
 * The mutations of GOOD a recipe may take: an optional field deleted (its default applies), or a
 * value the field's schema allows. Every other mutation must be rejected; a change here is a
 * deliberate change of what recipes accept.
 */
const ACCEPTED_MUTATIONS = [
  "delete backend",
  "delete dataset.patients",
  "delete dataset.size",
  "delete dataset.slicesPerPatient",
  "delete model",
  "delete model.base",
  "delete model.depth",
  "delete model.type",
  "delete optimizer",
  "delete optimizer.lr",
  "delete optimizer.schedule",
  "delete optimizer.schedule.type",
  "delete regularizers",
  "delete regularizers.0",
  "delete regularizers.0.radius",
  "delete regularizers.1",
  "delete regularizers.1.weight",
  "delete seed",
  "delete trainer.labeledBatch",
  "delete trainer.unlabeledBatch",
  "delete transform",
  "delete transform.rotation",
  "delete transform.scale",
  "delete transform.type",
  "dataset.split.unlabeled = 0",
  "dataset.split.validation = 0",
  'method = "text"',
  "model = {}",
  "optimizer = {}",
  "optimizer.lr = 0.5",
  "optimizer.lr = 1e+308",
  "optimizer.lr = 9007199254741000",
  "optimizer.schedule = {}",
  "regularizers = []",
  "regularizers.0.radius = 0",
  "regularizers.1.weight = 0",
  "regularizers.1.weight = 0.5",
  "regularizers.1.weight = 1e+308",
  "regularizers.1.weight = 9007199254741000",
  "seed = 0",
  "transform = {}",
  "transform.rotation = 0",
  "transform.rotation = 0.5",
  "transform.scale.0 = 0.5",
].sort();

Deno.test("hundreds of malformed recipes end in a clean message (deleted keys, swapped types, huge and negative numbers), and exactly the allowed ones are taken as written", async () => {
  let n = 0;
  const accepted: string[] = [];
  for (const path of paths(GOOD)) {
    const label = `delete ${path.join(".")}`;
    const deleted = await outcome(JSON.stringify(mutate(path, undefined, true)), label);
    if ("parsed" in deleted) accepted.push(label);
    n++;
    for (const junk of JUNK) {
      const label = `${path.join(".")} = ${JSON.stringify(junk)}`;
      const result = await outcome(JSON.stringify(mutate(path, junk)), label);
      if ("parsed" in result) {
        accepted.push(label);
        // Taken as written: no value silently dropped or replaced.
        let here: unknown = result.parsed;
        for (const k of path) here = (here as Record<string | number, unknown>)?.[k];
        assert.ok(reflects(here, junk), `${label}: parsed as ${JSON.stringify(here)}`);
      }
      n++;
    }
  }
  assert.ok(n > 300, `${n} recipes`);
  assert.deepEqual(accepted.sort(), ACCEPTED_MUTATIONS);
});

Deno.test("deep nesting, binary junk and YAML alias bombs end in a clean message", async () => {
  const deep = "a: " + "[".repeat(5000) + "]".repeat(5000);
  const deepMap = Array.from({ length: 3000 }, (_, i) => " ".repeat(i) + "k:").join("\n");
  const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    .concat(Array.from({ length: 9 }, (_, i) => {
      const prev = String.fromCharCode(97 + i), cur = String.fromCharCode(98 + i);
      return `${cur}: &${cur} [*${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}]`;
    })).join("\n");
  const rng = new Uint8Array(4096);
  let s = 12345;
  for (let i = 0; i < rng.length; i++) rng[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  const cases: Array<[string, string]> = [
    ["deep list", deep],
    ["deep map", deepMap],
    ["alias bomb", bomb],
    ["binary junk", new TextDecoder("latin1").decode(rng)],
    ["tabs", "\t\tmethod:\t x"],
    ["huge key count", Array.from({ length: 20000 }, (_, i) => `k${i}: ${i}`).join("\n")],
  ];
  for (const [label, text] of cases) {
    assert.ok("message" in await outcome(text, label), `${label} was accepted`);
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/r.yaml`, rng);
    const res = await cliCommand(["run", `${dir}/r.yaml`]).output();
    const stderr = new TextDecoder().decode(res.stderr);
    assert.equal(res.code, 2, stderr);
    assert.doesNotMatch(stderr, /\n\s+at /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- YAML's own features ----

const BASE_YAML = `method: x
backend: cpu
dataset: {type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: {labeled: 1, unlabeled: 1, validation: 2}}
model: {type: unet, base: 4, depth: 3}
regularizers: [{type: kl}]
trainer: {iterations: 2, labeledBatch: 2, unlabeledBatch: 2}
`;

/** BASE_YAML with `line` added, or with `from` replaced by `to`. */
const withLine = (line: string) => BASE_YAML + line + "\n";
const replaced = (from: string, to: string) => {
  assert.ok(BASE_YAML.includes(from), from);
  return BASE_YAML.replace(from, to);
};
const MODEL = "model: {type: unet, base: 4, depth: 3}";
const TRAINER = "trainer: {iterations: 2, labeledBatch: 2, unlabeledBatch: 2}";

/**
 * YAML features, each with what must happen: accepted (and what it means), or rejected with a
 * message matching the pattern. Recipes are plain data: tags, complex keys, recursive aliases,
 * non-finite numbers and `__proto__` keys are errors; anchors, aliases and merge keys work.
 */
const YAML_CASES: Array<[string, string, RegExp | ((r: Record<string, unknown>) => void)]> = [
  // anchors, aliases, merge keys
  [
    "anchor and alias",
    "shared: &n 3\n" + replaced("depth: 3", "depth: *n"),
    /unknown key "shared" at the top level/,
  ],
  [
    "merge key",
    replaced(TRAINER, "trainer: {<<: {iterations: 2, labeledBatch: 2}, unlabeledBatch: 2}"),
    (r) => assert.equal((r.trainer as { labeledBatch: number }).labeledBatch, 2),
  ],
  [
    "merge of a list of mappings",
    replaced(TRAINER, "trainer: {<<: [{iterations: 2}, {labeledBatch: 2}], unlabeledBatch: 2}"),
    (r) => assert.equal((r.trainer as { iterations: number }).iterations, 2),
  ],
  [
    "merge of a scalar",
    replaced(TRAINER, "trainer: {<<: 5, iterations: 2}"),
    /Merge sources must be maps/,
  ],
  ["merge of null", replaced(TRAINER, "trainer: {<<: null, iterations: 2}"), /Merge sources/],
  ["undefined alias", withLine("x: *nope"), /Unresolved alias/],
  [
    "alias in its own mapping",
    "a: &a {b: *a}\n" + BASE_YAML,
    /a\.b: a YAML alias refers to a mapping or list that contains it/,
  ],
  ["alias in its own list", "a: &a [*a]\n" + BASE_YAML, /a\[0\]: a YAML alias .* \(a cycle/],
  [
    "alias as a key",
    "k: &k method\n" + withLine("*k : y"),
    /a key must be a plain name, got the alias \*k/,
  ],
  // tags
  [
    "!!binary",
    replaced("method: x", "method: !!binary aGVsbG8="),
    /method: a !!binary value is not supported/,
  ],
  [
    "!!set",
    replaced("method: x", "method: !!set {a, b}"),
    /method: a !!set value is not supported/,
  ],
  ["!!set document", "--- !!set\n? a\n", /a !!set value is not supported/],
  [
    "!!omap",
    replaced(MODEL, "model: !!omap [type: unet, base: 4]"),
    /model: an !!omap or !!pairs value/,
  ],
  [
    "!!timestamp",
    withLine("seed: !!timestamp 2001-12-14"),
    /seed: a !!timestamp value is not supported/,
  ],
  [
    "an unquoted date stays a string",
    replaced("method: x", "method: 2001-12-14"),
    (r) => assert.equal(r.method, "2001-12-14"),
  ],
  [
    "custom tag",
    replaced("method: x", "method: !foo bar"),
    /line 1, column 9: unknown YAML tag !foo/,
  ],
  ["custom tag on the document", "!foo\n" + BASE_YAML, /unknown YAML tag !foo/],
  [
    "%TAG directive",
    "%TAG !e! tag:example.com,2000:\n---\n" + replaced("method: x", "method: !e!x y"),
    /unknown YAML tag tag:example\.com,2000:x/,
  ],
  [
    "!!int on text",
    withLine("seed: !!int abc"),
    /line 7, column 7: the tag !!int does not fit its value/,
  ],
  ["!!map on a list", replaced("method: x", "method: !!map [1, 2]"), /the tag !!map does not fit/],
  [
    "!!str on a number",
    replaced("method: x", "method: !!str 5"),
    (r) => assert.equal(r.method, "5"),
  ],
  ["unsupported %YAML", "%YAML 9.9\n---\n" + BASE_YAML, /Unsupported YAML version 9\.9/],
  ["%YAML 1.1", "%YAML 1.1\n---\n" + BASE_YAML, (r) => assert.equal(r.method, "x")],
  // documents
  ["two documents", BASE_YAML + "---\nmethod: y\n", /holds 2 YAML documents/],
  ["an empty document first", "---\n---\n" + BASE_YAML, /holds 2 YAML documents/],
  ["document end marker", BASE_YAML + "...\n", (r) => assert.equal(r.method, "x")],
  ["garbage after the end marker", BASE_YAML + "...\nx: [\n", /YAML documents|line/],
  // keys
  [
    "complex key",
    withLine("? [a]\n: 1"),
    /line 7, column 3: a key must be a plain name, got a list/,
  ],
  ["complex mapping key", withLine("? {a: 1}\n: 1"), /a key must be a plain name, got a mapping/],
  ["complex key in a plugin", replaced(MODEL, "model: {type: unet, [a, b]: 3}"), /got a list/],
  ["duplicate key", withLine("method: y"), /line 7, column 1: Map keys must be unique/],
  [
    "duplicate key in a plugin",
    replaced(MODEL, "model: {type: unet, base: 4, base: 5}"),
    /Map keys must be unique/,
  ],
  ["null key", withLine("~: 2"), /line 7, column 4: a key is empty or null/],
  ["empty explicit key", withLine("? \n: 2"), /a key is empty or null/],
  ["number key", withLine("1: 2"), /unknown key "1" at the top level/],
  [
    "boolean key in a plugin",
    replaced(MODEL, "model: {type: unet, true: 3}"),
    /unknown key "true" in model/,
  ],
  [
    "__proto__ key",
    withLine("__proto__: {method: z}"),
    /__proto__: the key "__proto__" is not allowed/,
  ],
  [
    "__proto__ key in a plugin",
    replaced(MODEL, "model: {type: unet, __proto__: {base: 9}}"),
    /model\.__proto__: the key "__proto__" is not allowed/,
  ],
  [
    "__proto__ as a regularizer name",
    replaced("{type: kl}", "{type: kl, name: __proto__}"),
    /regularizers\[0\]\.name: expected a name of letters/,
  ],
  [
    "a / in a regularizer name",
    replaced("{type: kl}", "{type: kl, name: a/b}"),
    /regularizers\[0\]\.name: expected a name/,
  ],
  ["a very long key", withLine("k".repeat(2000) + ": 1"), /at most 1024 chars/],
  // scalars
  [
    "a very long scalar",
    replaced("method: x", "method: " + "x".repeat(1_000_000)),
    (r) => assert.equal((r.method as string).length, 1_000_000),
  ],
  [
    "explicit null method",
    replaced("method: x", "method: ~"),
    /method: expected a string, got null/,
  ],
  [
    "explicit null plugin entry",
    replaced(MODEL, "model: null"),
    /model: expected a mapping, got null/,
  ],
  [
    "explicit null regularizer",
    replaced("[{type: kl}]", "[null]"),
    /regularizers\[0\]: expected a mapping, got null/,
  ],
  [
    "explicit null list",
    replaced("[{type: kl}]", "null"),
    /regularizers: expected a list, got null/,
  ],
  [
    "explicit null in a plugin",
    replaced("labeled: 1,", "labeled: null,"),
    /dataset\.split\.labeled: expected a number, got null/,
  ],
  [
    "explicit null plugins",
    withLine("plugins: [null]"),
    /plugins\[0\]: expected a string, got null/,
  ],
  [
    "explicit null extends",
    "extends: null\n" + BASE_YAML,
    /extends: expected the path of a base recipe, got null/,
  ],
  ["explicit null document", "~\n", /the file is empty/],
  [
    ".inf",
    replaced("iterations: 2", "iterations: .inf"),
    /trainer\.iterations: expected an integer .*got Infinity/,
  ],
  ["-.inf", withLine("lambda: -.inf"), /lambda: expected a finite number >= 0, got -Infinity/],
  [".nan", withLine("lambda: .nan"), /lambda: expected a finite number >= 0, got NaN/],
  [
    "1e999",
    replaced("base: 4", "base: 1e999"),
    /model\.base: expected a finite number, got Infinity/,
  ],
  [
    ".inf in a plugin's unbounded number",
    withLine("supervised: {type: dice, smooth: .inf}"),
    /supervised\.smooth: expected a finite number, got Infinity/,
  ],
  [
    ".nan in a plugin",
    replaced("labeled: 1,", "labeled: .nan,"),
    /dataset\.split\.labeled: expected a finite number, got NaN/,
  ],
  [
    "0x10",
    replaced("iterations: 2", "iterations: 0x10"),
    (r) => assert.equal((r.trainer as { iterations: number }).iterations, 16),
  ],
  [
    "0o17",
    replaced("base: 4", "base: 0o4"),
    (r) => assert.equal((r.model as { base: number }).base, 4),
  ],
  [
    "a huge integer",
    withLine("seed: 123456789012345678901234567890"),
    /seed: expected an integer >= 0 and <= 4294967295/,
  ],
  ["sexagesimal", withLine("seed: 1:20"), /seed: expected an integer >= 0, got "1:20"/],
  ["huge phantom", replaced("patients: 4", "patients: 1e300"), /patients must be at most 10000/],
];

Deno.test("YAML's own features in recipes: each accepted with its meaning or rejected with the reason", async () => {
  for (const [label, text, expected] of YAML_CASES) {
    const result = await outcome(text, label);
    if (expected instanceof RegExp) {
      assert.ok("message" in result, `${label} was accepted`);
      assert.match(result.message, expected, label);
    } else {
      assert.ok("parsed" in result, `${label}: ${"message" in result ? result.message : ""}`);
      expected(result.parsed);
    }
  }
});

Deno.test("--set values with YAML features end in a clean message", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.yaml`, BASE_YAML);
    const cases: Array<[string, RegExp]> = [
      ["x=&a [*a]", /--set "x=&a \[\*a\]": \[0\]: a YAML alias .* \(a cycle/],
      ["model=!!omap [a: 1]", /an !!omap or !!pairs value is not supported/],
      ["model.base=.inf", /model\.base: expected a finite number, got Infinity/],
      ["model={? [a]: 1}", /a key must be a plain name, got a list/],
      ["method=!foo x", /unknown YAML tag !foo/],
      ["model.__proto__.base=1", /the key "__proto__" is not allowed/],
      ["model={__proto__: {base: 1}}", /the key "__proto__" is not allowed/],
      ["seed=!!binary aGk=", /a !!binary value is not supported/],
    ];
    for (const [spec, pattern] of cases) {
      await assert.rejects(
        () => loadRecipe(`${dir}/r.yaml`, { set: [spec] }),
        (e: unknown) => e instanceof UserError && pattern.test(e.message),
        spec,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task validate and deno task run end a recursive alias or a tag in exit 2, no stack", async () => {
  const dir = await Deno.makeTempDir();
  const root = fileURLToPath(new URL("..", import.meta.url));
  try {
    const files = {
      "cycle.yaml": "a: &a [*a]\n" + BASE_YAML,
      "omap.yaml": replaced(MODEL, "model: !!omap [type: unet]"),
      "key.yaml": withLine("? [a]\n: 1"),
    };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
      for (const task of ["validate", "run"]) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["task", task, `${dir}/${name}`, ...(task === "run" ? ["--out", `${dir}/o`] : [])],
          cwd: root,
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 2, `${task} ${name}: ${stderr}`);
        assert.doesNotMatch(stderr, /\n\s+at /, `${task} ${name}`);
        assert.match(stderr, /Cannot load recipe/, `${task} ${name}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
