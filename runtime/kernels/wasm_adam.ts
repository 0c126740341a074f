/**
 * The fused Adam update (`adam.ts`) for the wasm backend as a float32 SIMD sweep split between
 * the threads.
 *
 * @module
 */
import { gemmKernels, type KernelCall, runCallLists } from "./wasm_conv.ts";
import { adamKernel } from "./adam.ts";
import type { Backend, KernelArgs, TensorInfo } from "./wasm_kernel_util.ts";
import { heapOffset, rowParts, sizeOf } from "./wasm_kernel_util.ts";

/** Floats per thread below which the Adam sweep stays on one thread. */
const ADAM_PER_PART = 1 << 16;

/**
 * The fused Adam update (`core/optimizer.ts`) as a float32 SIMD sweep of the kernel module
 * (`adam` / `adam_wd`), split between the threads; the last `n % 4` floats in JavaScript with
 * float32 rounding. Where the module does not run, the float64 JavaScript kernel. (That one took
 * ~9 ms of a 128 px base-16 step, 2.2 M parameters, on the main thread.)
 */
export function wasmAdam(args: KernelArgs): TensorInfo[] {
  const backend = args.backend as Backend;
  const { w, g, m, v } = args.inputs as Record<string, TensorInfo>;
  if (gemmKernels(backend) === null || [w, g, m, v].some((t) => t.dtype !== "float32")) {
    return adamKernel(args);
  }
  const a = args.attrs as Record<string, number>;
  const n = sizeOf(w.shape), n4 = n - (n % 4);
  const outs = [0, 1, 2].map(() => backend.makeOutput(w.shape, "float32"));
  const coef = backend.makeOutput([8], "float32");
  const c = [
    a.stepSize,
    a.beta1,
    1 - a.beta1,
    a.beta2,
    1 - a.beta2,
    a.c2,
    a.epsilon,
    a.weightDecay,
  ];
  (backend.typedArrayFromHeap(coef) as Float32Array).set(c);
  const offsets = [w, g, m, v, ...outs].map((t) => heapOffset(backend, t));
  const name = a.weightDecay > 0 ? "adam_wd" : "adam", co = heapOffset(backend, coef);
  runCallLists(
    backend,
    rowParts(backend, n4 / 4, ADAM_PER_PART / 4).map((
      [q0, q1],
    ): KernelCall[] => [[name, ...offsets, 4 * q0, 4 * q1, co]]),
  );
  backend.disposeData(coef.dataId);
  if (n4 < n) {
    // the tail, float32 operation by operation as the sweep
    const f = Math.fround, [step, b1, a1, b2, a2, c2, eps, wd] = c.map(f);
    const [wv, gv, mv, vv, w1, m1, v1] = [w, g, m, v, ...outs].map((t) =>
      backend.typedArrayFromHeap(t) as Float32Array
    );
    for (let i = n4; i < n; i++) {
      const gi = a.weightDecay > 0 ? f(gv[i] + f(wd * wv[i])) : gv[i];
      const mi = f(f(b1 * mv[i]) + f(a1 * gi));
      const vi = f(f(b2 * vv[i]) + f(f(a2 * gi) * gi));
      m1[i] = mi;
      v1[i] = vi;
      w1[i] = f(wv[i] - f(f(mi / f(f(Math.sqrt(f(vi / c2))) + eps)) * step));
    }
  }
  return outs;
}
