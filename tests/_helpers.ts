import { tf } from "../deps.ts";
import { initBackend } from "../runtime/backend.ts";
import assert from "node:assert/strict";

/** Use the wasm backend (with our training kernels), once per test process. */
export async function useWasm(): Promise<void> {
  await initBackend("wasm");
}

/** Assert `actual` is within `tol` (absolute + relative) of `expected`. */
export function assertClose(actual: number, expected: number, tol = 1e-5, message = ""): void {
  const ok = Math.abs(actual - expected) <= tol * (1 + Math.abs(expected));
  assert.ok(ok, `${message} expected ${expected}, got ${actual} (tol ${tol})`);
}

/** Assert `fn` leaves no tensor behind (tfjs's expectNoLeakedTensors, run twice). */
export async function assertNoLeak(fn: () => unknown | Promise<unknown>): Promise<void> {
  await fn();
  const before = tf.memory().numTensors;
  await fn();
  await fn();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
}

/** A `[B, H, W, C]` random probability map from a seed. */
export function randomProbs(shape: [number, number, number, number], seed: number): tf.Tensor4D {
  return tf.tidy(() =>
    tf.softmax(tf.mul(tf.randomNormal(shape, 0, 1, "float32", seed), 2)) as tf.Tensor4D
  );
}
