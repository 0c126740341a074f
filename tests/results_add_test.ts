import assert from "node:assert/strict";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { addResult } from "../app/results_add.ts";
import { RunDir } from "../core/run_dir.ts";

const SCRIPT = fileURLToPath(new URL("../app/results_add.ts", import.meta.url));

const METRICS = `{"iteration":1,"loss":1.25}\n{"iteration":2,"loss":1.0,"val_dice_mean":0.5}\n`;

/** A finished run as the trainer leaves it (summary, recipe, plain metrics, a checkpoint). */
async function finishedRun(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const summary = {
    method: "consistency",
    dataset: "acdc",
    seed: 4,
    dice: { RV: 0.5, Myo: 0.6, LV: 0.7 },
    dice_mean: 0.6,
    per_volume: { p1: { dice: { RV: 0.5, Myo: 0.6, LV: 0.7 }, hd95: {} } },
    ...extra,
  };
  await Deno.writeTextFile(join(dir, "summary.json"), JSON.stringify(summary, null, 2));
  await Deno.writeTextFile(join(dir, "recipe.yaml"), "method: consistency\nseed: 4\n");
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), METRICS);
  await Deno.writeTextFile(join(dir, "latest.ckpt"), "weights");
}

/** What `eval --grid source --write` adds to that summary. */
const SOURCE = {
  dice_source: { RV: 0.49, Myo: 0.6, LV: 0.71 },
  dice_source_mean: 0.6,
  hd95_source: {},
  source_evaluation: { command: "eval", checkpoint: "latest.ckpt" },
};

async function withTemp(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "results-add-" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("results:add copies a finished run into <to>/<method>/seed<N> as results/ keeps it", async () => {
  await withTemp(async (root) => {
    const run = join(root, "runs", "c4");
    await finishedRun(run, SOURCE);
    const to = join(root, "results", "proto");
    const r = await addResult(run, to);
    const dest = join(to, "consistency", "seed4");
    assert.deepEqual(r, { from: run, dest, state: "added", sourceGrid: true });
    const names = [...Deno.readDirSync(dest)].map((e) => e.name).sort();
    assert.deepEqual(names, ["metrics.jsonl.gz", "recipe.yaml", "summary.json"]);
    assert.equal(
      new TextDecoder().decode(gunzipSync(await Deno.readFile(join(dest, "metrics.jsonl.gz")))),
      METRICS,
    );
    assert.equal(await new RunDir(dest).readMetrics(), METRICS);
    assert.equal(
      await Deno.readTextFile(join(dest, "summary.json")),
      await Deno.readTextFile(join(run, "summary.json")),
    );
    // the same bytes every time: no name or time in the gzip header
    const gz = await Deno.readFile(join(dest, "metrics.jsonl.gz"));
    assert.equal(gz[3] & 0x08, 0, "no file name in the header");
    assert.deepEqual([...gz.subarray(4, 8)], [0, 0, 0, 0], "no modification time");
    // adding it again changes nothing
    assert.equal((await addResult(run, to)).state, "unchanged");
    assert.deepEqual(await Deno.readFile(join(dest, "metrics.jsonl.gz")), gz);
  });
});

Deno.test("results:add never replaces another result, but a summary may gain its source-grid scores", async () => {
  await withTemp(async (root) => {
    const to = join(root, "results");
    const dest = join(to, "consistency", "seed4");
    // a result added before its source-grid scores
    const run = join(root, "runs", "a");
    await finishedRun(run);
    assert.equal((await addResult(run, to)).sourceGrid, false);
    // the same run after eval --grid source --write (also per volume): only the summary changes
    const scored = join(root, "runs", "scored");
    await finishedRun(scored, {
      ...SOURCE,
      per_volume: {
        p1: { dice: { RV: 0.5, Myo: 0.6, LV: 0.7 }, hd95: {}, dice_source: { RV: 0.49 } },
      },
    });
    // trained again: other times in its metrics, which are not replaced
    await Deno.writeTextFile(join(scored, "metrics.jsonl"), METRICS.replace("1.25", "1.5"));
    const gzBefore = await Deno.readFile(join(dest, "metrics.jsonl.gz"));
    assert.equal((await addResult(scored, to)).state, "source-grid added");
    assert.equal(
      await Deno.readTextFile(join(dest, "summary.json")),
      await Deno.readTextFile(join(scored, "summary.json")),
    );
    assert.deepEqual(await Deno.readFile(join(dest, "metrics.jsonl.gz")), gzBefore);
    // once it has them, a different summary is refused, and so is another Dice before them
    const other = join(root, "runs", "other");
    await finishedRun(other, { ...SOURCE, dice_mean: 0.61 });
    await assert.rejects(
      addResult(other, to),
      /already holds another result \(summary\.json differs\); results are never replaced/,
    );
    const to2 = join(root, "results2");
    await addResult(run, to2);
    await assert.rejects(addResult(other, to2), /already holds another result/);
    // another recipe is refused even with the same Dice
    const recipe = join(root, "runs", "recipe");
    await finishedRun(recipe, SOURCE);
    await Deno.writeTextFile(join(recipe, "recipe.yaml"), "method: consistency\nseed: 5\n");
    await assert.rejects(addResult(recipe, to2), /recipe\.yaml.*differ/);
    assert.equal(
      JSON.parse(await Deno.readTextFile(join(to2, "consistency", "seed4", "summary.json")))
        .dice_source_mean,
      undefined,
    );
  });
});

Deno.test("results:add CLI: unfinished runs and a missing --to are errors (exit 2), a run without source-grid scores a note", async () => {
  await withTemp(async (root) => {
    const cli = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-write", SCRIPT, ...args],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    await Deno.mkdir(join(root, "unfinished"));
    await Deno.writeTextFile(join(root, "unfinished", "recipe.yaml"), "method: x\n");
    let out = await cli(["unfinished", "--to", "results/p"]);
    assert.equal(out.code, 2);
    assert.match(text(out.stderr), /unfinished is not a finished run/);
    await finishedRun(join(root, "done"));
    out = await cli(["done"]);
    assert.equal(out.code, 2);
    assert.match(text(out.stderr), /needs --to/);
    out = await cli(["done/", "--to=results/p"]);
    assert.equal(out.code, 0, text(out.stderr));
    assert.match(text(out.stdout), /results\/p\/consistency\/seed4: added/);
    assert.match(text(out.stderr), /note: done has no source-grid Dice.*eval done --grid source/);
    out = await cli(["done", "--to", "results/p"]);
    assert.match(text(out.stdout), /already there, unchanged/);
  });
});
