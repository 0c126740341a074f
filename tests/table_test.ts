import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { buildTable, expandGlob, formatTable, loadRuns, type ResultTable } from "../app/table.ts";
import { assertClose } from "./_helpers.ts";

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** `table <args>` through the CLI, run in `cwd` (default the repository root). */
function tableCli(args: string[], cwd = ROOT): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", CLI, "table", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

type Dice = Record<string, number>;

/** Write a fabricated `summary.json` (per_volume: volume id -> per-class Dice). */
async function fakeRun(
  dir: string,
  method: string,
  seed: number,
  dice: Dice,
  perVolume: Record<string, Dice>,
  dataset = "acdc",
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const values = Object.values(dice);
  const summary = {
    method,
    dataset,
    seed,
    iterations: 10,
    seconds_wall: 60 * seed + 6, // seed 1: 1.1 min, seed 2: 2.1 min
    backend: "wasm",
    params: 1,
    dice,
    dice_mean: values.reduce((a, b) => a + b, 0) / values.length,
    per_volume: Object.fromEntries(
      Object.entries(perVolume).map(([k, d]) => [k, { dice: d, hd95: {} }]),
    ),
    best: { iteration: 100 * seed, dice_mean: 0.5 + seed / 10 }, // seed 2: 70 % at 200
    evaluated: "student",
  };
  await Deno.writeTextFile(`${dir}/summary.json`, JSON.stringify(summary));
}

const c = (rv: number, myo: number, lv: number): Dice => ({ RV: rv, Myo: myo, LV: lv });

/**
 * Two seeds of ours-kl and partial, one of mean-teacher, two validation volumes each.
 * Mean foreground Dice per volume (percent):
 *   ours-kl      s1: v1 80, v2 70    s2: v1 90, v2 75
 *   partial      s1: v1 70, v2 65    s2: v1 85, v2 60   -> differences 10, 5, 5, 15
 *   mean-teacher s1: v1 70, v2 50                      -> differences 10, 20
 */
async function fabricate(root: string): Promise<void> {
  await fakeRun(`${root}/ours/seed1`, "ours-kl", 1, c(0.80, 0.70, 0.90), {
    v1: c(0.7, 0.8, 0.9),
    v2: c(0.5, 0.7, 0.9),
  });
  await fakeRun(`${root}/ours/seed2`, "ours-kl", 2, c(0.84, 0.74, 0.92), {
    v1: c(0.8, 0.9, 1.0),
    v2: c(0.75, 0.75, 0.75),
  });
  await fakeRun(`${root}/partial/seed1`, "partial", 1, c(0.70, 0.60, 0.80), {
    v1: c(0.6, 0.7, 0.8),
    v2: c(0.65, 0.65, 0.65),
  });
  await fakeRun(`${root}/partial/seed2`, "partial", 2, c(0.74, 0.66, 0.86), {
    v1: c(0.85, 0.85, 0.85),
    v2: c(0.5, 0.6, 0.7),
  });
  await fakeRun(`${root}/mt/seed1`, "mean-teacher", 1, c(0.78, 0.68, 0.88), {
    v1: c(0.7, 0.7, 0.7),
    v2: c(0.5, 0.5, 0.5),
  });
  // an unfinished run: left out with a note
  await Deno.mkdir(`${root}/mt/seed2`, { recursive: true });
  await Deno.writeTextFile(`${root}/mt/seed2/recipe.yaml`, "method: mean-teacher\n");
}

async function withRuns(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  try {
    await fabricate(root);
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("table: mean (std) over seeds and paired t-tests match a hand computation", async () => {
  await withRuns(async (root) => {
    const notes: string[] = [];
    const runs = await loadRuns([root], (l) => notes.push(l));
    assert.equal(runs.length, 5);
    assert.match(notes.join("\n"), /mt\/seed2 has no summary\.json/);
    const table = buildTable(runs);
    assert.equal(table.baseline, "ours-kl");
    assert.deepEqual(table.rows.map((r) => r.method), ["partial", "mean-teacher", "ours-kl"]);
    const [partial, mt, ours] = table.rows.map((r) => r.datasets.acdc);
    // by hand: RV of ours-kl = 80, 84 -> mean 82, sample std sqrt((4 + 4) / 1) = 2.828
    assertClose(ours.dice.RV.mean, 82, 1e-12);
    assertClose(ours.dice.RV.std, Math.sqrt(8), 1e-12);
    assertClose(ours.dice.LV.std, Math.sqrt(2), 1e-12);
    // mean of ours-kl: 80 and 83.333 -> 81.667, std 3.333 / sqrt(2)
    assertClose(ours.dice_mean.mean, (80 + 250 / 3) / 2, 1e-12);
    assertClose(ours.dice_mean.std, (250 / 3 - 80) / Math.SQRT2, 1e-12);
    assertClose(partial.dice.Myo.std, Math.sqrt(18), 1e-12);
    assert.ok(Number.isNaN(mt.dice.RV.std), "one seed: no std");
    // differences 10, 5, 5, 15: mean 8.75, sd sqrt(68.75 / 3), t = 8.75 / (sd / sqrt(4))
    assert.equal(partial.test!.n, 4);
    assertClose(partial.test!.mean_diff, 8.75, 1e-9);
    assertClose(partial.test!.t, 8.75 / (Math.sqrt(68.75 / 3) / 2), 1e-9);
    assertClose(partial.test!.p, 0.017676423501258684, 1e-7); // scipy.stats.ttest_rel, greater
    // mean-teacher has seed 1 only: pairs (v1, 1) and (v2, 1), differences 10 and 20
    assert.equal(mt.test!.n, 2);
    assertClose(mt.test!.t, 3, 1e-9);
    assertClose(mt.test!.p, 0.5 - Math.atan(3) / Math.PI, 1e-9); // t with 1 df is Cauchy
    assert.equal(ours.test, null);
    // the seed as the unit: dice_mean of ours-kl 80, 83.333 and of partial 70, 75.333 ->
    // differences 10 and 8: mean 9, sd sqrt(2), t = 9 / (sqrt(2) / sqrt(2)) = 9 with 1 df (Cauchy)
    assert.equal(partial.seedTest!.n, 2);
    assertClose(partial.seedTest!.mean_diff, 9, 1e-9);
    assertClose(partial.seedTest!.t, 9, 1e-9);
    assertClose(partial.seedTest!.p, 0.5 - Math.atan(9) / Math.PI, 1e-9);
    assert.equal(mt.seedTest, null, "one shared seed: no seed-level test");
    assert.equal(ours.seedTest, null);

    const md = formatTable(table, "md");
    const lines = md.split("\n");
    assert.match(
      lines[0],
      /\| method +\| seeds \| +RV \| +Myo \| +LV \| +mean \| p \(ours-kl >\) \| p seeds \| min \|/,
    );
    const row = (m: string) =>
      lines.find((l) => l.startsWith(`| ${m} `))!.split("|").slice(1, -1).map((s) => s.trim());
    assert.deepEqual(row("ours-kl"), [
      "ours-kl",
      "2",
      "82.00 (2.83)",
      "72.00 (2.83)",
      "91.00 (1.41)",
      "81.67 (2.36)",
      "-",
      "-",
      "1.6",
    ]);
    assert.deepEqual(row("partial"), [
      "partial",
      "2",
      "72.00 (2.83)",
      "63.00 (4.24)",
      "83.00 (4.24)",
      "72.67 (3.77)",
      "0.0177",
      "0.0352",
      "1.6",
    ]);
    assert.deepEqual(row("mean-teacher"), [
      "mean-teacher",
      "1",
      "78.00",
      "68.00",
      "88.00",
      "78.00",
      "0.1024",
      "n/a",
      "1.1",
    ]);
    assert.match(md, /one-sided paired t-test of ours-kl > method/);
    assert.match(md, /min: mean wall time of a run in minutes \(summary\.json seconds_wall\)\.$/m);
    assertClose(ours.seconds.mean, 96, 1e-12);

    const csv = formatTable(table, "csv").trim().split("\n");
    assert.equal(csv[0], "method,seeds,RV,Myo,LV,mean,p (ours-kl >),p seeds,min");
    assert.equal(
      csv[1],
      "partial,2,72.00 (2.83),63.00 (4.24),83.00 (4.24),72.67 (3.77),0.0177,0.0352,1.6",
    );

    const json = JSON.parse(formatTable(table, "json")) as ResultTable;
    assert.equal(json.rows[1].datasets.acdc.dice.RV.std, null); // NaN -> null
    assert.deepEqual(json.rows[0].datasets.acdc.seeds, [1, 2]);
  });
});

Deno.test("table: another baseline, several datasets, globs", async () => {
  await withRuns(async (root) => {
    await fakeRun(`${root}/spleen-ours/seed1`, "ours-kl", 1, { spleen: 0.9 }, {
      s1: { spleen: 0.9 },
    }, "spleen");
    const paths = await expandGlob(`${root}/*/seed1`);
    assert.equal(paths.length, 4);
    const runs = await loadRuns(paths, () => {});
    const table = buildTable(runs, { baseline: "partial" });
    assert.deepEqual(table.datasets.map((d) => d.id), ["acdc", "spleen"]);
    const md = formatTable(table, "md").split("\n")[0];
    // one foreground class: the mean column only
    assert.match(md, /acdc RV \|.*acdc mean \| acdc p \(partial >\) \|.*spleen mean \|/);
    assert.doesNotMatch(md, /spleen spleen/);
    const ours = table.rows.find((r) => r.method === "ours-kl")!;
    // seed 1 only: differences 10 and 5 -> partial is lower, so H1 (partial > ours) has p > 0.5
    assert.ok(ours.datasets.acdc.test!.p > 0.5);
    assert.equal(ours.datasets.spleen.test, null); // no partial run on spleen
    assert.throws(() => buildTable(runs, { baseline: "x" }), /baseline method "x"/);
  });
});

Deno.test("table CLI: csv from a glob; an unknown baseline exits 2", async () => {
  await withRuns(async (root) => {
    const run = (args: string[]) => tableCli(args);
    let out = await run([`${root}/*/seed*`, "--format", "csv"]);
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(
      stdout,
      /^method,seeds,RV,Myo,LV,mean,p \(ours-kl >\),p seeds,min\npartial,2,72\.00 \(2\.83\)/,
    );
    out = await run([root, "--baseline", "nope"]);
    assert.equal(out.code, 2);
    assert.match(new TextDecoder().decode(out.stderr), /baseline method "nope".*ours-kl/);
  });
});

Deno.test("table: summaries without seconds_wall show their training seconds, starred", async () => {
  await withRuns(async (root) => {
    const file = `${root}/mt/seed1/summary.json`;
    const s = JSON.parse(await Deno.readTextFile(file));
    delete s.seconds_wall;
    s.seconds = 30;
    await Deno.writeTextFile(file, JSON.stringify(s));
    const md = formatTable(buildTable(await loadRuns([root], () => {})), "md");
    assert.match(md, /^\| mean-teacher .*\| 0\.5† \|$/m);
    assert.match(md, /^\| partial .*\| +1\.6 \|$/m);
    assert.match(md, /†: some seeds' summaries predate seconds_wall/);
  });
});

Deno.test("table --per-seed: one row per run with its lowest class and its best validation", async () => {
  await withRuns(async (root) => {
    const table = buildTable(await loadRuns([root], () => {}));
    const md = formatTable(table, "md", { perSeed: true });
    const lines = md.split("\n");
    assert.match(
      lines[0],
      /\| method +\| seed \| +RV \| +Myo \| +LV \| +mean \| +lowest \| best \(iteration\) \| +min \|/,
    );
    const row = (m: string, seed: number) =>
      lines.find((l) => new RegExp(`^\\| ${m} +\\| +${seed} \\|`).test(l))!.split("|").slice(1, -1)
        .map((s) => s.trim());
    // ours-kl seed 2: c(0.84, 0.74, 0.92), mean 83.33, wall 126 s
    assert.deepEqual(row("ours-kl", 2), [
      "ours-kl",
      "2",
      "84.00",
      "74.00",
      "92.00",
      "83.33",
      "Myo 74.00",
      "70.00 (200)",
      "2.1",
    ]);
    assert.deepEqual(row("mean-teacher", 1)[6], "Myo 68.00");
    assert.equal(lines.filter((l) => /^\| (partial|ours-kl|mean-teacher) /.test(l)).length, 5);
    const csv = formatTable(table, "csv", { perSeed: true }).trim().split("\n");
    assert.equal(csv[0], "method,seed,RV,Myo,LV,mean,lowest,best (iteration),min");
    assert.equal(csv[1], "partial,1,70.00,60.00,80.00,70.00,Myo 60.00,60.00 (100),1.1");
    assert.match(md, /best: the run's highest validation mean Dice during training/);
  });
});

Deno.test("table --power: the seeds the seed-level test needs, from the measured spread", async () => {
  await withRuns(async (root) => {
    const table = buildTable(await loadRuns([root], () => {}));
    // partial against ours-kl: seed differences 10 and 8, sd sqrt(2)
    assertClose(table.rows[0].datasets.acdc.seedTest!.sd, Math.SQRT2, 1e-12);
    const csv = formatTable(table, "csv", { power: 2.4 }).trim().split("\n");
    assert.equal(csv[0], "method,seeds,RV,Myo,LV,mean,p (ours-kl >),p seeds,seeds for 2.4,min");
    // scipy: the smallest n with nct.sf(t.isf(0.05, n - 1), n - 1, 2.4 / sqrt(2) * sqrt(n)) >= 0.8
    assert.equal(csv[1].split(",").at(-2), "4");
    assert.equal(csv[2].split(",").at(-2), "n/a"); // mean-teacher: one shared seed
    assert.equal(csv[3].split(",").at(-2), "-"); // the baseline
    const md = formatTable(table, "md", { power: 5 });
    assert.match(md, /\| partial .*\| +3 \| +1\.6 \|/);
    assert.match(md, /seeds for 5: the seeds the seed-level test needs/);
  });
});

Deno.test("table CLI: --power needs a positive number and a baseline", async () => {
  await withRuns(async (root) => {
    const bad = await tableCli([root, "--power", "-1"]);
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /--power takes a positive number/);
    const ok = await tableCli([root, "--power", "2.4"]);
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(new TextDecoder().decode(ok.stdout), /seeds for 2\.4/);
  });
});

/** Add source-grid Dice to a fabricated run: `dice` and each volume's Dice times `scale`. */
async function addSource(dir: string, dice: Dice, scale: number): Promise<void> {
  const file = `${dir}/summary.json`;
  const s = JSON.parse(await Deno.readTextFile(file));
  const values = Object.values(dice);
  s.dice_source = dice;
  s.dice_source_mean = values.reduce((a, b) => a + b, 0) / values.length;
  for (const v of Object.values(s.per_volume) as { dice: Dice; dice_source?: Dice }[]) {
    v.dice_source = Object.fromEntries(Object.entries(v.dice).map(([k, x]) => [k, x * scale]));
  }
  await Deno.writeTextFile(file, JSON.stringify(s));
}

Deno.test("table --grid source: the source-grid Dice of the runs that have them, the others left out and named", async () => {
  await withRuns(async (root) => {
    await addSource(`${root}/ours/seed1`, c(0.4, 0.3, 0.5), 0.5);
    await addSource(`${root}/ours/seed2`, c(0.44, 0.34, 0.52), 0.5);
    await addSource(`${root}/partial/seed1`, c(0.3, 0.2, 0.4), 0.4);
    const runs = await loadRuns([root], () => {});
    // the network grid as before: dice, never dice_source
    const network = buildTable(runs);
    assert.equal(network.grid, "network");
    assertClose(network.rows[2].datasets.acdc.dice.RV.mean, 82, 1e-12);
    assert.doesNotMatch(formatTable(network, "md"), /own grid|Left out/);

    const notes: string[] = [];
    const table = buildTable(runs, { grid: "source", log: (l) => notes.push(l) });
    assert.equal(table.grid, "source");
    assert.deepEqual(table.left_out.sort(), [`${root}/mt/seed1`, `${root}/partial/seed2`]);
    assert.equal(notes.filter((n) => /no source-grid Dice, left out/.test(n)).length, 2);
    assert.deepEqual(table.rows.map((r) => r.method), ["partial", "ours-kl"]);
    const [partial, ours] = table.rows.map((r) => r.datasets.acdc);
    assert.deepEqual(ours.seeds, [1, 2]);
    assert.deepEqual(partial.seeds, [1]);
    assertClose(ours.dice.RV.mean, 42, 1e-12);
    assertClose(ours.dice.RV.std, Math.sqrt(8), 1e-12);
    assertClose(partial.dice_mean.mean, 30, 1e-12);
    // per-volume source means, seed 1: ours v1 40, v2 35; partial v1 28, v2 26 -> differences
    // 12 and 9: mean 10.5, sd sqrt(4.5), t = 10.5 / (sqrt(4.5) / sqrt(2)) = 7 with 1 df
    assert.equal(partial.test!.n, 2);
    assertClose(partial.test!.mean_diff, 10.5, 1e-9);
    assertClose(partial.test!.t, 7, 1e-9);
    assertClose(partial.test!.p, 0.5 - Math.atan(7) / Math.PI, 1e-9);
    assert.equal(partial.seedTest, null, "one shared seed");
    const md = formatTable(table, "md");
    assert.match(md, /on each scan's own grid \(summary\.json dice_source/);
    assert.match(
      md,
      /Left out: 2 run\(s\) without source-grid Dice \((mt seed 1; partial seed 2|partial seed 2; mt seed 1)\)\./,
    );
    assert.match(md, /^\| ours-kl +\| +2 \| +42\.00 \(2\.83\) \|/m);
    assert.match(formatTable(table, "md", { perSeed: true }), /Left out: 2 run\(s\)/);

    // the CLI: notes on standard error, the table on standard output; none with scores: exit 2
    const run = (args: string[]) => tableCli(args);
    const out = await run([root, "--grid", "source"]);
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    assert.equal(out.code, 0, text(out.stderr));
    assert.match(
      text(out.stderr),
      /partial\/seed2 has no source-grid Dice, left out \(add them: .*--grid source --write, where the folder has its latest\.ckpt; .*add --checkpoint-from <that run>\)/,
    );
    assert.match(text(out.stdout), /^\| partial +\| +1 \| +30\.00 \|/m);
    const none = await run([`${root}/mt`, "--grid", "source"]);
    assert.equal(none.code, 2);
    assert.match(text(none.stderr), /No run has source-grid Dice/);
    const bad = await run([root, "--grid", "scan"]);
    assert.equal(bad.code, 2);
    assert.match(text(bad.stderr), /Unknown grid "scan"; use network or source/);
  });
});

Deno.test("table --versus: each set's mean, per-class differences over the shared seeds and a two-sided seed-paired p", async () => {
  const root = await Deno.makeTempDir();
  try {
    // this: ours-kl seeds 1-3, means 80, 80, 70; versus: ours-kl seeds 1-2, means 70, 60, and
    // partial (only in versus). Paired seeds 1, 2: mean differences 10 and 20 (mean 15, sd
    // 7.071, t = 3, df 1: Student's t with 1 df is Cauchy, two-sided p = 1 - 2 atan(3) / pi).
    await fakeRun(`${root}/v2/ours/seed1`, "ours-kl", 1, c(0.8, 0.7, 0.9), {});
    await fakeRun(`${root}/v2/ours/seed2`, "ours-kl", 2, c(0.9, 0.6, 0.9), {});
    await fakeRun(`${root}/v2/ours/seed3`, "ours-kl", 3, c(0.7, 0.7, 0.7), {});
    await fakeRun(`${root}/v1/ours/seed1`, "ours-kl", 1, c(0.7, 0.7, 0.7), {});
    await fakeRun(`${root}/v1/ours/seed2`, "ours-kl", 2, c(0.6, 0.6, 0.6), {});
    await fakeRun(`${root}/v1/partial/seed1`, "partial", 1, c(0.5, 0.5, 0.5), {});
    const { compareTables, formatComparison } = await import("../app/protocol_compare.ts");
    const quiet = { log: () => {} };
    const cmp = compareTables(
      buildTable(await loadRuns([`${root}/v2`], () => {}), quiet),
      buildTable(await loadRuns([`${root}/v1`], () => {}), quiet),
      { this: "v2", versus: "v1" },
    );
    assert.deepEqual(cmp.rows.map((r) => r.method), ["partial", "ours-kl"]);
    const ours = cmp.rows[1].datasets.acdc;
    assert.deepEqual(ours.paired, [1, 2]);
    assertClose(ours.diff.RV, 20, 1e-9);
    assertClose(ours.diff.Myo, 0, 1e-9);
    assertClose(ours.diff.LV, 25, 1e-9);
    assertClose(ours.diff_mean, 15, 1e-9);
    assertClose(ours.p, 1 - 2 * Math.atan(3) / Math.PI, 1e-9);
    assertClose(ours.this!.dice_mean.mean, 230 / 3, 1e-9);
    const partial = cmp.rows[0].datasets.acdc;
    assert.equal(partial.this, null);
    assert.deepEqual(partial.paired, []);
    assert.ok(Number.isNaN(partial.p));
    const md = formatComparison(cmp, "md");
    assert.match(
      md,
      /\| ours-kl +\| +3 \| 76\.67 \(5\.77\) \| +2 \| 65\.00 \(7\.07\) \| +2 \| \+20\.00 \| \+0\.00 \| \+25\.00 \| \+15\.00 \| +0\.2048 \|/,
    );
    assert.match(md, /\| partial +\| +\| +\| +1 \| +50\.00 \| +0 \| +\| +\| +\| +\| +\|/);
    assert.match(md, /of v2 \(seeds, mean\) and of v1 \(versus\)/);
    // the other way round: the differences change sign, the two-sided p does not
    const back = compareTables(
      buildTable(await loadRuns([`${root}/v1`], () => {}), quiet),
      buildTable(await loadRuns([`${root}/v2`], () => {}), quiet),
      { this: "v1", versus: "v2" },
    ).rows[1].datasets.acdc;
    assertClose(back.diff_mean, -15, 1e-9);
    assertClose(back.p, ours.p, 1e-12);
    // the CLI prints the same; --versus with --baseline is a usage error (exit 2)
    const run = (args: string[]) => tableCli(args, root);
    let out = await run(["v2", "--versus", "v1", "--format", "csv"]);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(
      new TextDecoder().decode(out.stdout),
      /^method,seeds,mean,versus seeds,versus mean,paired,Δ RV,Δ Myo,Δ LV,Δ mean,p seeds\npartial,,,1,50\.00,0,,,,,\nours-kl,3,76\.67 \(5\.77\),2,65\.00 \(7\.07\),2,\+20\.00,\+0\.00,\+25\.00,\+15\.00,0\.2048\n$/,
    );
    out = await run(["v2", "--versus", "v1", "--baseline", "ours-kl"]);
    assert.equal(out.code, 2);
    assert.match(new TextDecoder().decode(out.stderr), /--versus takes none of --baseline/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
