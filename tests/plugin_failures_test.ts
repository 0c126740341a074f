/**
 * Plugin failures end in one line naming the plugin, its recipe entry and what was expected,
 * exit code 2, and leave no half run folder behind: a regularizer whose loss is not a scalar,
 * throws, or is not finite on the first step; a model whose logits have the wrong shape; a
 * dataset whose arrays have the wrong length, or whose load throws.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { UserError } from "../core/errors.ts";
import { PluginError, pluginFailure } from "../core/plugin_errors.ts";

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
const MOD = new URL("../mod.ts", import.meta.url).href;

/** A plugin module with one broken plugin of each kind. */
const BROKEN = `
import { datasets, models, regularizers, tf, z } from "${MOD}";
const none = z.object({}).strict();
const reg = (id, loss) => regularizers.register({
  id, description: "test only", options: none,
  create: () => ({ id, needsUnlabeled: true, loss }),
});
reg("rank-four", (ctx) => tf.mul(ctx.probsUnlabeled, 1));
reg("throws", () => { throw new TypeError("cannot read properties of undefined"); });
reg("nan-first", (ctx) => tf.mul(tf.mean(ctx.probsUnlabeled), NaN));
models.register({
  id: "two-channels", description: "test only", options: none,
  create: (_o, context) => {
    const w = tf.variable(tf.ones([1]), true, (context.scope ?? "") + "student/w");
    return {
      trainable: new Map([["student/w", w]]), state: new Map(), paramCount: 1,
      apply: (x) => tf.mul(tf.concat([x, x], 3), w),
      dispose: () => w.dispose(),
    };
  },
});
const slices = (count, n) => ({
  count, height: 32, width: 32, images: new Float32Array(n), labels: new Uint8Array(n),
  patients: ["p"],
});
datasets.register({
  id: "short-images", description: "test only", options: none,
  load: async () => ({
    id: "short-images", classNames: ["background", "fg"], splits: {},
    labeled: slices(2, 100), unlabeled: slices(2, 2 * 32 * 32),
    validation: [{ id: "v", patient: "p", shape: [1, 32, 32], image: new Float32Array(1024),
      label: new Uint8Array(1024) }],
  }),
});
datasets.register({
  id: "load-throws", description: "test only", options: none,
  load: async () => { throw new RangeError("offset is out of bounds"); },
});
`;

const TINY = {
  dataset: "{ type: phantom, patients: 4, slicesPerPatient: 2, size: 32, " +
    "split: { labeled: 1, unlabeled: 1, validation: 2 } }",
  model: "{ type: unet, base: 4, depth: 3 }",
  regularizers: "[{ type: kl }]",
};

/** Run a tiny recipe with the broken plugins and `fields` replacing the tiny ones. */
async function runBroken(
  dir: string,
  fields: Partial<typeof TINY>,
): Promise<{ code: number; stderr: string; out: string }> {
  await Deno.writeTextFile(`${dir}/broken.js`, BROKEN);
  const f = { ...TINY, ...fields };
  await Deno.writeTextFile(
    `${dir}/r.yaml`,
    `method: broken\nseed: 1\nbackend: wasm\nplugins: [${dir}/broken.js]\n` +
      `dataset: ${f.dataset}\nmodel: ${f.model}\nregularizers: ${f.regularizers}\n` +
      `trainer: { iterations: 3, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 }\n`,
  );
  const out = `${dir}/run`;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", CLI, "run"]
      .concat([`${dir}/r.yaml`, "--out", out, "--quiet"]),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: res.code, stderr: new TextDecoder().decode(res.stderr), out };
}

/** The run failed with exit 2 and one error line matching `pattern`, no stack, no folder. */
async function assertPluginFailure(
  result: { code: number; stderr: string; out: string },
  pattern: RegExp,
): Promise<void> {
  const { code, stderr, out } = result;
  assert.equal(code, 2, stderr);
  const errors = stderr.split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(errors.length, 1, stderr);
  assert.match(errors[0], pattern);
  assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no half run folder");
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a regularizer whose loss is not a scalar is named with its recipe entry, exit 2, no run folder", () =>
  inTempDir(async (dir) => {
    const result = await runBroken(dir, { regularizers: "[{ type: kl }, { type: rank-four }]" });
    await assertPluginFailure(
      result,
      /Regularizer plugin "rank-four" \(recipe entry regularizers\[1\]\): loss\(\) returned a tensor of shape \[2, 32, 32, 4\]; expected a scalar/,
    );
    // --resume on it says why there is nothing to resume
    const resumed = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", CLI, "run"]
        .concat(["--resume", result.out]),
      stderr: "piped",
      stdout: "piped",
    }).output();
    assert.equal(resumed.code, 2);
    assert.match(
      new TextDecoder().decode(resumed.stderr),
      /Cannot resume .*no such folder \(a run that fails before its first checkpoint is removed/,
    );
  }));

Deno.test("a regularizer that throws is named with its recipe entry and the first line of its error", () =>
  inTempDir(async (dir) => {
    await assertPluginFailure(
      await runBroken(dir, { regularizers: "[{ type: throws }]" }),
      /Regularizer plugin "throws" \(recipe entry regularizers\[0\]\): loss\(\) threw TypeError: cannot read properties of undefined; expected a scalar loss/,
    );
  }));

Deno.test("a loss that is not finite on the first step names its plugin (the run's nonFinite policy aside)", () =>
  inTempDir(async (dir) => {
    await assertPluginFailure(
      await runBroken(dir, { regularizers: "[{ type: kl }, { type: nan-first }]" }),
      /Regularizer plugin "nan-first" \(recipe entry regularizers\[1\]\): loss\(\) gave NaN on the first step .*expected a finite scalar/,
    );
  }));

Deno.test("a model whose logits have the wrong shape is named with what was expected", () =>
  inTempDir(async (dir) => {
    await assertPluginFailure(
      await runBroken(dir, { model: "{ type: two-channels }" }),
      /Model plugin "two-channels" \(recipe entry model\): apply\(\) returned logits of shape \[6, 32, 32, 2\]; expected \[6, 32, 32, 4\]/,
    );
  }));

Deno.test("a dataset whose arrays have the wrong length, or whose load throws, is named", () =>
  inTempDir(async (dir) => {
    await assertPluginFailure(
      await runBroken(dir, { dataset: "{ type: short-images }" }),
      /Dataset plugin "short-images" \(recipe entry dataset\): load\(\) returned a dataset whose labeled\.images holds 100 values; expected count x height x width = 2 x 32 x 32 = 2048/,
    );
    await assertPluginFailure(
      await runBroken(dir, { dataset: "{ type: load-throws }" }),
      /Dataset plugin "load-throws" \(recipe entry dataset\): load\(\) threw RangeError: offset is out of bounds; expected a dataset/,
    );
  }));

Deno.test("pluginFailure() names the plugin, but leaves user errors and refused permissions as they are", () => {
  const plugin = { kind: "dataset" as const, id: "mine", entry: "dataset" };
  const call = { method: "load()", expected: "a dataset" };
  const wrapped = pluginFailure(plugin, call, new Error("first line\nsecond line"));
  assert.ok(wrapped instanceof PluginError && wrapped instanceof UserError);
  assert.equal(
    wrapped.message,
    'Dataset plugin "mine" (recipe entry dataset): load() threw Error: first line; expected a dataset',
  );
  const own = new UserError("Cannot read folder x");
  assert.equal(pluginFailure(plugin, call, own), own);
  const refused = new Deno.errors.NotCapable("Requires read access to /data");
  assert.equal(pluginFailure(plugin, call, refused), refused);
});
