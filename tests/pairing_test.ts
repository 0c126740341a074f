/**
 * The two forms of the paired terms (recipe `pairing`): `inverse` compares `f(x)` with
 * `T^-1 f(T x)`, `forward` compares `T f(x)` with `f(T x)`.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import {
  pairedPredictions,
  type Pairing,
  type Regularizer,
  type StepContext,
} from "../core/regularizer.ts";
import { Rng } from "../core/rng.ts";
import type { Affine } from "../core/warp.ts";
import { forwardValidMask, type InvertibleTransform } from "../core/transform.ts";
import { Trainer } from "../core/trainer.ts";
import { transforms } from "../core/transform.ts";
import { klOptions, klRegularizer } from "../plugins/regularizers/kl_consistency.ts";
import { mseOptions, mseRegularizer } from "../plugins/regularizers/mse_consistency.ts";
import { miOptions, miRegularizer } from "../plugins/regularizers/mutual_information.ts";
import {
  entropyMinOptions,
  entropyMinRegularizer,
} from "../plugins/regularizers/entropy_minimization.ts";
import {
  affineTransform,
  composeTransforms,
  flipTransformPlugin,
} from "../plugins/transforms/affine.ts";
import { registerBuiltins } from "../plugins/mod.ts";
import { parseRecipe } from "../core/recipe.ts";
import { assertClose, randomProbs, useWasm } from "./_helpers.ts";
import { tinyRecipe } from "./_tiny.ts";

await useWasm();
registerBuiltins();

const B = 4, H = 9, W = 11, C = 3;

/**
 * A step context from probability maps (no network): `p = f(x)`, `r = f(T x)`, with logits
 * `log r` so that `softmax(logitsTransformed) = r`.
 */
function contextFrom(
  transform: InvertibleTransform,
  params: unknown,
  p: tf.Tensor4D,
  r: tf.Tensor4D,
  pairing: Pairing,
): StepContext {
  const [b, h, w] = p.shape;
  const none = tf.zeros([b, h, w, 1]) as tf.Tensor4D;
  return {
    iteration: 0,
    iterations: 1,
    numClasses: p.shape[3],
    xLabeled: none,
    yLabeled: tf.zeros([b, h, w], "int32") as tf.Tensor3D,
    xUnlabeled: none,
    xTransformed: none,
    logitsLabeled: tf.log(p) as tf.Tensor4D,
    logitsUnlabeled: tf.log(p) as tf.Tensor4D,
    logitsTransformed: tf.log(r) as tf.Tensor4D,
    probsUnlabeled: p,
    probsTransformed: r,
    probsTransformedBack: transform.invert(r, params),
    validMask: transform.validMask(params, h, w),
    pairing,
    transform,
    transformParams: params,
    // deno-lint-ignore no-explicit-any
    model: null as any,
  };
}

const noContext = { model: null, numClasses: C, seed: 1, createModel: () => null } as never;

/** Every paired regularizer, in several option settings, by label. */
function pairedRegularizers(): Array<[string, Regularizer]> {
  return [
    ["kl", klRegularizer.create(klOptions.parse({}), noContext)],
    ["kl reverse", klRegularizer.create(klOptions.parse({ direction: "reverse" }), noContext)],
    ["mse", mseRegularizer.create(mseOptions.parse({}), noContext)],
    ["mi r1", miRegularizer.create(miOptions.parse({}), noContext)],
    ["mi r2", miRegularizer.create(miOptions.parse({ radius: 2 }), noContext)],
    [
      "mi r1 unsymmetrised",
      miRegularizer.create(miOptions.parse({ symmetrize: false }), noContext),
    ],
    [
      "mi r1 marginal 0.5",
      miRegularizer.create(miOptions.parse({ marginalWeight: 0.5 }), noContext),
    ],
    [
      "entropy-min both",
      entropyMinRegularizer.create(
        entropyMinOptions.parse({ includeTransformed: true }),
        noContext,
      ),
    ],
  ];
}

/** Flip maps: horizontal, vertical, both, none (one per image). */
function flipMaps(): Affine {
  return Float64Array.from([
    [-1, 0, 0, 0, 1, 0],
    [1, 0, 0, 0, -1, 0],
    [-1, 0, 0, 0, -1, 0],
    [1, 0, 0, 0, 1, 0],
  ].flat());
}

Deno.test("the flip transform with flips only draws horizontal and vertical flips, no rotation", () => {
  const t = flipTransformPlugin.create(flipTransformPlugin.options.parse({}));
  const m = t.sample(new Rng(3), 400, H, W) as Affine;
  const seen = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const [a, b, tx, c, d, ty] = m.subarray(6 * i, 6 * i + 6);
    assert.ok(b === 0 && c === 0, "no rotation");
    assert.ok(tx === 0 && ty === 0, "no translation");
    assert.ok(Math.abs(a) === 1 && Math.abs(d) === 1);
    seen.add(`${a},${d}`);
  }
  assert.equal(seen.size, 4, "all four flip combinations occur");
  // rotate90 defaults to 0; horizontal/vertical set the probabilities of each axis
  const hOnly = flipTransformPlugin.create(
    flipTransformPlugin.options.parse({ horizontal: 1, vertical: 0 }),
  );
  const mh = hOnly.sample(new Rng(1), 5, H, W) as Affine;
  for (let i = 0; i < 5; i++) {
    assert.deepEqual([...mh.subarray(6 * i, 6 * i + 6)].map((v) => v + 0), [-1, 0, 0, 0, 1, 0]);
  }
});

/** The loss of every paired regularizer in both forms, for flips `params` of `B` images. */
function bothForms(params: Affine, seed: number): Array<[string, number, number]> {
  const flip = affineTransform("flip", () => params);
  return tf.tidy(() => {
    const p = randomProbs([B, H, W, C], seed);
    const r = randomProbs([B, H, W, C], seed + 1);
    const inv = contextFrom(flip, params, p, r, "inverse");
    const fwd = contextFrom(flip, params, p, r, "forward");
    assert.equal(tf.min(pairedPredictions(fwd).mask).dataSync()[0], 1, "flips lose no pixel");
    return pairedRegularizers().map(([label, reg]): [string, number, number] => {
      const a = reg.loss(inv).dataSync()[0];
      const b = reg.loss(fwd).dataSync()[0];
      assert.ok(Number.isFinite(a) && Math.abs(a) > 1e-4, `${label}: ${a}`);
      return [label, a, b];
    });
  });
}

Deno.test("for flips, the inverse and forward forms give the same KL, MSE and entropy-min, a flip per image", () => {
  for (const [label, a, b] of bothForms(flipMaps(), 1)) {
    if (label.startsWith("mi")) continue;
    // The same pixel pairs, summed in another order: equal up to float32 rounding.
    assertClose(b, a, 1e-6, `${label}:`);
  }
});

Deno.test("for one flip shared by the batch, the two forms give the same MI too", () => {
  const maps = flipMaps();
  for (let f = 0; f < 4; f++) {
    const shared = new Float64Array(6 * B);
    for (let i = 0; i < B; i++) shared.set(maps.subarray(6 * f, 6 * f + 6), 6 * i);
    for (const [label, a, b] of bothForms(shared, 10 + f)) {
      assertClose(b, a, 1e-6, `flip ${f}, ${label}:`);
    }
  }
  // and the flip transform draws such batches with perImage: false
  const t = flipTransformPlugin.create(flipTransformPlugin.options.parse({ perImage: false }));
  for (let seed = 0; seed < 5; seed++) {
    const m = t.sample(new Rng(seed), B, H, W) as Affine;
    for (let i = 1; i < B; i++) assert.deepEqual(m.subarray(6 * i, 6 * i + 6), m.subarray(0, 6));
  }
});

Deno.test("with a different flip per image, the MI differs between the forms (its joint pools the batch)", () => {
  // Image n's flip mirrors displacement d to M_n d; the forward joint at d sums the inverse
  // form's per-image joints at M_n d, which are different displacements for different n.
  const results = bothForms(flipMaps(), 1).filter(([label]) => label.startsWith("mi"));
  assert.ok(results.length >= 3);
  for (const [label, a, b] of results) {
    // far above float32 rounding (the forms agree to ~1e-7 where they should)
    assert.ok(Math.abs(a - b) > 5e-6, `${label}: ${a} vs ${b}`);
  }
});

Deno.test("for flips, MI's joint at displacement d in one form is the joint at the mirrored d in the other", () => {
  // The reason the means agree: flipping both maps maps each displacement to its mirror.
  const params = flipMaps().subarray(0, 6); // a horizontal flip
  const flip = affineTransform("flip", () => params);
  tf.tidy(() => {
    const p = randomProbs([1, H, W, C], 3);
    const r = randomProbs([1, H, W, C], 4);
    const inv = pairedPredictions(contextFrom(flip, params, p, r, "inverse"));
    const fwd = pairedPredictions(contextFrom(flip, params, p, r, "forward"));
    const joint = (a: tf.Tensor4D, b: tf.Tensor4D, dy: number, dx: number) => {
      const av = a.arraySync()[0], bv = b.arraySync()[0];
      const out = Array.from({ length: C }, () => new Array(C).fill(0));
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const i2 = i + dy, j2 = j + dx;
          if (i2 < 0 || i2 >= H || j2 < 0 || j2 >= W) continue;
          for (let c = 0; c < C; c++) {
            for (let k = 0; k < C; k++) out[c][k] += av[i][j][c] * bv[i2][j2][k];
          }
        }
      }
      return out.flat();
    };
    for (const [dy, dx] of [[0, 1], [1, 1], [-1, 1], [1, 0]]) {
      const a = joint(inv.source, inv.target, dy, dx);
      const b = joint(fwd.source, fwd.target, dy, -dx); // horizontal flip mirrors dx
      a.forEach((v, i) => assertClose(b[i], v, 1e-5, `d = (${dy}, ${dx}) [${i}]`));
    }
  });
});

/** Independent bilinear warp: output (i, j) samples `x` at the map's source point, zeros outside. */
function bruteForceWarp(
  x: number[][][][],
  m: Affine,
): { out: number[][][][]; valid: number[][][] } {
  const b = x.length, h = x[0].length, w = x[0][0].length, c = x[0][0][0].length;
  const out: number[][][][] = [];
  const valid: number[][][] = [];
  for (let n = 0; n < b; n++) {
    const [a, bb, tx, cc, d, ty] = m.subarray(6 * n, 6 * n + 6);
    out.push([]);
    valid.push([]);
    for (let i = 0; i < h; i++) {
      out[n].push([]);
      valid[n].push([]);
      for (let j = 0; j < w; j++) {
        // pixel centres in [-1, 1] (align_corners = false)
        const u = -1 + (2 * j + 1) / w, v = -1 + (2 * i + 1) / h;
        const su = a * u + bb * v + tx, sv = cc * u + d * v + ty;
        const sx = (su + 1) * w / 2 - 0.5, sy = (sv + 1) * h / 2 - 0.5;
        const inside = (yy: number, xx: number) => yy >= 0 && yy < h && xx >= 0 && xx < w;
        const value = new Array(c).fill(0);
        const x0 = Math.floor(sx), y0 = Math.floor(sy);
        for (const [yy, xx] of [[y0, x0], [y0, x0 + 1], [y0 + 1, x0], [y0 + 1, x0 + 1]]) {
          const weight = (1 - Math.abs(sx - xx)) * (1 - Math.abs(sy - yy));
          if (!inside(yy, xx) || weight <= 0) continue;
          for (let k = 0; k < c; k++) value[k] += weight * x[n][yy][xx][k];
        }
        out[n][i].push(value);
        const e = 1e-6;
        valid[n][i].push(sx >= -e && sx <= w - 1 + e && sy >= -e && sy <= h - 1 + e ? 1 : 0);
      }
    }
  }
  return { out, valid };
}

/** Rotation by `deg`, scale `s`, translation `(tx, ty)` (normalised), per image. */
function someAffines(): Affine {
  const rows: number[][] = [];
  for (const [deg, s, tx, ty] of [[20, 1.1, 0.1, -0.05], [-35, 0.85, 0, 0.2], [0, 1, 0.3, 0]]) {
    const t = (deg * Math.PI) / 180;
    rows.push([Math.cos(t) * s, -Math.sin(t) * s, tx, Math.sin(t) * s, Math.cos(t) * s, ty]);
  }
  return Float64Array.from(rows.flat());
}

Deno.test("for an affine, the forward form compares f(T x) with a bilinear warp of f(x), masked where it reads outside", () => {
  const m = someAffines();
  const t = affineTransform("affine", () => m);
  tf.tidy(() => {
    const p = randomProbs([3, H, W, C], 5);
    const r = randomProbs([3, H, W, C], 6);
    const ctx = contextFrom(t, m, p, r, "forward");
    const pair = pairedPredictions(ctx);
    const { out, valid } = bruteForceWarp(p.arraySync(), m);
    const got = pair.source.arraySync();
    const mask = pair.mask.arraySync();
    let invalid = 0;
    for (let n = 0; n < 3; n++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          for (let k = 0; k < C; k++) {
            assertClose(got[n][i][j][k], out[n][i][j][k], 1e-5, `T f(x)[${n},${i},${j},${k}]`);
          }
          assert.equal(mask[n][i][j][0], valid[n][i][j], `mask[${n},${i},${j}]`);
          invalid += 1 - valid[n][i][j];
        }
      }
    }
    assert.ok(invalid > 0, "the test maps read outside the image somewhere");
    // the transformed side is f(T x) itself, unwarped
    assert.deepEqual(pair.target.dataSync(), r.dataSync());
    // the MSE term is the masked mean of the brute-force pair
    let sum = 0, count = 0;
    const rv = r.arraySync();
    for (let n = 0; n < 3; n++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          if (!valid[n][i][j]) continue;
          count++;
          for (let k = 0; k < C; k++) sum += (out[n][i][j][k] - rv[n][i][j][k]) ** 2 / C;
        }
      }
    }
    const mse = mseRegularizer.create(mseOptions.parse({}), noContext);
    assertClose(mse.loss(ctx).dataSync()[0], sum / count, 1e-5, "masked MSE");
  });
});

Deno.test("the forward mask at the borders: a shift of k pixels loses the last k columns (forward) or the first k (inverse)", () => {
  for (const k of [1, 2]) {
    // sampling map: output column j reads input column j + k
    const m = Float64Array.from([1, 0, (2 * k) / W, 0, 1, 0]);
    const t = affineTransform("shift", () => m);
    tf.tidy(() => {
      const forward = forwardValidMask(t, m, H, W).arraySync()[0];
      const inverse = t.validMask(m, H, W).arraySync()[0];
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          assert.equal(forward[i][j][0], j < W - k ? 1 : 0, `forward (${i}, ${j}), k ${k}`);
          assert.equal(inverse[i][j][0], j >= k ? 1 : 0, `inverse (${i}, ${j}), k ${k}`);
        }
      }
    });
  }
});

Deno.test("forwardValidMask() without the transform's own method warps ones, and compose() walks forward", () => {
  const m = someAffines();
  const affine = affineTransform("affine", () => m);
  // a transform without the method (and not marked affine, so compose() does not fuse it)
  const plain: InvertibleTransform = {
    id: "plain",
    sample: affine.sample,
    apply: affine.apply,
    invert: affine.invert,
    validMask: affine.validMask,
  };
  tf.tidy(() => {
    const own = forwardValidMask(affine, m, H, W).dataSync();
    assert.deepEqual(forwardValidMask(plain, m, H, W, 3).dataSync(), own);
    assert.deepEqual(forwardValidMask(plain, m, H, W).dataSync(), own);
    // A non-affine composition (the plain part is not fused): flip, then the affine.
    const flip = affineTransform("flip", () => flipMaps().subarray(0, 18));
    const both = composeTransforms([flip, plain]);
    const params = [flipMaps().subarray(0, 18), m];
    const expected = forwardValidMask(affine, m, H, W).dataSync(); // flips lose nothing
    assert.deepEqual(forwardValidMask(both, params, H, W).dataSync(), expected);
  });
});

Deno.test("stopGradient: source stops T f(x) in the forward form, target stops f(T x)", () => {
  const m = someAffines();
  const t = affineTransform("affine", () => m);
  tf.tidy(() => {
    const p = randomProbs([3, H, W, C], 7);
    const r = randomProbs([3, H, W, C], 8);
    for (const make of [klRegularizer, mseRegularizer, miRegularizer]) {
      const grads = (stop: string) => {
        // deno-lint-ignore no-explicit-any
        const reg = (make as any).create(make.options.parse({ stopGradient: stop }), noContext);
        return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          reg.loss({
            ...contextFrom(t, m, a as tf.Tensor4D, b as tf.Tensor4D, "forward"),
            probsTransformed: b as tf.Tensor4D,
          })
        )([p, r]).map((g) => tf.sum(tf.abs(g)).dataSync()[0]);
      };
      const [np, nr] = grads("none");
      assert.ok(np > 0 && nr > 0, make.id);
      const [sp, sr] = grads("source");
      assert.equal(sp, 0, `${make.id}: no gradient reaches f(x)`);
      assertClose(sr, nr, 1e-6);
      const [tp, tr] = grads("target");
      assertClose(tp, np, 1e-6);
      assert.equal(tr, 0, `${make.id}: no gradient reaches f(T x)`);
    }
  });
});

Deno.test("recipes take pairing: inverse (default) or forward, nothing else", () => {
  assert.equal(tinyRecipe().pairing, "inverse");
  assert.equal(tinyRecipe({ pairing: "forward" }).pairing, "forward");
  assert.throws(
    () =>
      parseRecipe({
        method: "x",
        dataset: { type: "phantom" },
        trainer: { iterations: 1 },
        pairing: "back",
      }, "<r>"),
    /pairing/,
  );
});

Deno.test("the trainer computes only what the recipe's pairing needs", async () => {
  // A flip transform that counts its calls.
  const calls = { apply: 0, invert: 0, validMask: 0, forwardValidMask: 0 };
  const id = "counting-flip-pairing-test";
  // registered for this test only: the registry is process-wide
  transforms.register({
    id,
    description: "flip that counts calls (test)",
    options: flipTransformPlugin.options,
    create: (options: unknown) => {
      const inner = flipTransformPlugin.create(flipTransformPlugin.options.parse(options));
      return {
        id,
        sample: (rng: Rng, b: number, h: number, w: number) => inner.sample(rng, b, h, w),
        apply: (x: tf.Tensor4D, prm: Affine, i?: "bilinear" | "nearest") => {
          calls.apply++;
          return inner.apply(x, prm, i);
        },
        invert: (y: tf.Tensor4D, prm: Affine) => {
          calls.invert++;
          return inner.invert(y, prm);
        },
        validMask: (prm: Affine, h: number, w: number) => {
          calls.validMask++;
          return inner.validMask(prm, h, w);
        },
        forwardValidMask: (prm: Affine, h: number, w: number) => {
          calls.forwardValidMask++;
          return inner.forwardValidMask!(prm, h, w);
        },
      };
    },
  });
  const steps = async (pairing: Pairing, regularizers: unknown[], flip = {}) => {
    Object.keys(calls).forEach((k) => (calls[k as keyof typeof calls] = 0));
    const recipe = tinyRecipe({ pairing, transform: { type: id, ...flip }, regularizers });
    const trainer = await Trainer.create(recipe, { out: null, progress: false, log: () => {} });
    try {
      const first = await trainer.step();
      const before = tf.memory().numTensors;
      await trainer.step();
      assert.equal(tf.memory().numTensors, before, `${pairing}: a step leaks no tensor`);
      return first;
    } finally {
      trainer.dispose();
    }
  };
  try {
    const mikl = [{ type: "mi", weight: 1 }, { type: "kl", weight: 1 }];
    const forward = await steps("forward", mikl, { perImage: false });
    // per step: T(x_u) and T f(x) (shared by mi and kl), one forward mask, no inverse warp
    assert.deepEqual(calls, { apply: 4, invert: 0, validMask: 0, forwardValidMask: 2 });
    const inverse = await steps("inverse", mikl, { perImage: false });
    assert.deepEqual(calls, { apply: 2, invert: 2, validMask: 2, forwardValidMask: 0 });
    // The first step starts from the same weights and batches, and flips pair the same pixels.
    assert.ok(Number.isFinite(forward.mi) && forward.kl > 0);
    assertClose(forward.mi, inverse.mi, 1e-5, "first step's MI");
    assertClose(forward.kl, inverse.kl, 1e-5, "first step's KL");
    // The mean teacher follows the pairing too.
    await steps("forward", [{ type: "mean-teacher", weight: 1 }]);
    assert.deepEqual(calls, { apply: 4, invert: 0, validMask: 0, forwardValidMask: 2 });
  } finally {
    transforms.unregister(id);
  }
});
