import assert from "node:assert/strict";

const MOD = new URL("../mod.ts", import.meta.url).href;

Deno.test("mod.ts imported by file:// URL from a directory without deno.json trains one step", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { parseRecipe, Trainer } from "${MOD}";
const recipe = parseRecipe({
  method: "ours-kl",
  backend: "wasm",
  dataset: { type: "phantom", patients: 4, slicesPerPatient: 2, size: 32,
             split: { labeled: 1, unlabeled: 1, validation: 2 } },
  model: { type: "unet", base: 4, depth: 3 },
  regularizers: [{ type: "mi" }, { type: "kl" }],
  trainer: { iterations: 1, labeledBatch: 2, unlabeledBatch: 2 },
}, "<inline>");
const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
const values = await trainer.step();
trainer.dispose();
console.log(JSON.stringify(values));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read", "--allow-env", "--allow-sys", "main.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const values = JSON.parse(stdout.trim().split("\n").at(-1)!);
    for (const k of ["loss", "sup", "mi", "kl"]) assert.ok(Number.isFinite(values[k]), k);
    // no deno.json was created or needed
    await assert.rejects(() => Deno.stat(`${dir}/deno.json`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
