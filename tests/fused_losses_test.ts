/**
 * The fused KL consistency (`runtime/kernels/kl_fused.ts`), softmax cross-entropy
 * (`softmax_ce.ts`) and softmax (`softmax_fused.ts`) on `cpu` against tfjs's composed ops:
 * values and gradients on odd shapes, every kind of mask, zeros and `eps` in the maps, labels out
 * of range, over 65,535 pixels; `kernels: builtin`, and `wasm`, keep the composed ops.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import {
  evaluate,
  type FusedLoss,
  lossCase,
  lossCases,
  maskGradientScale,
  outputFloors,
  relativeError,
} from "./_loss_cases.ts";
import { KL_GRAD_KERNEL, KL_MASKED_KERNEL, klFusedAvailable } from "../runtime/kernels/kl_fused.ts";
import { CE_GRAD_KERNEL, CE_KERNEL, softmaxCeAvailable } from "../runtime/kernels/softmax_ce.ts";
import {
  SOFTMAX_GRAD_KERNEL,
  SOFTMAX_KERNEL,
  softmaxFusedAvailable,
  softmaxLastAxis,
} from "../runtime/kernels/softmax_fused.ts";
import { klConsistency } from "../plugins/regularizers/kl_consistency.ts";
import { crossEntropy } from "../plugins/losses/cross_entropy.ts";

const TOL = 1e-5;
const cases = lossCases();

/** `got` against `want` output by output; `floors[i]`: the smallest scale of output `i`. */
function compare(label: string, got: Float32Array[], want: Float32Array[], floors: number[] = []) {
  assert.equal(got.length, want.length, label);
  got.forEach((g, i) => {
    const err = relativeError(g, want[i], floors[i]);
    assert.ok(err <= TOL, `${label}: output ${i} off by ${err.toExponential(2)} (relative)`);
  });
}

/** The cases of a loss: the softmax has no mask (the maps with one are the same logits). */
const casesOf = (loss: FusedLoss) =>
  loss === "softmax" ? cases.filter((c) => c.mask === null) : cases;

for (const loss of ["kl", "ce", "softmax"] as const) {
  Deno.test(`fused ${loss} matches tfjs's composed ops on cpu (values and gradients)`, async () => {
    await initBackend("cpu");
    for (const c of casesOf(loss)) {
      const want = await evaluate(c, loss, false);
      compare(`${loss} ${c.name}`, await evaluate(c, loss, true), want, outputFloors(c, loss));
    }
  });

  if (loss !== "softmax") {
    Deno.test(`fused ${loss}: the mask's gradient is the composed ops'`, async () => {
      await initBackend("cpu");
      for (const c of cases.filter((c) => c.mask !== null && c.shape[1] < 50)) {
        const want = await evaluate(c, loss, false, true);
        const floors = want.map((_, i) =>
          i === want.length - 1 ? maskGradientScale(c, want[0][0]) : 0
        );
        compare(`${loss} ${c.name}`, await evaluate(c, loss, true, true), want, floors);
      }
    });
  }
}

Deno.test("the losses fuse on cpu with custom, compose with builtin and on wasm", async () => {
  const c = lossCase([2, 3, 4, 3], "binary", 7);
  const kernels = async () => {
    const p = tf.tensor4d(c.p, c.shape as [number, number, number, number]);
    const q = tf.tensor4d(c.q, c.shape as [number, number, number, number]);
    const labels = tf.tensor3d(c.labels, [2, 3, 4], "int32");
    const mask = tf.tensor4d(c.mask!, [2, 3, 4, 1]);
    const info = await tf.profile(() => {
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.add(
          klConsistency(a as tf.Tensor4D, b as tf.Tensor4D, { mask }),
          tf.add(
            crossEntropy(a as tf.Tensor4D, labels),
            tf.sum(tf.mul(softmaxLastAxis(a), b)),
          ),
        )
      )([p, q]);
      tf.dispose(g);
    });
    tf.dispose([p, q, labels, mask]);
    return new Set(info.kernels.map((k) => k.name));
  };
  const composed = async () => {
    assert.ok(!klFusedAvailable() && !softmaxCeAvailable() && !softmaxFusedAvailable());
    const names = await kernels();
    assert.ok(!names.has(KL_MASKED_KERNEL) && !names.has(CE_KERNEL), [...names].join());
    assert.ok(names.has("Log") && names.has("OneHot") && names.has("Softmax"));
  };
  // wasm: the composed ops' element-wise kernels are faster there (runtime/kernels/fused_mean.ts)
  await initBackend("wasm", { kernels: "custom" });
  await composed();
  try {
    await initBackend("cpu", { kernels: "builtin" });
    await composed();
  } finally {
    await initBackend("cpu", { kernels: "custom" });
  }
  assert.ok(klFusedAvailable() && softmaxCeAvailable() && softmaxFusedAvailable());
  const custom = await kernels();
  const ours = [KL_MASKED_KERNEL, KL_GRAD_KERNEL, CE_KERNEL, CE_GRAD_KERNEL];
  for (const name of [...ours, SOFTMAX_KERNEL, SOFTMAX_GRAD_KERNEL]) {
    assert.ok(custom.has(name), `${name} not in ${[...custom]}`);
  }
  for (const name of ["Log", "OneHot", "Maximum", "Softmax"]) {
    assert.ok(!custom.has(name), `${name} ran with custom`);
  }
});
