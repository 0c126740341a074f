/**
 * Small tensor operations tfjs-core does not ship.
 *
 * @module
 */
import { tf } from "../deps.ts";

const stop = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
}));

/**
 * The identity in the forward pass, no gradient in the backward pass (`torch.detach`).
 *
 * @example
 * ```ts
 * import { tf } from "../deps.ts";
 * import { stopGradient } from "./ops.ts";
 * const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(stopGradient(x), x)));
 * g(tf.tensor1d([3])); // [3], not [6]
 * ```
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return stop(x) as T;
}
