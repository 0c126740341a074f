import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { decodePng } from "../deps.ts";
import {
  binPoints,
  curveStyle,
  learningCurvesSvg,
  meanCurves,
  niceTicks,
  overlayPanel,
  parseMetrics,
  plotRuns,
} from "../app/plot.ts";
import { Trainer } from "../core/trainer.ts";
import { RunDir } from "../core/run_dir.ts";
import { tinyRecipe } from "./_tiny.ts";
import { registerBuiltins } from "../plugins/mod.ts";

// The trainer registers no plugins: the built-ins come from here.
registerBuiltins();

const CLI = fileURLToPath(new URL("../app/cli.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A well-formedness check of SVG text: one root, every tag closed in order. */
function assertWellFormedSvg(text: string): void {
  assert.match(text, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
  assert.match(text.trim(), /<\/svg>$/);
  const stack: string[] = [];
  for (const m of text.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, closing, name, attrs, self] = m;
    assert.doesNotMatch(attrs, /[<&](?!amp;|lt;|gt;|quot;)/, `bad attribute text in <${name}>`);
    if (self) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong tag`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], "unclosed tags");
  assert.doesNotMatch(text, /NaN|undefined|Infinity/);
}

async function tinyRun(dir: string, extra: Record<string, unknown>): Promise<void> {
  const trainer = await Trainer.create(
    tinyRecipe({
      trainer: { iterations: 4, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 },
      ...extra,
    }),
    { out: dir, progress: false, log: () => {} },
  );
  try {
    await trainer.run();
  } finally {
    trainer.dispose();
  }
}

Deno.test("plot: learning curves (SVG) and overlays (PNG) of two tiny phantom runs", async () => {
  const root = await Deno.makeTempDir();
  try {
    await tinyRun(`${root}/ours/seed3`, {});
    await tinyRun(`${root}/partial/seed3`, { method: "partial", regularizers: [] });
    const out = `${root}/plots`;
    const files = await plotRuns([`${root}/*/seed3`], { out, slices: 2, log: () => {} });
    const names = files.map((f) => f.slice(out.length + 1));
    assert.ok(names.includes("learning-curves.svg"));
    assert.ok(names.includes("overlays.svg"));
    const pngs = names.filter((n) => n.endsWith(".png"));
    assert.equal(pngs.length, 2, names.join(" "));

    const svg = await Deno.readTextFile(`${out}/learning-curves.svg`);
    assertWellFormedSvg(svg);
    for (const title of ["loss (total)", "sup (supervised)", "mi", "kl", "validation Dice mean"]) {
      assert.ok(svg.includes(`>${title}</text>`), title);
    }
    assert.ok(svg.includes(">ours-kl</text>") && svg.includes(">partial</text>"), "legend");
    assert.ok((svg.match(/<polyline /g) ?? []).length >= 4);

    for (const png of pngs) {
      const bytes = await Deno.readFile(`${out}/${png}`);
      assert.deepEqual([...bytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
      const img = decodePng(bytes);
      // 32x32 slices upscaled 8 times: ground truth + 2 methods, 4 px apart
      assert.equal(img.height, 256);
      assert.equal(img.width, 3 * 256 + 2 * 4);
      assert.equal(img.channels, 3);
      assert.match(img.text.Description, /ground truth \| partial \| ours-kl/); // paper order
      // the ground truth panel holds contour colours (not only grey)
      let coloured = 0;
      for (let y = 0; y < 256; y++) {
        for (let x = 0; x < 256; x++) {
          const i = (y * img.width + x) * 3;
          if (img.data[i] !== img.data[i + 1] || img.data[i + 1] !== img.data[i + 2]) coloured++;
        }
      }
      assert.ok(coloured > 50, `ground truth contours: ${coloured} coloured pixels`);
    }
    const overlays = await Deno.readTextFile(`${out}/overlays.svg`);
    assertWellFormedSvg(overlays);
    for (const png of pngs) assert.ok(overlays.includes(`href="${png}"`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("plot CLI writes the learning curves of a run without loading checkpoints", async () => {
  const root = await Deno.makeTempDir();
  try {
    await tinyRun(`${root}/run`, {});
    const res = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-R",
        "-W",
        "-E",
        CLI,
        "plot",
        `${root}/run`,
        "--out",
        `${root}/p`,
        "--no-overlays",
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
    assert.equal(new TextDecoder().decode(res.stdout).trim(), `${root}/p/learning-curves.svg`);
    assertWellFormedSvg(await Deno.readTextFile(`${root}/p/learning-curves.svg`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("plot helpers: metrics parsing, binning, ticks, contours", () => {
  const c = parseMetrics(
    [
      '{"iteration":1,"loss":2,"sup":1.5,"kl":0.5,"lr":0.001,"seconds_train":1,"seconds_wall":2}',
      '{"iteration":2,"val_dice":{"RV":0.5},"val_dice_mean":0.5}',
      '{"iteration":3,"loss":1,', // cut by a crash
    ].join("\n"),
    "x",
  );
  assert.deepEqual(c.terms, { loss: [[1, 2]], sup: [[1, 1.5]], kl: [[1, 0.5]] });
  assert.deepEqual(c.validation, { mean: [[2, 0.5]], RV: [[2, 0.5]] });
  const pts = Array.from({ length: 1000 }, (_, i) => [i, i % 2] as [number, number]);
  const binned = binPoints(pts, 100);
  assert.equal(binned.length, 100);
  assert.ok(binned.every(([, y]) => Math.abs(y - 0.5) < 1e-12));
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  // a maximum a hair below 0 still ends on a tick that reads 0
  assert.deepEqual(niceTicks(-0.6529, -1.4e-16), [-0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0]);
  assert.deepEqual(niceTicks(-3, 97, 5), [-20, 0, 20, 40, 60, 80, 100]);
  assert.ok(learningCurvesSvg([c]).includes(">kl</text>"));
  // a 3x3 square of class 1 in a 5x5 slice: its ring is red, its centre and the outside grey
  const label = new Uint8Array(25);
  for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) label[y * 5 + x] = 1;
  const p = overlayPanel({ shape: [1, 5, 5], image: new Float32Array(25).fill(0.5) }, label, 0, 1);
  const rgb = (x: number, y: number) => [...p.data.subarray((y * 5 + x) * 3, (y * 5 + x) * 3 + 3)];
  assert.deepEqual(rgb(1, 1), [255, 48, 48]);
  assert.deepEqual(rgb(2, 2), [0, 0, 0]); // grey of a constant image: lo = hi -> 0
  assert.deepEqual(rgb(0, 0), [0, 0, 0]);
});

Deno.test("meanCurves() is the mean of the seeds at the iterations they share, the band their range", () => {
  const a = parseMetrics(
    '{"iteration":1,"loss":2}\n{"iteration":2,"loss":1}\n{"iteration":3,"loss":0.5}\n' +
      '{"iteration":2,"val_dice_mean":0.4}',
    "a",
  );
  const b = parseMetrics(
    '{"iteration":1,"loss":4}\n{"iteration":2,"loss":2}\n{"iteration":2,"val_dice_mean":0.6}',
    "b",
  );
  const m = meanCurves([a, b], "m");
  assert.deepEqual(m.terms, { loss: [[1, 3], [2, 1.5]] }); // iteration 3: only a has it
  assert.deepEqual(m.termBands, { loss: [[1, 2, 4], [2, 1, 2]] });
  assert.equal(m.validation.mean[0][0], 2);
  assert.ok(Math.abs(m.validation.mean[0][1] - 0.5) < 1e-12);
  assert.deepEqual(m.validationBands, { mean: [[2, 0.4, 0.6]] });
  const svg = learningCurvesSvg([m]);
  assertWellFormedSvg(svg);
  assert.ok(svg.includes("<polygon "), "the band");
});

Deno.test("every curve differs in colour or dash: 14 methods (docs' ACDC figure) are 14 styles", () => {
  const styles = Array.from({ length: 40 }, (_, i) => JSON.stringify(curveStyle(i)));
  assert.equal(new Set(styles).size, 40);
  const runs = Array.from(
    { length: 14 },
    (_, i) => parseMetrics('{"iteration":1,"loss":1}\n{"iteration":2,"loss":2}', `m${i}`),
  );
  const svg = learningCurvesSvg(runs);
  assertWellFormedSvg(svg);
  // the legend and the lines of the last four are dashed
  assert.equal((svg.match(/stroke-dasharray="7 4"/g) ?? []).length, 2 * 4);
});

Deno.test("plot: two runs of one method and seed are named by their folder; several seeds are one mean; a run without overlay is said", async () => {
  const root = await Deno.makeTempDir();
  try {
    await tinyRun(`${root}/a/seed3`, {
      trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 },
    });
    await tinyRun(`${root}/c/seed3`, {
      method: "partial",
      regularizers: [],
      trainer: { iterations: 2, labeledBatch: 2, unlabeledBatch: 2, validateEvery: 2 },
    });
    await Deno.remove(`${root}/c/seed3/best.ckpt`);
    // the same method and seed in another folder
    await Deno.mkdir(`${root}/b/seed3`, { recursive: true });
    for (const f of ["recipe.yaml", "metrics.jsonl", "summary.json"]) {
      await Deno.copyFile(`${root}/a/seed3/${f}`, `${root}/b/seed3/${f}`);
    }
    const lines: string[] = [];
    const out = `${root}/plots`;
    await plotRuns([`${root}/a/seed3`, `${root}/b/seed3`, `${root}/c/seed3`], {
      out,
      slices: 1,
      log: (l) => lines.push(l),
    });
    const svg = await Deno.readTextFile(`${out}/learning-curves.svg`);
    assertWellFormedSvg(svg);
    assert.ok(svg.includes(`>ours-kl s3 (${root}/a/seed3)</text>`), "legend names the folder");
    assert.ok(svg.includes(`>ours-kl s3 (${root}/b/seed3)</text>`));
    assert.ok(svg.includes(">partial</text>"));
    assert.ok(
      lines.some((l) => l === `note: no overlay of partial: no best.ckpt in ${root}/c/seed3`),
      lines.join("\n"),
    );

    // seeds 3 and 4 of one method: one curve, their mean, with a band
    await Deno.writeTextFile(
      `${root}/b/seed3/recipe.yaml`,
      (await Deno.readTextFile(`${root}/b/seed3/recipe.yaml`)).replace(/^seed: 3$/m, "seed: 4"),
    );
    await plotRuns([`${root}/a/seed3`, `${root}/b/seed3`], {
      out,
      noOverlays: true,
      log: () => {},
    });
    const mean = await Deno.readTextFile(`${out}/learning-curves.svg`);
    assert.ok(mean.includes(">ours-kl: mean of seeds 3, 4</text>"), "one legend entry");
    assert.ok(mean.includes("<polygon "));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a run keeping metrics.jsonl.gz (as results/ does) reads as one keeping metrics.jsonl", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = [
      `{"iteration":1,"loss":1.5,"sup":1.4,"lr":0.001}`,
      `{"iteration":2,"loss":1.25,"sup":1.2,"lr":0.001}`,
      `{"iteration":2,"val_dice":{"RV":0.5,"Myo":0.25},"val_dice_mean":0.375}`,
      "",
    ].join("\n");
    await Deno.mkdir(`${dir}/plain`);
    await Deno.writeTextFile(`${dir}/plain/metrics.jsonl`, text);
    await Deno.mkdir(`${dir}/gz`);
    for (const which of ["plain", "gz"]) {
      await Deno.writeTextFile(`${dir}/${which}/recipe.yaml`, "method: ours-kl\nseed: 1\n");
    }
    const gz = await new Response(
      new Blob([new TextEncoder().encode(text)]).stream().pipeThrough(
        new CompressionStream("gzip"),
      ),
    ).bytes();
    await Deno.writeFile(`${dir}/gz/metrics.jsonl.gz`, gz);
    assert.equal(await new RunDir(`${dir}/gz`).readMetrics(), text);
    assert.equal(await new RunDir(`${dir}/plain`).readMetrics(), text);
    assert.equal(await new RunDir(dir).readMetrics(), null);
    // the classes come from the last validation line of either
    assert.deepEqual(await new RunDir(`${dir}/gz`).classNames(), ["background", "RV", "Myo"]);
    // plot's learning curves: the same SVG from either
    const svgs: string[] = [];
    for (const which of ["plain", "gz"]) {
      const lines: string[] = [];
      await plotRuns([`${dir}/${which}`], {
        out: `${dir}/plot-${which}`,
        log: (l) => lines.push(l),
      });
      assert.ok(!lines.some((l) => l.includes("has no")), lines.join("\n"));
      svgs.push(
        (await Deno.readTextFile(`${dir}/plot-${which}/learning-curves.svg`)).replaceAll(which, ""),
      );
    }
    assert.equal(svgs[1], svgs[0]);
    assert.ok(svgs[0].includes("sup"), "the curves are drawn");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
