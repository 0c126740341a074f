/**
 * The fused Adam update on the CPU: one sweep over a float32 variable on the backend's own arrays,
 * registered for `wasm` and `cpu` (the wasm training kernels replace it with a float32 SIMD sweep,
 * `wasm_adam.ts`; webgpu has its own WGSL version, `webgpu_adam.ts`). `Adam` in
 * core/optimizer.ts runs it when it is registered.
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernel, kernelMemory } from "../tfjs_internals.ts";

/** Kernel name of the fused Adam update (registered for `wasm` and `cpu` by `initBackend`). */
export const ADAM_KERNEL = "MiSslAdam";

/**
 * One Adam update of a float32 variable in one sweep, on the backend's own arrays: inputs
 * `w, g, m, v`, outputs `[w', m', v']`. The same arithmetic as the op-by-op path (in double
 * precision, rounded once), a dozen fewer kernels per variable. (The wasm training kernels
 * replace it with a float32 SIMD sweep split between the threads, `wasm_adam.ts`.)
 */
export function adamKernel(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { w, g, m, v } = args.inputs as Record<string, tf.TensorInfo>;
  const { stepSize, beta1, beta2, epsilon, c2, weightDecay } = args.attrs as Record<
    string,
    number
  >;
  const memory = kernelMemory(args.backend);
  const n = w.shape.reduce((a, d) => a * d, 1);
  const outs = [0, 1, 2].map(() => memory.alloc(w.shape));
  const view = memory.view;
  const wv = view(w), gv = view(g), mv = view(m), vv = view(v);
  const [w1, m1, v1] = outs.map(view);
  const a1 = 1 - beta1, a2 = 1 - beta2;
  for (let i = 0; i < n; i++) {
    const gi = weightDecay > 0 ? gv[i] + weightDecay * wv[i] : gv[i];
    const mi = beta1 * mv[i] + a1 * gi;
    const vi = beta2 * vv[i] + a2 * gi * gi;
    m1[i] = mi;
    v1[i] = vi;
    w1[i] = wv[i] - (mi / (Math.sqrt(vi / c2) + epsilon)) * stepSize;
  }
  return outs;
}

/**
 * Register the fused Adam update for `wasm` and `cpu` (idempotent). `initBackend` does, with
 * `kernels: custom` (the default); without it `Adam` (core/optimizer.ts) runs the same
 * arithmetic op by op.
 */
export function registerAdamKernel(): void {
  for (const backendName of ["wasm", "cpu"]) {
    addKernel({
      kernelName: ADAM_KERNEL,
      backendName,
      kernelFunc: adamKernel as unknown as tf.KernelFunc,
    });
  }
}
