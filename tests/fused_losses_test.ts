/**
 * The fused KL consistency (`runtime/kernels/kl_fused.ts`) and softmax cross-entropy
 * (`runtime/kernels/softmax_ce.ts`) against tfjs's composed ops on `cpu`, and on `wasm` against
 * `cpu`: values and gradients on odd shapes, every kind of mask, zeros and `eps` in the maps,
 * labels out of range, over 65,535 pixels; `kernels: builtin` keeps the composed ops.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { setKernelMode } from "../runtime/tfjs_internals.ts";
import { evaluate, lossCase, lossCases, maskGradientScale, relativeError } from "./_loss_cases.ts";
import { klFusedAvailable } from "../runtime/kernels/kl_fused.ts";
import { softmaxCeAvailable } from "../runtime/kernels/softmax_ce.ts";

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

for (const loss of ["kl", "ce"] as const) {
  Deno.test(`fused ${loss} matches tfjs's composed ops on cpu (values and gradients)`, async () => {
    await initBackend("cpu");
    for (const c of cases) {
      compare(`${loss} ${c.name}`, evaluate(c, loss, true), evaluate(c, loss, false));
    }
  });

  Deno.test(`fused ${loss}: the mask's gradient is the composed ops'`, async () => {
    await initBackend("cpu");
    for (const c of cases.filter((c) => c.mask !== null && c.shape[1] < 50)) {
      const want = evaluate(c, loss, false, true);
      const floors = want.map((_, i) =>
        i === want.length - 1 ? maskGradientScale(c, want[0][0]) : 0
      );
      compare(`${loss} ${c.name}`, evaluate(c, loss, true, true), want, floors);
    }
  });

  Deno.test(`fused ${loss} on wasm matches cpu`, async () => {
    await initBackend("cpu");
    const want = cases.map((c) => evaluate(c, loss, false));
    await initBackend("wasm");
    cases.forEach((c, i) => compare(`${loss} wasm ${c.name}`, evaluate(c, loss, true), want[i]));
  });
}

Deno.test("the fused losses are used with kernels: custom and not with builtin", async () => {
  await initBackend("wasm");
  assert.ok(klFusedAvailable() && softmaxCeAvailable());
  const c = lossCase([2, 3, 4, 3], "binary", 7);
  const names = (f: () => void) => {
    const seen = new Set<string>();
    const engine = tf.engine() as unknown as {
      runKernel: (name: string, ...a: unknown[]) => unknown;
    };
    const original = engine.runKernel;
    engine.runKernel = function (name: string, ...a: unknown[]) {
      seen.add(name);
      return original.call(this, name, ...a);
    };
    try {
      f();
    } finally {
      engine.runKernel = original;
    }
    return seen;
  };
  const custom = names(() => evaluate(c, "kl", true === klFusedAvailable()));
  assert.ok(custom.has("MiSslKlConsistencyMasked") && custom.has("MiSslKlConsistencyGrad"));
  try {
    setKernelMode("builtin");
    assert.ok(!klFusedAvailable() && !softmaxCeAvailable());
  } finally {
    setKernelMode("custom");
  }
});
