/**
 * The cases the fused mutual information is checked on (`mi_fused_test.ts` on cpu and wasm,
 * `_webgpu_mi_checks.ts` on webgpu), and the numbers compared: the value and the gradients in
 * `p` and `q`, from seeded data, so that every backend sees the same inputs.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { MutualInformationOptions } from "../plugins/regularizers/mutual_information.ts";

/** One comparison. */
export interface MiCase {
  name: string;
  shape: [number, number, number, number];
  radius: number;
  mask: boolean;
  symmetrize: boolean;
  marginalWeight: number;
  /** The last class exactly zero in both maps, and a few one-hot pixels: the clamp is active. */
  zeros: boolean;
}

/** Every combination of radius, mask, symmetrisation, marginal weight and zeros, two shapes. */
export const MI_CASES: MiCase[] = (() => {
  const cases: MiCase[] = [];
  const shapes: [number, number, number, number][] = [[2, 7, 5, 3], [1, 9, 11, 4]];
  for (const shape of shapes) {
    for (const radius of [0, 1, 2]) {
      for (const mask of [false, true]) {
        for (const symmetrize of [true, false]) {
          for (const marginalWeight of [1, 0.5]) {
            for (const zeros of [false, true]) {
              cases.push({
                name: `${shape.join("x")} r${radius}${mask ? " mask" : ""}` +
                  `${symmetrize ? "" : " unsym"} w${marginalWeight}${zeros ? " zeros" : ""}`,
                shape,
                radius,
                mask,
                symmetrize,
                marginalWeight,
                zeros,
              });
            }
          }
        }
      }
    }
  }
  return cases;
})();

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Seeded `p`, `q` (correlated: a substantial MI) and mask values of a case, as plain arrays. */
export function miCaseData(k: MiCase, seed: number) {
  const r = rng(seed);
  const [b, h, w, c] = k.shape;
  const n = b * h * w;
  const p = new Float32Array(n * c), q = new Float32Array(n * c);
  const softmax = (logits: number[], out: Float32Array, at: number) => {
    const m = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - m));
    const s = e.reduce((a, v) => a + v, 0);
    e.forEach((v, i) => out[at + i] = v / s);
  };
  // blocky stripes of classes (neighbours agree: a substantial MI at every displacement), noise
  const classes = k.zeros ? c - 1 : c;
  for (let i = 0; i < n; i++) {
    const y = Math.floor(i / w) % h, x = i % w;
    const label = Math.floor(y / 3 + x / 2.5) % classes;
    const lp = Array.from({ length: c }, (_, j) => (j === label ? 4 : 0) + 3 * (r() - 0.5));
    const lq = lp.map((v) => v + 2 * (r() - 0.5));
    if (k.zeros) {
      // the last class never occurs (exact zeros); every 5th pixel of p one-hot
      lp[c - 1] = lq[c - 1] = -Infinity;
      if (i % 5 === 0) {
        for (let j = 0; j < c; j++) if (j !== label) lp[j] = -Infinity;
      }
    }
    softmax(lp, p, i * c);
    softmax(lq, q, i * c);
  }
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) mask[i] = r() < 0.7 ? 1 : 0;
  return { p, q, mask };
}

/** Outputs of {@linkcode miOutputs}. */
export interface MiOutputs {
  value: number;
  dp: Float32Array;
  dq: Float32Array;
}

/**
 * The value and both gradients of `mi` on the current backend, as plain arrays (read
 * asynchronously: webgpu cannot read synchronously in Deno).
 */
export async function miOutputs(
  k: MiCase,
  seed: number,
  mi: (p: tf.Tensor4D, q: tf.Tensor4D, o: MutualInformationOptions) => tf.Scalar,
): Promise<MiOutputs> {
  const d = miCaseData(k, seed);
  const [value, dp, dq] = tf.tidy(() => {
    const [b, h, w] = k.shape;
    const p = tf.tensor4d(d.p, k.shape), q = tf.tensor4d(d.q, k.shape);
    const options: MutualInformationOptions = {
      radius: k.radius,
      symmetrize: k.symmetrize,
      marginalWeight: k.marginalWeight,
      mask: k.mask ? tf.tensor4d(d.mask, [b, h, w, 1]) : undefined,
    };
    const f = (a: tf.Tensor, e: tf.Tensor) => mi(a as tf.Tensor4D, e as tf.Tensor4D, options);
    const { value, grads } = tf.valueAndGrads(f)([p, q]);
    return [value, grads[0], grads[1]];
  });
  try {
    return {
      value: (await value.data())[0],
      dp: Float32Array.from(await dp.data()),
      dq: Float32Array.from(await dq.data()),
    };
  } finally {
    tf.dispose([value, dp, dq]);
  }
}

/** Largest absolute difference over the largest absolute reference value. */
export function relError(got: Float32Array | number[], want: Float32Array | number[]): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return got.length !== want.length ? Infinity : diff / Math.max(scale, 1e-30);
}

/** `[value, dp, dq]` relative errors of `got` against `want`. */
export function miErrors(got: MiOutputs, want: MiOutputs): [number, number, number] {
  return [
    relError([got.value], [want.value]),
    relError(got.dp, want.dp),
    relError(got.dq, want.dq),
  ];
}
