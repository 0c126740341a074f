/**
 * Inputs and evaluations shared by the fused-loss tests (`fused_losses_test.ts` on cpu,
 * `_webgpu_loss_checks.ts` on webgpu): probability maps with exact zeros and values equal to
 * `eps`, logits, labels (some out of range) and masks (none, random 0/1, all zero, weights).
 */
import { tf } from "../deps.ts";
import { klConsistencyComposed } from "../plugins/regularizers/kl_consistency.ts";
import { klFused } from "../runtime/kernels/kl_fused.ts";
import { crossEntropyComposed } from "../plugins/losses/cross_entropy.ts";
import { softmaxCrossEntropyFused } from "../runtime/kernels/softmax_ce.ts";
import { softmaxFused } from "../runtime/kernels/softmax_fused.ts";

/** The clamp used by the cases. */
export const EPS = 1e-8;

/** What the cases evaluate: the KL consistency, the cross-entropy, the softmax. */
export type FusedLoss = "kl" | "ce" | "softmax";

/** A deterministic pseudo-random generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How a case masks its pixels. */
export type MaskKind = "none" | "binary" | "zero" | "weights";

/** Raw inputs of one case (plain arrays, so that every backend gets the same values). */
export interface LossCase {
  name: string;
  shape: number[];
  p: Float32Array;
  q: Float32Array;
  logits: Float32Array;
  labels: Int32Array;
  mask: Float32Array | null;
  /** The upstream gradient (the loss's weight in the step). */
  dy: number;
}

/** A case of `shape` (`[..., C]`): softmaxed maps with zeros and `eps` planted. */
export function lossCase(shape: number[], mask: MaskKind, seed: number): LossCase {
  const r = rng(seed);
  const c = shape[shape.length - 1];
  const n = shape.reduce((a, d) => a * d, 1);
  const pixels = n / c;
  const map = () => {
    const out = new Float32Array(n);
    for (let i = 0; i < pixels; i++) {
      let s = 0;
      for (let j = 0; j < c; j++) s += out[i * c + j] = Math.exp(6 * (r() - 0.5));
      for (let j = 0; j < c; j++) out[i * c + j] /= s;
      const k = Math.floor(r() * c);
      const roll = r();
      if (roll < 0.1) out[i * c + k] = 0;
      else if (roll < 0.2) out[i * c + k] = Math.fround(EPS);
      else if (roll < 0.25) out[i * c + k] = Math.fround(EPS) * 0.5;
    }
    return out;
  };
  const logits = new Float32Array(n).map(() => 8 * (r() - 0.5));
  const labels = new Int32Array(pixels).map(() => {
    const v = Math.floor(r() * (c + 1));
    return v === c ? (r() < 0.5 ? -1 : c) : v; // ~1 in c + 1 out of range: no one-hot
  });
  const m = mask === "none"
    ? null
    : new Float32Array(pixels).map(() =>
      mask === "zero" ? 0 : mask === "binary" ? (r() < 0.7 ? 1 : 0) : r() * 1.5
    );
  return {
    name: `[${shape}] mask ${mask}`,
    shape,
    p: map(),
    q: map(),
    logits,
    labels,
    mask: m,
    dy: 1.7,
  };
}

/** The cases: odd shapes, every kind of mask, one over 65,535 pixels. */
export function lossCases(large = true): LossCase[] {
  const out: LossCase[] = [];
  let seed = 1;
  for (const shape of [[2, 7, 5, 3], [3, 9, 11, 4], [1, 1, 1, 2]]) {
    for (const mask of ["none", "binary", "zero", "weights"] as MaskKind[]) {
      out.push(lossCase(shape, mask, seed++));
    }
  }
  if (large) {
    out.push(lossCase([2, 190, 181, 4], "binary", 99)); // 68,780 pixels
    out.push(lossCase([1, 300, 230, 2], "none", 98)); // 69,000 pixels
  }
  return out;
}

/**
 * The size of the terms of the mask's gradient, `loss / sum(mask)`: the gradient is their
 * difference, so float32 leaves errors of that size times 2^-24 even where it is 0.
 */
export function maskGradientScale(c: LossCase, loss: number): number {
  const s = c.mask === null ? 0 : c.mask.reduce((a, v) => a + v, 0);
  return Math.abs(loss) / Math.max(s, 1e-12);
}

/**
 * The smallest scale of each output of `loss` for one case: 0, except the softmax's gradient,
 * `dy y - sum(dy y) y`, a difference of terms of size `dy * max|w|` (the upstream gradient),
 * where float32 (tfjs's composition) leaves errors of that size times 2^-24.
 */
export function outputFloors(c: LossCase, loss: FusedLoss): number[] {
  if (loss !== "softmax") return [];
  return [0, c.dy * c.p.reduce((a, v) => Math.max(a, Math.abs(v)), 0)];
}

/**
 * `[loss, d/dp, d/dq]` (or `[loss, d/dlogits]`; with `withMaskGrad`, and `d/dmask` last) of
 * `dy * f` for one case, on the active backend, read asynchronously (webgpu cannot read
 * synchronously in Deno).
 */
export async function evaluate(
  c: LossCase,
  loss: FusedLoss,
  fused: boolean,
  withMaskGrad = false,
): Promise<Float32Array[]> {
  const outs = compute(c, loss, fused, withMaskGrad);
  const values = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(outs);
  return values;
}

function compute(
  c: LossCase,
  loss: FusedLoss,
  fused: boolean,
  withMaskGrad: boolean,
): tf.Tensor[] {
  return tf.tidy(() => {
    if (loss === "softmax") {
      // the probabilities, and the gradient of dy * sum(w softmax(l)) for weights w = p
      const logits = tf.tensor(c.logits, c.shape), w = tf.tensor(c.p, c.shape);
      const f = fused ? softmaxFused : (x: tf.Tensor) => tf.softmax(x);
      const g = tf.grad((l: tf.Tensor) => tf.mul(tf.sum(tf.mul(f(l), w)), c.dy))(logits);
      return [f(logits), g];
    }
    const mask = c.mask === null ? undefined : tf.tensor(c.mask, [...c.shape.slice(0, -1), 1]);
    const grads = (f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[]) => {
      const { value, grads } = tf.valueAndGrads((...ys: tf.Tensor[]) => tf.mul(f(...ys), c.dy))(
        xs,
      );
      return [value, ...grads];
    };
    if (loss === "kl") {
      const p = tf.tensor(c.p, c.shape), q = tf.tensor(c.q, c.shape);
      if (withMaskGrad && mask !== undefined) {
        return grads(
          (pp, qq, m) =>
            fused
              ? klFused(pp, qq, { eps: EPS, mask: m })
              : klConsistencyComposed(pp as tf.Tensor4D, qq as tf.Tensor4D, { eps: EPS, mask: m }),
          [
            p,
            q,
            mask,
          ],
        );
      }
      return grads(
        (pp, qq) =>
          fused
            ? klFused(pp, qq, { eps: EPS, mask })
            : klConsistencyComposed(pp as tf.Tensor4D, qq as tf.Tensor4D, { eps: EPS, mask }),
        [
          p,
          q,
        ],
      );
    }
    const logits = tf.tensor(c.logits, c.shape);
    const labels = tf.tensor(c.labels, c.shape.slice(0, -1), "int32");
    const m4 = mask as tf.Tensor4D | undefined;
    if (withMaskGrad && m4 !== undefined) {
      return grads(
        (l, m) =>
          fused
            ? softmaxCrossEntropyFused(l, labels, m)
            : crossEntropyComposed(l as tf.Tensor4D, labels as tf.Tensor3D, m as tf.Tensor4D),
        [
          logits,
          m4,
        ],
      );
    }
    return grads(
      (l) =>
        fused
          ? softmaxCrossEntropyFused(l, labels, m4)
          : crossEntropyComposed(l as tf.Tensor4D, labels as tf.Tensor3D, m4),
      [logits],
    );
  });
}

/**
 * Largest `|a - b|` over the largest `|b|` (or over `floor` where that is larger; 0 when both
 * are 0).
 */
export function relativeError(a: Float32Array, b: Float32Array, floor = 0): number {
  let diff = 0, scale = floor;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (Number.isNaN(diff) || a.length !== b.length) return Infinity;
  return scale === 0 ? diff : diff / scale;
}
