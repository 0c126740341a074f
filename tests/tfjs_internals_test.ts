/**
 * The adapter of tfjs internals (`runtime/tfjs_internals.ts`) and the `kernels` switch: custom
 * installs the low-memory gradients and the replaced kernels, builtin puts tfjs's own back (and
 * adds only what wasm lacks for training), both train to the same numbers, and nothing is
 * registered on import.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { loadRecipe } from "../core/recipe.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { initBackend } from "../runtime/backend.ts";
import { batchNormReluAvailable } from "../runtime/kernels/batch_norm_relu.ts";
import {
  checkTfjsVersion,
  customKernels,
  engineGradientsReplaced,
  fallbackWarnings,
  kernelMode,
  TFJS_VERSION,
  warnFallback,
  wasmHeap,
} from "../runtime/tfjs_internals.ts";
import { tinyRecipe } from "./_tiny.ts";

registerBuiltins();

/** Loss and gradients of a small conv + batch-norm-free step, as plain numbers. */
function convStep(): { loss: number; grads: number[][] } {
  return tf.tidy(() => {
    const x = tf.tensor4d(Array.from({ length: 2 * 8 * 8 * 3 }, (_, i) => Math.sin(i)), [
      2,
      8,
      8,
      3,
    ]);
    const w = tf.variable(
      tf.tensor4d(Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.cos(i) / 4), [3, 3, 3, 4]),
    );
    const { value, grads } = tf.variableGrads(() => {
      const y = tf.relu(tf.conv2d(x, w as tf.Tensor4D, 1, "same"));
      const up = tf.image.resizeNearestNeighbor(tf.maxPool(y, 2, 2, "valid"), [8, 8]);
      return tf.mean(tf.square(tf.concat([y, up], 3))) as tf.Scalar;
    }, [w]);
    const out = {
      loss: value.dataSync()[0],
      grads: Object.values(grads).map((g) => Array.from(g.dataSync())),
    };
    w.dispose();
    return out;
  });
}

Deno.test("tfjs is the version the internals adapter was written for", () => {
  assert.equal(tf.version_core, TFJS_VERSION);
  assert.equal(checkTfjsVersion(), true);
});

Deno.test("kernels: builtin restores tfjs's gradients and kernels, custom installs ours, both train alike", async () => {
  await initBackend("wasm", { kernels: "custom" });
  assert.equal(kernelMode(), "custom");
  assert.ok(engineGradientsReplaced());
  const custom = customKernels();
  for (
    const k of ["wasm/Conv2D", "wasm/Identity", "wasm/Cast", "wasm/MiSslAdam", "cpu/MiSslAdam"]
  ) {
    assert.ok(custom.includes(k), `${k} in ${custom}`);
  }
  assert.ok(batchNormReluAvailable());
  const ours = convStep();

  await initBackend("wasm", { kernels: "builtin" });
  assert.equal(kernelMode(), "builtin");
  assert.equal(engineGradientsReplaced(), false);
  // Only what the wasm backend lacks for training stays ours.
  assert.deepEqual(customKernels(), ["wasm/Conv2DBackpropFilter", "wasm/UnsortedSegmentSum"]);
  assert.equal(tf.getKernel("MiSslAdam", "wasm"), undefined);
  assert.equal(batchNormReluAvailable(), false);
  const builtin = convStep();

  assert.ok(Math.abs(ours.loss - builtin.loss) < 1e-5 * Math.abs(builtin.loss));
  for (let i = 0; i < builtin.grads.length; i++) {
    const scale = Math.max(...builtin.grads[i].map(Math.abs));
    builtin.grads[i].forEach((g, j) => {
      assert.ok(Math.abs(g - ours.grads[i][j]) <= 1e-4 * scale, `grad ${i}[${j}]`);
    });
  }

  // And back: the replaced kernels come back, with tfjs's own kept as their fallback.
  await initBackend("wasm", { kernels: "custom" });
  assert.ok(engineGradientsReplaced());
  assert.ok(customKernels().includes("wasm/Conv2D"));
  const again = convStep();
  assert.ok(Math.abs(again.loss - ours.loss) < 1e-6 * Math.abs(ours.loss));
});

Deno.test("a fallback is reported once, with what it costs", () => {
  const original = console.warn;
  const lines: string[] = [];
  console.warn = (line: string) => lines.push(line);
  try {
    assert.equal(wasmHeap({}), null);
    assert.equal(wasmHeap({ wasm: {} }), null);
    warnFallback("test-key", "the test path", "nothing, it is a test");
    warnFallback("test-key", "the test path", "nothing, it is a test");
  } finally {
    console.warn = original;
  }
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /wasm backend's heap.*unavailable.*slower/);
  assert.match(lines[1], /the test path unavailable \(tfjs 4\.22\.0\); nothing, it is a test/);
  assert.ok(fallbackWarnings().includes("wasm-heap"));
});

Deno.test("importing mod.ts registers no kernel and leaves tfjs's gradients alone", async () => {
  const code = `
    import { tf } from "${new URL("../mod.ts", import.meta.url).href}";
    const engine = tf.engine();
    console.log(JSON.stringify({
      adam: ["cpu", "wasm"].map((b) => tf.getKernel("MiSslAdam", b) !== undefined),
      bn: ["cpu", "wasm"].map((b) => tf.getKernel("MiSslBatchNormRelu", b) !== undefined),
      gradients: Object.getOwnPropertySymbols(engine).map(String),
    }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(text), { adam: [false, false], bn: [false, false], gradients: [] });
});

Deno.test("the recipe's kernels switch (and --set kernels=builtin) reaches the backend, and both modes train alike", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/r.yaml`,
      "method: x\ndataset: {type: phantom}\ntrainer: {iterations: 1}\n",
    );
    assert.equal((await loadRecipe(`${dir}/r.yaml`)).recipe.kernels, "custom");
    const set = await loadRecipe(`${dir}/r.yaml`, { set: ["kernels=builtin"] });
    assert.equal(set.recipe.kernels, "builtin");
    await assert.rejects(
      () => loadRecipe(`${dir}/r.yaml`, { set: ["kernels=fast"] }),
      /kernels: expected one of "custom", "builtin"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const losses: Record<string, number[]> = {};
  for (const kernels of ["builtin", "custom"] as const) {
    const trainer = await Trainer.create(tinyRecipe({ kernels }), {
      out: null,
      progress: false,
      log: () => {},
    });
    try {
      assert.equal(kernelMode(), kernels);
      assert.equal(engineGradientsReplaced(), kernels === "custom");
      losses[kernels] = [(await trainer.step()).loss, (await trainer.step()).loss];
    } finally {
      trainer.dispose();
    }
  }
  // The same arithmetic in another order: equal to float32 rounding, step after step.
  for (let i = 0; i < 2; i++) {
    assert.ok(
      Math.abs(losses.builtin[i] - losses.custom[i]) < 1e-3 * Math.abs(losses.custom[i]),
      `step ${i + 1}: builtin ${losses.builtin[i]}, custom ${losses.custom[i]}`,
    );
  }
});
