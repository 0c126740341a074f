import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import type { SegmentationModel } from "../core/model.ts";
import type { RegularizerContext, StepContext } from "../core/regularizer.ts";
import { Rng } from "../core/rng.ts";
import { unetModel, unetOptions } from "../plugins/models/unet.ts";
import { klConsistency } from "../plugins/regularizers/kl_consistency.ts";
import {
  entropyMinOptions,
  entropyMinRegularizer,
  meanEntropy,
} from "../plugins/regularizers/entropy_minimization.ts";
import {
  emaDecay,
  localName,
  meanTeacherOptions,
  meanTeacherRegularizer,
} from "../plugins/regularizers/mean_teacher.ts";
import {
  mseConsistency,
  mseOptions,
  mseRegularizer,
} from "../plugins/regularizers/mse_consistency.ts";
import { affineOptions, affineTransformPlugin } from "../plugins/transforms/affine.ts";
import { assertClose, assertNoLeak, randomProbs, useWasm } from "./_helpers.ts";

await useWasm();

const C = 3;
const UNET = unetOptions.parse({ base: 2, depth: 2 });

/** A tiny U-Net; the teacher gets another seed so that copying the student is observable. */
function makeModel(name: string, seed = 1): SegmentationModel {
  return unetModel.create(UNET, { inChannels: 1, numClasses: C, seed, name });
}

function regularizerContext(model: SegmentationModel): RegularizerContext {
  return { model, numClasses: C, seed: 1, createModel: (name) => makeModel(name, 99) };
}

/**
 * Run `fn` with a fresh student; afterwards dispose every variable (student, teachers), so that
 * a failing test does not leave names registered for the next ones.
 */
async function withStudent(fn: (model: SegmentationModel) => unknown): Promise<void> {
  const model = makeModel("student");
  try {
    await fn(model);
  } finally {
    tf.disposeVariables();
  }
}

const transform = affineTransformPlugin.create(affineOptions.parse({ rotation: 30 }));

/** A step context built the way the trainer builds one (2 labeled, 2 unlabeled 8x8 images). */
function stepContext(model: SegmentationModel, seed = 7, training = false): StepContext {
  const xl = tf.randomUniform([2, 8, 8, 1], 0, 1, "float32", seed) as tf.Tensor4D;
  const xu = tf.randomUniform([2, 8, 8, 1], 0, 1, "float32", seed + 1) as tf.Tensor4D;
  const params = transform.sample(new Rng(seed), 2, 8, 8);
  const xt = transform.apply(xu, params);
  const logits = model.apply(tf.concat([xl, xu, xt], 0), { training });
  const [ll, lu, lt] = tf.split(logits, [2, 2, 2], 0) as tf.Tensor4D[];
  return {
    iteration: 0,
    iterations: 10,
    numClasses: C,
    xLabeled: xl,
    yLabeled: tf.zeros([2, 8, 8], "int32") as tf.Tensor3D,
    xUnlabeled: xu,
    xTransformed: xt,
    logitsLabeled: ll,
    logitsUnlabeled: lu,
    logitsTransformed: lt,
    probsUnlabeled: tf.softmax(lu) as tf.Tensor4D,
    probsTransformedBack: transform.invert(tf.softmax(lt) as tf.Tensor4D, params),
    validMask: transform.validMask(params, 8, 8),
    transform,
    transformParams: params,
    model,
  };
}

/** Values of every variable of a model, by name without the model's name. */
function snapshot(model: SegmentationModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of [...model.trainable, ...model.state]) {
    out.set(localName(k), v.dataSync() as Float32Array);
  }
  return out;
}

/** Central finite-difference check of `f`'s gradient at `x0`. */
function checkGradient(f: (x: tf.Tensor) => tf.Scalar, x0: tf.Tensor, tol = 2e-3): void {
  const g = tf.grad(f)(x0);
  const analytic = g.dataSync();
  const base = x0.dataSync();
  const h = 1e-2;
  for (let i = 0; i < base.length; i++) {
    const plus = base.slice(), minus = base.slice();
    plus[i] += h;
    minus[i] -= h;
    const fd = tf.tidy(() =>
      (f(tf.tensor(plus, x0.shape)).dataSync()[0] - f(tf.tensor(minus, x0.shape)).dataSync()[0]) /
      (2 * h)
    );
    assertClose(analytic[i], fd, tol, `d/dx[${i}]`);
  }
  g.dispose();
}

// ---------------------------------------------------------------------------------------------
// MSE consistency

Deno.test("mseConsistency() matches hand-computed values, with and without a mask", () => {
  const p = tf.tensor4d([0.5, 0.5, 0.2, 0.8], [1, 1, 2, 2]);
  const q = tf.tensor4d([0.9, 0.1, 0.3, 0.7], [1, 1, 2, 2]);
  // pixel 1: (0.16 + 0.16) / 2 = 0.16; pixel 2: (0.01 + 0.01) / 2 = 0.01
  assertClose(mseConsistency(p, q).dataSync()[0], (0.16 + 0.01) / 2, 1e-6);
  const mask = tf.tensor4d([1, 0], [1, 1, 2, 1]);
  assertClose(mseConsistency(p, q, { mask }).dataSync()[0], 0.16, 1e-6);
  const none = tf.zeros([1, 1, 2, 1]);
  assert.equal(mseConsistency(p, q, { mask: none }).dataSync()[0], 0);
  tf.dispose([p, q, mask, none]);
});

Deno.test("mseConsistency() without a mask is the mean over all elements (F.mse_loss)", () => {
  const p = randomProbs([2, 3, 4, 5], 1);
  const q = randomProbs([2, 3, 4, 5], 2);
  const a = p.dataSync(), b = q.dataSync();
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  assertClose(mseConsistency(p, q).dataSync()[0], sum / a.length, 1e-6);
  assertClose(mseConsistency(p, p).dataSync()[0], 0, 1e-7);
  assert.throws(() => mseConsistency(p, tf.zeros([2, 3, 4, 4]) as tf.Tensor4D), /shapes differ/);
  tf.dispose([p, q]);
});

Deno.test("mseConsistency() averages over the valid pixels and all classes of a mask", () => {
  const p = randomProbs([2, 4, 4, 3], 3);
  const q = randomProbs([2, 4, 4, 3], 4);
  const maskArr = Array.from({ length: 32 }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const mask = tf.tensor4d(maskArr, [2, 4, 4, 1]);
  const a = p.dataSync(), b = q.dataSync();
  let sum = 0, n = 0;
  for (let px = 0; px < 32; px++) {
    if (!maskArr[px]) continue;
    n++;
    for (let c = 0; c < 3; c++) sum += (a[px * 3 + c] - b[px * 3 + c]) ** 2;
  }
  assertClose(mseConsistency(p, q, { mask }).dataSync()[0], sum / (n * 3), 1e-6);
  tf.dispose([p, q, mask]);
});

Deno.test("mseConsistency() gradients match finite differences on both sides", () => {
  const logits = tf.randomNormal([1, 2, 2, 3], 0, 1, "float32", 5);
  const q = randomProbs([1, 2, 2, 3], 6);
  const mask = tf.tensor4d([1, 0, 1, 1], [1, 2, 2, 1]);
  checkGradient((l) => mseConsistency(tf.softmax(l) as tf.Tensor4D, q, { mask }), logits);
  checkGradient((l) => mseConsistency(q, tf.softmax(l) as tf.Tensor4D), logits);
  tf.dispose([logits, q, mask]);
});

// ---------------------------------------------------------------------------------------------
// Entropy

Deno.test("meanEntropy() matches hand-computed values", () => {
  const p = tf.tensor4d([0.5, 0.5, 0.2, 0.8], [1, 1, 2, 2]);
  const h1 = Math.log(2);
  const h2 = -(0.2 * Math.log(0.2) + 0.8 * Math.log(0.8));
  assertClose(meanEntropy(p).dataSync()[0], (h1 + h2) / 2, 1e-6);
  tf.dispose(p);
});

Deno.test("meanEntropy() is log C for uniform maps and 0 for one-hot maps", () => {
  for (const c of [2, 3, 4, 7]) {
    const u = tf.fill([2, 3, 3, c], 1 / c) as tf.Tensor4D;
    assertClose(meanEntropy(u).dataSync()[0], Math.log(c), 1e-6, `C = ${c}`);
    const labels = tf.tensor1d(Array.from({ length: 18 }, (_, i) => i % c), "int32");
    const oneHot = tf.reshape(tf.cast(tf.oneHot(labels, c), "float32"), [2, 3, 3, c]);
    assertClose(meanEntropy(oneHot as tf.Tensor4D).dataSync()[0], 0, 1e-6, `C = ${c}`);
    tf.dispose([u, labels, oneHot]);
  }
});

Deno.test("meanEntropy() averages over the valid pixels of a mask only", () => {
  // A one-hot pixel (entropy 0) and a uniform one (entropy ln 3).
  const p = tf.tensor4d([1, 0, 0, 1 / 3, 1 / 3, 1 / 3], [1, 1, 2, 3]);
  assertClose(meanEntropy(p).dataSync()[0], Math.log(3) / 2, 1e-6);
  const keepUniform = tf.tensor4d([0, 1], [1, 1, 2, 1]);
  assertClose(meanEntropy(p, { mask: keepUniform }).dataSync()[0], Math.log(3), 1e-6);
  const keepOneHot = tf.tensor4d([1, 0], [1, 1, 2, 1]);
  assertClose(meanEntropy(p, { mask: keepOneHot }).dataSync()[0], 0, 1e-6);
  tf.dispose([p, keepUniform, keepOneHot]);
});

Deno.test("meanEntropy() gradient matches finite differences", () => {
  const logits = tf.randomNormal([1, 2, 2, 3], 0, 1, "float32", 7);
  const mask = tf.tensor4d([1, 1, 0, 1], [1, 2, 2, 1]);
  checkGradient((l) => meanEntropy(tf.softmax(l) as tf.Tensor4D), logits);
  checkGradient((l) => meanEntropy(tf.softmax(l) as tf.Tensor4D, { mask }), logits);
  tf.dispose([logits, mask]);
});

// ---------------------------------------------------------------------------------------------
// Plugins on a step context

Deno.test("plugin options are strict and have the documented defaults", () => {
  assert.deepEqual(mseOptions.parse({}), { stopGradient: "none", mask: true });
  assert.deepEqual(entropyMinOptions.parse({}), {
    includeTransformed: false,
    mask: true,
    eps: 1e-8,
  });
  assert.deepEqual(meanTeacherOptions.parse({}), {
    decay: 0.999,
    warmup: true,
    consistency: "mse",
    mask: true,
  });
  for (const schema of [mseOptions, entropyMinOptions, meanTeacherOptions]) {
    assert.equal(schema.safeParse({ nonsense: 1 }).success, false);
  }
  assert.equal(meanTeacherOptions.safeParse({ decay: 1.5 }).success, false);
  assert.equal(meanTeacherOptions.safeParse({ consistency: "l1" }).success, false);
  assert.equal(mseOptions.safeParse({ stopGradient: "both" }).success, false);
  assert.equal(mseRegularizer.id, "mse");
  assert.equal(entropyMinRegularizer.id, "entropy-min");
  assert.equal(meanTeacherRegularizer.id, "mean-teacher");
});

Deno.test("the mse plugin computes the masked MSE of p and q from the step context", () =>
  withStudent((model) => {
    const reg = mseRegularizer.create(mseOptions.parse({}), regularizerContext(model));
    const unmasked = mseRegularizer.create(
      mseOptions.parse({ mask: false }),
      regularizerContext(model),
    );
    assert.equal(reg.needsUnlabeled, true);
    tf.tidy(() => {
      const ctx = stepContext(model);
      assert.ok(ctx.validMask.min().dataSync()[0] === 0, "the test transform masks some pixels");
      const p = ctx.probsUnlabeled, q = ctx.probsTransformedBack;
      const expected = mseConsistency(p, q, { mask: ctx.validMask }).dataSync()[0];
      assertClose(reg.loss(ctx).dataSync()[0], expected, 1e-6);
      assertClose(unmasked.loss(ctx).dataSync()[0], mseConsistency(p, q).dataSync()[0], 1e-6);
    });
  }));

Deno.test("the mse plugin's stopGradient option blocks the chosen side", () =>
  withStudent((model) => {
    const rc = regularizerContext(model);
    tf.tidy(() => {
      const ctx = stepContext(model);
      const p = ctx.probsUnlabeled, q = ctx.probsTransformedBack;
      const gradsFor = (stop: "none" | "source" | "target") => {
        const reg = mseRegularizer.create(mseOptions.parse({ stopGradient: stop }), rc);
        return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          reg.loss({
            ...ctx,
            probsUnlabeled: a as tf.Tensor4D,
            probsTransformedBack: b as tf.Tensor4D,
          })
        )([p, q]).map((g) => tf.sum(tf.abs(g)).dataSync()[0]);
      };
      const [np, nq] = gradsFor("none");
      assert.ok(np > 0 && nq > 0);
      const [sp, sq] = gradsFor("source");
      assert.equal(sp, 0);
      assertClose(sq, nq, 1e-6);
      const [tp, tq] = gradsFor("target");
      assertClose(tp, np, 1e-6);
      assert.equal(tq, 0);
    });
  }));

Deno.test("the entropy-min plugin computes H(p), and H(p) + masked H(q) when asked", () =>
  withStudent((model) => {
    const plain = entropyMinRegularizer.create(
      entropyMinOptions.parse({}),
      regularizerContext(model),
    );
    const both = entropyMinRegularizer.create(
      entropyMinOptions.parse({ includeTransformed: true }),
      regularizerContext(model),
    );
    assert.equal(plain.needsUnlabeled, true);
    tf.tidy(() => {
      const ctx = stepContext(model);
      const hp = meanEntropy(ctx.probsUnlabeled).dataSync()[0];
      const hq = meanEntropy(ctx.probsTransformedBack, { mask: ctx.validMask }).dataSync()[0];
      assert.ok(hp > 0 && hp <= Math.log(C) + 1e-6);
      assertClose(plain.loss(ctx).dataSync()[0], hp, 1e-6);
      assertClose(both.loss(ctx).dataSync()[0], hp + hq, 1e-6);
    });
  }));

// ---------------------------------------------------------------------------------------------
// Mean teacher

Deno.test("the mean teacher starts as a non-trainable copy of the student named teacher/", () =>
  withStudent((model) => {
    const differs = makeModel("other", 99);
    assert.notDeepEqual(snapshot(differs), snapshot(model), "seeds 1 and 99 give other weights");
    differs.dispose();
    const mt = meanTeacherRegularizer.create(
      meanTeacherOptions.parse({}),
      regularizerContext(model),
    );
    assert.deepEqual(snapshot(mt.teacher), snapshot(model));
    assert.equal(mt.teacher.trainable.size, model.trainable.size);
    assert.equal(mt.teacher.state.size, model.state.size);
    for (const [name, v] of [...mt.teacher.trainable, ...mt.teacher.state]) {
      assert.ok(name.startsWith("teacher/"), name);
      assert.equal(v.trainable, false, `${name} is not trainable`);
    }
    for (const v of model.trainable.values()) assert.equal(v.trainable, true);
    assert.equal(mt.evaluationModel(), mt.teacher);
    const state = mt.stateTensors();
    assert.equal(state.size, model.trainable.size + model.state.size);
    assert.deepEqual(
      [...state.keys()].sort(),
      [...mt.teacher.trainable.keys(), ...mt.teacher.state.keys()].sort(),
    );
    mt.dispose();
    mt.dispose();
  }));

Deno.test("the mean teacher frees its teacher on dispose", () =>
  withStudent((model) => {
    const before = tf.memory().numTensors;
    const mt = meanTeacherRegularizer.create(
      meanTeacherOptions.parse({}),
      regularizerContext(model),
    );
    assert.ok(tf.memory().numTensors > before);
    mt.dispose();
    assert.equal(tf.memory().numTensors, before);
    // The names are free again.
    meanTeacherRegularizer.create(meanTeacherOptions.parse({}), regularizerContext(model))
      .dispose();
  }));

Deno.test("a second mean teacher whose teacher cannot be built leaves the first intact", () =>
  withStudent((model) => {
    // The trainer's createModel refuses a taken name (tests/lifetimes_test.ts); this one
    // fails in tfjs's variable registry instead.
    const rc = regularizerContext(model);
    const mt = meanTeacherRegularizer.create(meanTeacherOptions.parse({}), rc);
    assert.throws(
      () => meanTeacherRegularizer.create(meanTeacherOptions.parse({}), rc),
      /already registered/,
    );
    // The first one is intact.
    assert.deepEqual(snapshot(mt.teacher), snapshot(model));
    mt.dispose();
  }));

Deno.test("the mean-teacher loss compares T^-1 student(T x) with the teacher's prediction of x", () =>
  withStudent((model) => {
    const rc = regularizerContext(model);
    const mse = meanTeacherRegularizer.create(meanTeacherOptions.parse({}), rc);
    const teacher = mse.teacher;
    // Make the teacher differ from the student so that the loss is not trivially about p vs q.
    for (const v of teacher.trainable.values()) {
      v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.3, "float32", 3))));
    }
    tf.tidy(() => {
      const ctx = stepContext(model);
      const target = tf.softmax(teacher.apply(ctx.xUnlabeled, { training: false })) as tf.Tensor4D;
      const q = ctx.probsTransformedBack;
      const expected = mseConsistency(q, target, { mask: ctx.validMask }).dataSync()[0];
      assert.ok(expected > 0);
      assertClose(mse.loss(ctx).dataSync()[0], expected, 1e-6);
      // Not the student's own p: the teacher is the target.
      const own = mseConsistency(q, ctx.probsUnlabeled, { mask: ctx.validMask }).dataSync()[0];
      assert.ok(Math.abs(own - expected) > 1e-6);
    });
    // The KL form: KL(teacher(x) || T^-1 student(T x)), with and without the mask, on the same
    // teacher weights (the instances' teachers are replaced by copies of `teacher`).
    mse.dispose();
    for (const mask of [true, false]) {
      const kl = meanTeacherRegularizer.create(
        meanTeacherOptions.parse({ consistency: "kl", mask }),
        rc,
      );
      tf.tidy(() => {
        const ctx = stepContext(model);
        const target = tf.softmax(kl.teacher.apply(ctx.xUnlabeled)) as tf.Tensor4D;
        const m = mask ? ctx.validMask : undefined;
        const expected = klConsistency(target, ctx.probsTransformedBack, { mask: m }).dataSync()[0];
        assertClose(kl.loss(ctx).dataSync()[0], expected, 1e-6);
      });
      kl.dispose();
    }
  }));

/** Closed form of the teacher after K steps: `sum_t w_t s_t` over the history `s_0..s_K`. */
function closedFormEma(history: Float32Array[], alphas: number[]): Float64Array {
  const k = alphas.length;
  const out = new Float64Array(history[0].length);
  for (let t = 0; t <= k; t++) {
    // s_0 is the copy made at creation; s_t (t >= 1) enters at step t with weight 1 - alpha_t.
    let w = t === 0 ? 1 : 1 - alphas[t - 1];
    for (let u = t + 1; u <= k; u++) w *= alphas[u - 1];
    for (let i = 0; i < out.length; i++) out[i] += w * history[t][i];
  }
  return out;
}

for (const { decay, warmup } of [{ decay: 0.8, warmup: true }, { decay: 0.9, warmup: false }]) {
  Deno.test(
    `the mean teacher equals the closed-form EMA of the student's history (decay ${decay}, ` +
      `warm-up ${warmup})`,
    () =>
      withStudent((model) => {
        const steps = 7;
        const alphas = Array.from({ length: steps }, (_, t) => emaDecay(t + 1, decay, warmup));
        if (warmup) {
          // The warm-up rule, then the cap: 1/2, 2/3, 3/4, 0.8, 0.8, ...
          assertClose(alphas[0], 0.5, 1e-12);
          assertClose(alphas[1], 2 / 3, 1e-12);
          assertClose(alphas[6], 0.8, 1e-12);
        } else {
          assert.ok(alphas.every((a) => a === decay));
        }
        const mt = meanTeacherRegularizer.create(
          meanTeacherOptions.parse({ decay, warmup }),
          regularizerContext(model),
        );
        const vars = [...model.trainable, ...model.state];
        const history = new Map<string, Float32Array[]>();
        for (const [name, v] of vars) history.set(localName(name), [v.dataSync() as Float32Array]);
        const rng = new Rng(123);
        for (let it = 0; it < steps; it++) {
          for (const [name, v] of vars) {
            const values = Float32Array.from({ length: v.size }, () => rng.uniform(-2, 2));
            tf.tidy(() => v.assign(tf.tensor(values, v.shape)));
            history.get(localName(name))!.push(values);
          }
          mt.onStepEnd({ iteration: it, model });
        }
        const teacher = snapshot(mt.teacher);
        assert.equal(teacher.size, history.size);
        for (const [name, h] of history) {
          const expected = closedFormEma(h, alphas);
          const got = teacher.get(name)!;
          for (let i = 0; i < got.length; i++) {
            assertClose(got[i], expected[i], 1e-5, `${name}[${i}]`);
          }
        }
        mt.dispose();
      }),
  );
}

Deno.test("mean-teacher gradients reach the student's variables and never the teacher's", () =>
  withStudent((model) => {
    const mt = meanTeacherRegularizer.create(
      meanTeacherOptions.parse({}),
      regularizerContext(model),
    );
    for (const v of mt.teacher.trainable.values()) {
      v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.3, "float32", 4))));
    }
    const teacherBefore = snapshot(mt.teacher);
    const vars = [...model.trainable.values()];
    const x = tf.randomUniform([2, 8, 8, 1], 0, 1, "float32", 11) as tf.Tensor4D;
    const params = transform.sample(new Rng(12), 2, 8, 8);
    const withContext = (use: (ctx: StepContext) => tf.Scalar) => () =>
      tf.tidy(() => {
        const ctx = stepContext(model, 13);
        const xt = transform.apply(x, params);
        const q = transform.invert(
          tf.softmax(model.apply(xt, { training: false })) as tf.Tensor4D,
          params,
        );
        return use({
          ...ctx,
          xUnlabeled: x,
          xTransformed: xt,
          probsTransformedBack: q,
          validMask: transform.validMask(params, 8, 8),
          transformParams: params,
        });
      });
    const { value, grads } = tf.variableGrads(withContext((ctx) => mt.loss(ctx)), vars);
    assert.ok(value.dataSync()[0] > 0);
    assert.deepEqual(Object.keys(grads).sort(), [...model.trainable.keys()].sort());
    let nonZero = 0;
    for (const [name, g] of Object.entries(grads)) {
      const norm = tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]);
      assert.ok(Number.isFinite(norm), name);
      if (norm > 0) nonZero++;
    }
    assert.equal(nonZero, vars.length, `${nonZero} of ${vars.length} gradients are non-zero`);
    // The same gradients as with the teacher's prediction as a constant target.
    const target = tf.tidy(() => tf.softmax(mt.teacher.apply(x, { training: false })));
    const reference = tf.variableGrads(
      withContext((ctx) =>
        mseConsistency(ctx.probsTransformedBack, target as tf.Tensor4D, { mask: ctx.validMask })
      ),
      vars,
    );
    assertClose(value.dataSync()[0], reference.value.dataSync()[0], 1e-6);
    for (const [name, g] of Object.entries(grads)) {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, reference.grads[name]))).dataSync()[0]);
      assert.ok(d < 1e-6, `${name}: max difference ${d}`);
    }
    // Over every registered trainable variable (no list), the teacher's still get nothing.
    const all = tf.variableGrads(withContext((ctx) => mt.loss(ctx)));
    for (const name of [...mt.teacher.trainable.keys(), ...mt.teacher.state.keys()]) {
      assert.ok(all.grads[name] == null, `${name} got a gradient`);
    }
    // Even when asked for explicitly, the teacher's weights get zero gradient (stopGradient).
    const teacherVars = [...mt.teacher.trainable.values()];
    for (const v of teacherVars) v.trainable = true;
    const forced = tf.variableGrads(withContext((ctx) => mt.loss(ctx)), teacherVars);
    for (const v of teacherVars) v.trainable = false;
    for (const [name, g] of Object.entries(forced.grads)) {
      assert.equal(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]), 0, `${name} got a gradient`);
    }
    assert.deepEqual(snapshot(mt.teacher), teacherBefore, "the loss left the teacher unchanged");
    tf.dispose([value, x, target, reference.value, all.value, forced.value]);
    tf.dispose(Object.values(grads));
    tf.dispose(Object.values(reference.grads));
    tf.dispose(Object.values(all.grads));
    tf.dispose(Object.values(forced.grads));
    mt.dispose();
  }));

// ---------------------------------------------------------------------------------------------
// Leaks

Deno.test("the pure losses leak no tensors, with and without gradients", async () => {
  const p = randomProbs([2, 4, 4, 3], 21);
  const q = randomProbs([2, 4, 4, 3], 22);
  const mask = tf.tensor4d(Array.from({ length: 32 }, (_, i) => i % 2), [2, 4, 4, 1]);
  await assertNoLeak(() => {
    tf.dispose(mseConsistency(p, q, { mask }));
    tf.dispose(meanEntropy(p, { mask }));
    tf.dispose(tf.grad((l: tf.Tensor) => mseConsistency(tf.softmax(l) as tf.Tensor4D, q))(p));
    tf.dispose(tf.grad((l: tf.Tensor) => meanEntropy(tf.softmax(l) as tf.Tensor4D, { mask }))(p));
  });
  tf.dispose([p, q, mask]);
});

Deno.test("the mse and entropy-min plugins leak no tensors", () =>
  withStudent(async (model) => {
    const rc = regularizerContext(model);
    const regs = [
      mseRegularizer.create(mseOptions.parse({}), rc),
      mseRegularizer.create(mseOptions.parse({ stopGradient: "target", mask: false }), rc),
      entropyMinRegularizer.create(entropyMinOptions.parse({}), rc),
      entropyMinRegularizer.create(entropyMinOptions.parse({ includeTransformed: true }), rc),
    ];
    const ctx = stepContext(model);
    await assertNoLeak(() => {
      for (const reg of regs) tf.dispose(reg.loss(ctx));
    });
    tf.dispose(Object.values(ctx).filter((v) => v instanceof tf.Tensor) as tf.Tensor[]);
  }));

Deno.test("the mean teacher leaks no tensors in create, loss, gradients and onStepEnd", () =>
  withStudent(async (model) => {
    const rc = regularizerContext(model);
    await assertNoLeak(() => {
      meanTeacherRegularizer.create(meanTeacherOptions.parse({}), rc).dispose();
    });
    for (const consistency of ["mse", "kl"] as const) {
      const mt = meanTeacherRegularizer.create(meanTeacherOptions.parse({ consistency }), rc);
      const ctx = stepContext(model);
      let it = 0;
      await assertNoLeak(() => {
        tf.dispose(mt.loss(ctx));
        const { value, grads } = tf.variableGrads(
          () => tf.tidy(() => mt.loss(stepContext(model, 5, true))),
          [...model.trainable.values()],
        );
        tf.dispose([value, ...Object.values(grads)]);
        mt.onStepEnd({ iteration: it++, model });
      });
      tf.dispose(Object.values(ctx).filter((v) => v instanceof tf.Tensor) as tf.Tensor[]);
      mt.dispose();
    }
  }));
