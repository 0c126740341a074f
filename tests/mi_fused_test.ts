/**
 * The fused mutual information (`runtime/kernels/mi_joint.ts`: the joints as one convolution
 * filter gradient; `mi_from_joint.ts`: the tail as one kernel and its gradient kernel) against
 * the composed one it replaces (`plugins/regularizers/_mi_composed.ts`, tfjs ops) on the `cpu`
 * backend: the value and the gradients in `p` and `q`, on the 96 cases of `_mi_cases.ts`
 * (radius 0-2, odd shapes, mask, symmetrisation, marginal weight, exact zeros); the same on
 * `wasm`; and which kernels each path runs. The webgpu kernels: `webgpu_mi_test.ts`.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import { kernelMode, setKernelMode } from "../runtime/tfjs_internals.ts";
import {
  mutualInformation,
  type MutualInformationOptions,
} from "../plugins/regularizers/mutual_information.ts";
import {
  miOfJointComposed,
  mutualInformationComposed,
} from "../plugins/regularizers/_mi_composed.ts";
import {
  miFromJoint,
  miFromJointAvailable,
  miFromJointGradValues,
  miFromJointValues,
} from "../runtime/kernels/mi_from_joint.ts";
import { miJoint } from "../runtime/kernels/mi_joint.ts";
import { MI_CASES, miErrors, type MiOutputs, miOutputs } from "./_mi_cases.ts";

const TOLERANCE = 1e-5;
const SEED = 7;

/** The composed reference, with the mask applied as `mutualInformation` does. */
function composed(p: tf.Tensor4D, q: tf.Tensor4D, o: MutualInformationOptions): tf.Scalar {
  return tf.tidy(() =>
    mutualInformationComposed(
      o.mask ? tf.mul(p, o.mask) : p,
      o.mask ? tf.mul(q, o.mask) : q,
      {
        radius: o.radius ?? 1,
        eps: o.eps ?? 1.1920929e-7,
        symmetrize: o.symmetrize ?? true,
        marginalWeight: o.marginalWeight ?? 1,
      },
    )
  );
}

await initBackend("cpu");
const reference: MiOutputs[] = [];
for (const k of MI_CASES) reference.push(await miOutputs(k, SEED, composed));

async function compareAll(backend: string): Promise<void> {
  let worst = 0;
  for (const [i, k] of MI_CASES.entries()) {
    const errors = miErrors(await miOutputs(k, SEED, mutualInformation), reference[i]);
    errors.forEach((e, j) =>
      assert.ok(
        e <= TOLERANCE,
        `${backend} ${k.name}: ${["value", "dp", "dq"][j]} relative error ${e.toExponential(2)}`,
      )
    );
    worst = Math.max(worst, ...errors);
  }
  console.log(
    `${backend}: ${MI_CASES.length} cases, largest relative error ${worst.toExponential(1)}`,
  );
}

Deno.test("the fused mutualInformation() matches the composed one on cpu: value, dp, dq", async () => {
  assert.equal(tf.getBackend(), "cpu");
  assert.ok(miFromJointAvailable());
  // the cases are not degenerate: a substantial MI, the clamp active where asked
  assert.ok(reference.every((r) => Math.abs(r.value) > 0.1), "an MI near zero tests little");
  await compareAll("cpu");
});

Deno.test("the fused mutualInformation() on wasm matches the composed one on cpu", async () => {
  await initBackend("wasm");
  try {
    assert.ok(miFromJointAvailable());
    await compareAll("wasm");
  } finally {
    await initBackend("cpu");
  }
});

Deno.test("the fused path runs one filter gradient and one tail kernel, nothing composed", async () => {
  const k = MI_CASES.find((c) => c.radius === 1 && c.mask)!;
  const info = await tf.profile(async () => {
    await miOutputs(k, SEED, mutualInformation);
  });
  const names = info.kernelNames;
  for (const name of ["Conv2DBackpropFilter", "MiSslMiFromJoint", "MiSslMiFromJointGrad"]) {
    assert.ok(names.includes(name), `${name} did not run: ${names}`);
  }
  for (const name of ["BatchMatMul", "Concat", "Slice", "Log", "Maximum", "Transpose"]) {
    assert.ok(!names.includes(name), `${name} ran: ${names}`);
  }
});

Deno.test("the tail's loops match the composed tail on joints with zeros and odd sizes", () => {
  // K = 5 joints 3 x 3, one with a zero row and column: independent of the filter gradient
  const k = 5, c = 3;
  const values = new Float32Array(k * c * c).map((_, i) => ((i * 7919) % 13) / 13);
  for (let j = 0; j < c; j++) values[2 * c * c + 2 * c + j] = values[2 * c * c + j * c + 2] = 0;
  for (const symmetrize of [true, false]) {
    for (const marginalWeight of [1, 0.5, 2]) {
      const o = { eps: 1.1920929e-7, symmetrize, marginalWeight };
      const joint = tf.tensor3d(values, [k, c, c]);
      const [want, wantGrad] = tf.tidy(() => {
        const { value, grad } = tf.valueAndGrad((j: tf.Tensor) =>
          tf.mul(miOfJointComposed(j, o), 3)
        )(joint);
        return [value.dataSync()[0], grad.dataSync() as Float32Array];
      });
      const got = miFromJointValues(values, k, c, o);
      const grad = new Float32Array(k * c * c);
      miFromJointGradValues(values, k, c, o, 3, grad);
      assert.ok(Math.abs(3 * got - want) <= 1e-6 * Math.abs(want), `value ${3 * got} vs ${want}`);
      const scale = Math.max(...wantGrad.map(Math.abs));
      grad.forEach((g, i) =>
        assert.ok(Math.abs(g - wantGrad[i]) <= 1e-5 * scale, `grad[${i}] ${g} vs ${wantGrad[i]}`)
      );
      joint.dispose();
    }
  }
});

Deno.test("miJoint() is the shifted joint: joint[ky, kx, j, i] = sum p_i(x) q_j(x + d)", () => {
  const [b, h, w, c, r] = [2, 4, 5, 2, 1];
  const pv = new Float32Array(b * h * w * c).map((_, i) => ((i * 31) % 17) / 17);
  const qv = new Float32Array(b * h * w * c).map((_, i) => ((i * 13) % 11) / 11);
  const at = (v: Float32Array, n: number, y: number, x: number, ch: number) =>
    v[((n * h + y) * w + x) * c + ch];
  const got = tf.tidy(() =>
    miJoint(tf.tensor4d(pv, [b, h, w, c]), tf.tensor4d(qv, [b, h, w, c]), r).arraySync()
  ) as number[][][][];
  for (let ky = 0; ky < 3; ky++) {
    for (let kx = 0; kx < 3; kx++) {
      for (let i = 0; i < c; i++) {
        for (let j = 0; j < c; j++) {
          let want = 0;
          for (let n = 0; n < b; n++) {
            for (let y = 0; y < h; y++) {
              for (let x = 0; x < w; x++) {
                const y2 = y + ky - r, x2 = x + kx - r;
                if (y2 < 0 || y2 >= h || x2 < 0 || x2 >= w) continue;
                want += at(pv, n, y, x, i) * at(qv, n, y2, x2, j);
              }
            }
          }
          const v = got[ky][kx][j][i];
          assert.ok(
            Math.abs(v - want) <= 1e-5 * (1 + want),
            `[${ky},${kx},${j},${i}] ${v} ${want}`,
          );
        }
      }
    }
  }
});

Deno.test("with kernels: builtin, mutualInformation() composes tfjs ops (the reference)", async () => {
  const k = MI_CASES.find((c) => c.radius === 1 && !c.mask)!;
  setKernelMode("builtin");
  try {
    assert.equal(kernelMode(), "builtin");
    assert.ok(!miFromJointAvailable());
    const info = await tf.profile(async () => {
      await miOutputs(k, SEED, mutualInformation);
    });
    assert.ok(info.kernelNames.includes("BatchMatMul"), `${info.kernelNames}`);
    assert.ok(!info.kernelNames.includes("MiSslMiFromJoint"), `${info.kernelNames}`);
  } finally {
    await initBackend("cpu");
  }
  assert.equal(kernelMode(), "custom");
});

// the fused op itself on a joint tensor (the kernel, not only the loops)
Deno.test("miFromJoint() runs the kernel and equals its loops", () => {
  const values = new Float32Array(2 * 4 * 4).map((_, i) => 1 + (i % 5));
  const o = { eps: 1.1920929e-7, symmetrize: false, marginalWeight: 1 };
  const got = tf.tidy(() => miFromJoint(tf.tensor3d(values, [2, 4, 4]), o).dataSync()[0]);
  assert.ok(Math.abs(got - miFromJointValues(values, 2, 4, o)) <= 1e-7);
});
