import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tf } from "../deps.ts";
import { loadCheckpoint } from "../core/checkpoint.ts";
import { UserError } from "../core/errors.ts";
import { loadRecipe, validatePluginOptions } from "../core/recipe.ts";
import { regularizers } from "../core/regularizer.ts";
import { NonFiniteLossError, Trainer } from "../core/trainer.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { tinyRecipe } from "./_tiny.ts";
import { z } from "../deps.ts";

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

// A regularizer that returns NaN at one iteration, to test the bad-number paths.
registerBuiltins();
if (!regularizers.has("test-nan-at")) {
  regularizers.register({
    id: "test-nan-at",
    description: "test only: NaN at iteration `at`",
    options: z.object({ at: z.number().int() }).strict(),
    create: (o: { at: number }) => ({
      id: "test-nan-at",
      needsUnlabeled: true,
      loss: (ctx) =>
        tf.tidy(() =>
          ctx.iteration === o.at
            ? tf.mul(tf.mean(ctx.probsUnlabeled), NaN) as tf.Scalar
            : tf.mul(tf.mean(ctx.probsUnlabeled), 0) as tf.Scalar
        ),
    }),
  });
}

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

async function expectCleanOutcome(text: string, label: string): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.yaml`, text);
    try {
      const loaded = await loadRecipe(`${dir}/r.yaml`);
      validatePluginOptions(loaded.recipe, loaded.file);
    } catch (e) {
      assert.ok(e instanceof UserError, `${label}: ${(e as Error)?.stack ?? e}`);
      assert.ok(!/\n\s+at /.test((e as Error).message), `${label}: stack in message`);
      assert.match((e as Error).message, /r\.yaml/, label);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("hundreds of malformed recipes end in a clean message (deleted keys, swapped types, huge and negative numbers)", async () => {
  let n = 0;
  for (const path of paths(GOOD)) {
    await expectCleanOutcome(
      JSON.stringify(mutate(path, undefined, true)),
      `delete ${path.join(".")}`,
    );
    n++;
    for (const junk of JUNK) {
      await expectCleanOutcome(
        JSON.stringify(mutate(path, junk)),
        `${path.join(".")} = ${JSON.stringify(junk)}`,
      );
      n++;
    }
  }
  assert.ok(n > 300, `${n} recipes`);
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
  for (const [label, text] of cases) await expectCleanOutcome(text, label);
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
