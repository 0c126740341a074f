/**
 * The mutual information of `mutual_information.ts` composed from tfjs ops: the reference the
 * fused path is checked against, and what runs with `kernels: builtin` (and, for the tail, on a
 * backend without the fused `MiSslMiFromJoint` kernel).
 *
 * - {@linkcode shiftedJoint}: the joints of all displacements as one batched matrix product of
 *   `p` with the stack of the shifted `q`s (a pad, `(2r+1)^2` slices and a concat);
 * - {@linkcode miOfJointComposed}: symmetrise, normalise, clamp, marginals, `I_d`, mean over `d`
 *   (a dozen element-wise ops and reductions on the `[K, C, C]` joints).
 *
 * @module
 */
import { tf } from "../../deps.ts";

/** Options of the tail (the fields of `MutualInformationOptions` it uses, all resolved). */
export interface MiTailOptions {
  eps: number;
  symmetrize: boolean;
  marginalWeight: number;
}

/**
 * `joint[d][i][j] = sum_{b,x} p_i(x) q_j(x + d)` (zero outside the image) for the `K = (2r+1)^2`
 * displacements `d` in row-major order, as a `[K, C, C]` tensor.
 */
export function shiftedJoint(p: tf.Tensor4D, q: tf.Tensor4D, r: number): tf.Tensor3D {
  const [b, h, w, c] = p.shape;
  return tf.tidy(() => {
    const k = 2 * r + 1;
    const padded = r > 0 ? tf.pad(q, [[0, 0], [r, r], [r, r], [0, 0]]) : q;
    const shifted: tf.Tensor4D[] = [];
    for (let dy = -r; dy <= r; dy++) {
      for (let dx = -r; dx <= r; dx++) {
        shifted.push(tf.slice(padded, [0, r + dy, r + dx, 0], [b, h, w, c]));
      }
    }
    const n = b * h * w;
    const stack = tf.reshape(shifted.length === 1 ? shifted[0] : tf.concat(shifted, 3), [
      n,
      k * k * c,
    ]);
    // [C, K*C] -> [K, C, C]
    const prod = tf.matMul(tf.reshape(p, [n, c]), stack, true, false);
    return tf.transpose(tf.reshape(prod, [c, k * k, c]), [1, 0, 2]) as tf.Tensor3D;
  });
}

/**
 * The mean over `d` of `I_d = sum P_d (log P_d - w log rowsum - w log colsum)`, where `P_d` is
 * the joint `d` (`[K, C, C]`, or any shape whose last two axes are `C x C`) symmetrised (unless
 * `symmetrize` is false), normalised to sum 1 and clamped at `eps`.
 */
export function miOfJointComposed(joint: tf.Tensor, o: MiTailOptions): tf.Scalar {
  return tf.tidy(() => {
    const c = joint.shape[joint.shape.length - 1];
    let j = tf.reshape(joint, [-1, c, c]);
    if (o.symmetrize) j = tf.div(tf.add(j, tf.transpose(j, [0, 2, 1])), 2);
    j = tf.div(j, tf.sum(j, [1, 2], true));
    j = tf.maximum(j, o.eps);
    const pi = tf.sum(j, 2, true);
    const pj = tf.sum(j, 1, true);
    const wm = o.marginalWeight;
    const logMarginals = tf.add(tf.log(pi), tf.log(pj));
    const perD = tf.sum(
      tf.mul(j, tf.sub(tf.log(j), wm === 1 ? logMarginals : tf.mul(logMarginals, wm))),
      [1, 2],
    );
    return tf.mean(perD) as tf.Scalar;
  });
}

/**
 * The whole mutual information composed from tfjs ops (`mask` already applied to `p` and `q`):
 * {@linkcode miOfJointComposed} of {@linkcode shiftedJoint}.
 */
export function mutualInformationComposed(
  p: tf.Tensor4D,
  q: tf.Tensor4D,
  o: MiTailOptions & { radius: number },
): tf.Scalar {
  return tf.tidy(() => miOfJointComposed(shiftedJoint(p, q, o.radius), o));
}
