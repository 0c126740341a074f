/**
 * PROMISE12 as the first author's PNG slices (`train/img/<Case>_0_<slice>.png`, `train/gt/...`):
 * the `promise12` dataset finds the layout by itself, stacks each case's slices in slice order
 * into one 3D volume (so validation Dice is per case, in 3D) and splits the cases, seeded, into
 * labeled, unlabeled and validation ones. A synthetic folder tests the reader; the real data
 * (`../shared/data/promise12`, or PROMISE12_ROOT) is tested when present.
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { SegmentationDataset } from "../core/dataset.ts";
import { writePng } from "../io/png_slices.ts";
import { promise12Dataset, promise12Options } from "../plugins/datasets/promise12.ts";
import { loadRecipe } from "../core/recipe.ts";

const REAL = Deno.env.get("PROMISE12_ROOT") ??
  fileURLToPath(new URL("../../shared/data/promise12", import.meta.url));
const hasReal = await Deno.stat(`${REAL}/train/img`).then(() => true, () => false);
if (!hasReal) {
  console.log(`promise12_test: skipping the real PROMISE12 tests: no data at ${REAL}/train/img`);
}

async function load(
  options: Record<string, unknown>,
  seed = 1,
): Promise<{ data: SegmentationDataset; logs: string[] }> {
  const logs: string[] = [];
  const data = await promise12Dataset.load(promise12Options.parse(options), {
    seed,
    baseDir: ".",
    log: (m) => logs.push(m),
  });
  return { data, logs };
}

/** Every case in exactly one split, each split's slices from its own cases only. */
function checkSplitByCase(data: SegmentationDataset, counts: [number, number, number]): void {
  const { labeled, unlabeled, validation } = data.splits;
  assert.deepEqual([labeled.length, unlabeled.length, validation.length], counts);
  const all = [...labeled, ...unlabeled, ...validation];
  assert.equal(
    new Set(all).size,
    all.length,
    `a case is in two splits: ${JSON.stringify(data.splits)}`,
  );
  assert.deepEqual([...new Set(data.labeled.patients)].sort(), [...labeled].sort());
  assert.deepEqual([...new Set(data.unlabeled.patients)].sort(), [...unlabeled].sort());
  // one 3D volume per validation case
  assert.deepEqual(data.validation.map((v) => v.patient).sort(), [...validation].sort());
}

/**
 * A PNG slice folder `root/train/{img,gt}`: `cases` cases of `slices[c]` 16x16 slices each. Slice
 * `s` of a case has a square of side `s + 1` of prostate (so a volume's slice order can be read
 * back from its labels); slice numbers are not zero-padded (`_0_2` < `_0_10` numerically) and the
 * files are written in a shuffled order.
 */
async function syntheticFolder(cases: number, slices: (c: number) => number): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "promise12-png-" });
  await Deno.mkdir(`${root}/train/img`, { recursive: true });
  await Deno.mkdir(`${root}/train/gt`, { recursive: true });
  const files: Array<[number, number]> = [];
  for (let c = 0; c < cases; c++) for (let s = 0; s < slices(c); s++) files.push([c, s]);
  files.sort((a, b) => ((a[0] * 7 + a[1] * 13) % 11) - ((b[0] * 7 + b[1] * 13) % 11));
  for (const [c, s] of files) {
    const name = `Case${String(c).padStart(2, "0")}_0_${s}.png`;
    const label = new Uint8Array(256);
    for (let y = 0; y <= s; y++) for (let x = 0; x <= s; x++) label[y * 16 + x] = 1;
    const shape = [16, 16], spacing = [1, 1];
    await writePng(`${root}/train/img/${name}`, {
      data: Uint8Array.from(label, (l, i) => 30 + 150 * l + (i % 7) + c),
      shape,
      spacing,
    });
    await writePng(`${root}/train/gt/${name}`, { data: label, shape, spacing });
  }
  return root;
}

Deno.test("promise12 PNG slices: one 3D volume per case in slice order, split by case, seeded", async () => {
  const slices = (c: number) => 11 + (c % 3); // 11..13 slices: numbers 0..12, not zero-padded
  const root = await syntheticFolder(12, slices);
  try {
    const options = {
      root,
      size: 16,
      split: { labeled: 2, unlabeled: 6, validation: 4 },
      cache: false,
    };
    const { data, logs } = await load(options, 1);
    assert.ok(logs.some((l) => l.includes("promise12 (png)")), logs.join("\n"));
    assert.deepEqual(data.classNames, ["background", "prostate"]);
    checkSplitByCase(data, [2, 6, 4]);
    for (const v of data.validation) {
      const c = Number(v.patient.slice(4));
      assert.equal(v.id, `${v.patient}_0`);
      assert.deepEqual(v.shape, [slices(c), 16, 16]);
      // slice s holds (s + 1)^2 prostate pixels: the volume is in slice-number order
      for (let s = 0; s < slices(c); s++) {
        const area = v.label.subarray(s * 256, (s + 1) * 256).reduce((a, b) => a + b, 0);
        assert.equal(area, (s + 1) ** 2, `${v.id} slice ${s}`);
      }
    }
    const labeledCases = new Set(data.splits.labeled);
    assert.equal(
      data.labeled.count,
      [...labeledCases].reduce((n, p) => n + slices(Number(p.slice(4))), 0),
      "every slice of every labeled case",
    );
    // the same seed, the same split; another seed, another one
    assert.deepEqual((await load(options, 1)).data.splits, data.splits);
    const other = (await load(options, 2)).data.splits;
    assert.notDeepEqual(other, data.splits);
    // the split's own seed overrides the run's
    assert.deepEqual((await load({ ...options, seed: 1 }, 2)).data.splits, data.splits);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "real PROMISE12 PNG slices: 40 cases, 7 / 23 / 10 by case, reproducible by seed",
  ignore: !hasReal,
  fn: async () => {
    const cache = await Deno.makeTempDir({ prefix: "promise12-cache-" });
    try {
      const options = {
        root: REAL,
        size: 64,
        split: { labeled: 7, unlabeled: 23, validation: 10 },
        cache,
      };
      const { data } = await load(options, 1);
      checkSplitByCase(data, [7, 23, 10]);
      const cases = new Set([
        ...data.splits.labeled,
        ...data.splits.unlabeled,
        ...data.splits.validation,
      ]);
      assert.equal(cases.size, 40);
      // each validation volume holds every slice of its case, in order
      const names = [...Deno.readDirSync(`${REAL}/train/img`)].map((e) => e.name);
      for (const v of data.validation) {
        const own = names.filter((n) => n.startsWith(`${v.patient}_0_`));
        assert.equal(v.shape[0], own.length, v.id);
        assert.deepEqual([v.shape[1], v.shape[2]], [64, 64]);
        assert.ok(v.label.some((l) => l === 1), `${v.id} has prostate`);
      }
      // reproducible by seed, different for another seed
      assert.deepEqual((await load(options, 1)).data.splits, data.splits);
      assert.notDeepEqual((await load(options, 2)).data.splits, data.splits);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test({
  name: "recipes/prostate-cpu/*.yaml: the shared data by default, 7 / 23 / 10 cases",
  fn: async () => {
    const dir = fileURLToPath(new URL("../recipes/prostate-cpu/", import.meta.url));
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".yaml"));
    assert.ok(files.length >= 8, files.join(", "));
    const shared = fileURLToPath(new URL("../../shared/data/promise12", import.meta.url));
    for (const f of files) {
      // without PROMISE12_ROOT, the root is ../shared/data/promise12 beside the repository
      const { recipe } = await loadRecipe(`${dir}${f}`, { env: () => undefined });
      const d = recipe.dataset as unknown as { root: string; split: Record<string, unknown> };
      assert.equal(resolve(dir, d.root), shared, f);
      if (recipe.method === "full") continue;
      assert.deepEqual(d.split, { labeled: 7, unlabeled: 23, validation: 10 }, f);
    }
  },
});
