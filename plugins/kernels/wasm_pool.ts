/**
 * Runs the GEMM kernels of {@linkcode "./wasm_gemm.ts"} on parts of a range, on the calling
 * thread (and, where the backend's memory is shared, on helper workers).
 *
 * @module
 */
import type { GemmKernels } from "./wasm_gemm.ts";

/** Kernel names of {@linkcode parallelFor}. */
export type KernelKind = "fwd" | "fwd4" | "wgrad";

/** Helper workers in use (0: the calling thread does everything). */
export function workerCount(): number {
  return 0;
}

/** Run `kind` once per argument list (each a disjoint part of the work). */
export function parallelFor(kernels: GemmKernels, kind: KernelKind, parts: number[][]): void {
  const f = kind === "fwd"
    ? kernels.convForward
    : kind === "fwd4"
    ? kernels.convForward4
    : kernels.convFilterGrad;
  for (const args of parts) (f as (...a: number[]) => void)(...args);
}
