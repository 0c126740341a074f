/**
 * Subprocess of `threads_test.ts`: a real-shaped threaded Ours (KL) workload. On the real ACDC
 * data (`ACDC_ROOT`, else `../shared/data/acdc`) it is `recipes/acdc-cpu/ours-kl.yaml` (128 px,
 * U-Net width 8, labeled batch 4, unlabeled batch 4); without it, the phantom at 128 px with the
 * same batches and network. Runs `steps` training steps with `threads: 2` and prints one line per
 * step, so that a hang shows as silence to the parent; then ends the threads with
 * `shutdownBackend` and, without `Deno.exit`, must exit by itself.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-sys tests/_threads_workload.ts 12
 * ```
 *
 * @module
 */
import { loadRecipe } from "../core/recipe.ts";
import { Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { workerCount } from "../runtime/kernels/wasm_pool.ts";
import { initBackend, shutdownBackend } from "../runtime/backend.ts";

const steps = Number(Deno.args[0] ?? 12);
const root = new URL("../", import.meta.url).pathname;
const acdc = Deno.env.get("ACDC_ROOT") ?? `${root}../shared/data/acdc`;
let real = false;
try {
  real = Deno.statSync(acdc).isDirectory;
} catch {
  real = false;
}
registerBuiltins();
const common = [
  "backend=wasm",
  "threads=2",
  "trainer.labeledBatch=4",
  "trainer.unlabeledBatch=4",
  "seed=2",
];
const loaded = real
  ? await loadRecipe(`${root}recipes/acdc-cpu/ours-kl.yaml`, {
    set: [...common, `dataset.root=${acdc}`],
  })
  : await loadRecipe(`${root}recipes/ours-kl.yaml`, {
    set: [...common, "dataset.size=128", "model.base=8"],
  });
const trainer = await Trainer.create(loaded.recipe, {
  baseDir: root,
  out: null,
  progress: false,
  log: () => {},
});
console.log(`workload ${real ? `acdc ${acdc}` : "phantom"} helpers ${workerCount()}`);
for (let i = 1; i <= steps; i++) {
  const t = performance.now();
  await trainer.step();
  console.log(`step ${i} ${(performance.now() - t).toFixed(0)} ms helpers ${workerCount()}`);
}
trainer.dispose();
console.log("done");
// No Deno.exit: with threads the helper workers would keep the process alive, and
// shutdownBackend must end them (the parent fails on a process that does not exit).
console.log(`ended ${shutdownBackend()}`);
try {
  await initBackend("wasm", { threads: 2 });
  console.log("initBackend after shutdownBackend: no error");
} catch (error) {
  console.log(`initBackend after shutdownBackend: ${(error as Error).message}`);
}
