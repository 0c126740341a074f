// No probe noise: Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" on
// every WebGPU adapter request where that variable is unset (the adapter is found either way).
// Where no Vulkan driver is installed these pass trivially.
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, withDir } from "./_helpers.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;
const NOISE = /XDG_RUNTIME_DIR/;

const TINY = `method: tiny
backend: auto
dataset: { type: phantom, patients: 4, slicesPerPatient: 2, size: 32, split: { labeled: 1, unlabeled: 1, validation: 2 } }
model: { type: unet, base: 2, depth: 2 }
regularizers: [{ type: kl }]
trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 }
`;

Deno.test("library use (mod.ts, backend auto) prints no XDG_RUNTIME_DIR error where it is unset", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, "main.ts"),
      `import { parseRecipe, Trainer } from "${MOD}";
const recipe = parseRecipe({
  method: "x",
  dataset: { type: "phantom", patients: 4, slicesPerPatient: 2, size: 32,
             split: { labeled: 1, unlabeled: 1, validation: 2 } },
  model: { type: "unet", base: 2, depth: 2 },
  trainer: { iterations: 1, labeledBatch: 1, unlabeledBatch: 1 },
}, "<inline>");
const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
console.log(JSON.stringify(await trainer.step()));
trainer.dispose();
`,
    );
    const env = Deno.env.toObject();
    delete env.XDG_RUNTIME_DIR;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read", "--allow-env", "--allow-sys", "main.ts"],
      cwd: dir,
      clearEnv: true,
      env: { ...env, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.doesNotMatch(stderr, NOISE);
  });
});

Deno.test("run and plot (backend auto) print no XDG_RUNTIME_DIR error where it is unset", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "r.yaml"), TINY);
    const quiet = { unset: ["XDG_RUNTIME_DIR"] };
    const run = await cli(
      ["run", join(dir, "r.yaml"), "--out", join(dir, "run"), "--quiet"],
      quiet,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, NOISE);
    const plot = await cli(["plot", join(dir, "run"), "--out", join(dir, "plots")], quiet);
    assert.equal(plot.code, 0, plot.stderr);
    assert.match(plot.stdout, /overlays\.svg/);
    assert.doesNotMatch(plot.stderr, NOISE);
  });
});

Deno.test("the cpu backend does not print tfjs's 'running TensorFlow.js in Node.js' banner", async () => {
  await withDir(async (dir) => {
    const backend = new URL("../runtime/backend.ts", import.meta.url).href;
    await Deno.writeTextFile(
      join(dir, "main.ts"),
      `import { initBackend } from "${backend}";
import { tf } from "${new URL("../deps.ts", import.meta.url).href}";
await initBackend("cpu");
console.log(tf.getBackend(), tf.tensor([1, 2]).sum().dataSync()[0]);
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read", "--allow-env", "--allow-sys", "main.ts"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "cpu 3");
    assert.doesNotMatch(stderr, /running TensorFlow\.js in\s+Node\.js/);
  });
});
