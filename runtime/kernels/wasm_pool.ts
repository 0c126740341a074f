/**
 * Runs the GEMM kernels of {@linkcode "./wasm_gemm.ts"} on parts of a range: on the calling
 * thread and, where the wasm backend's memory is shared (its threaded build, see
 * `wasm_threads.ts`), on helper workers that instantiate the same module on the same memory.
 *
 * A helper waits (`Atomics.wait`) on a small control block in the shared heap; the calling
 * thread writes a job (kernel and arguments), bumps the job counter, runs its own part, and
 * waits until the helpers have signalled the same counter as done. Each part writes disjoint
 * memory, so the result does not depend on which thread ran which part.
 *
 * @module
 */
import type { GemmKernels } from "./wasm_gemm.ts";

/** Kernel names of {@linkcode parallelFor}. */
export type KernelKind = "fwd" | "fwd4" | "wgrad" | "wgradAny" | "wgradRows";

const KINDS: KernelKind[] = ["fwd", "fwd4", "wgrad", "wgradAny", "wgradRows"];
const EXPORTS = ["conv_fwd", "conv_fwd4", "conv_wgrad", "conv_wgrad_any", "conv_wgrad_rows"];

// Control block (int32 slots) per helper: 0 job counter (-1: stop), 1 done counter, 2 ready,
// 3 kernel, 4 argument count, 5.. arguments.
const SLOTS = 32;
const MAX_ARGS = SLOTS - 5;

const HELPER = `
self.onmessage = (e) => {
  const { memory, module, ctrl, names } = e.data;
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const fns = names.map((n) => instance.exports[n]);
  const c = new Int32Array(memory.buffer, ctrl, ${SLOTS});
  Atomics.store(c, 2, 1);
  let seen = 0;
  for (;;) {
    Atomics.wait(c, 0, seen);
    seen = Atomics.load(c, 0);
    if (seen < 0) break;
    const args = [];
    for (let i = 0; i < c[4]; i++) args.push(c[5 + i]);
    fns[c[3]](...args);
    Atomics.store(c, 1, seen);
    Atomics.notify(c, 1);
  }
  self.close();
};
`;

interface Helper {
  worker: Worker;
  ctrl: Int32Array;
  job: number;
}

interface Pool {
  memory: WebAssembly.Memory;
  helpers: Helper[];
}

let pool: Pool | null = null;
let wanted = 0;

/**
 * Use `threads - 1` helper workers for the GEMM kernels (where the memory is shared); call
 * before the first kernel runs. `malloc` allocates the control blocks in the shared heap.
 */
export function setKernelThreads(threads: number): void {
  wanted = Math.max(0, Math.floor(threads) - 1);
}

function startPool(kernels: GemmKernels, malloc: (bytes: number) => number): Pool {
  const helpers: Helper[] = [];
  if (wanted > 0 && kernels.memory.buffer instanceof SharedArrayBuffer) {
    const url = URL.createObjectURL(new Blob([HELPER], { type: "text/javascript" }));
    for (let k = 0; k < wanted; k++) {
      const ctrl = malloc(SLOTS * 4);
      const view = new Int32Array(kernels.memory.buffer, ctrl, SLOTS);
      view.fill(0);
      const worker = new Worker(url, { type: "module" });
      worker.postMessage({ memory: kernels.memory, module: kernels.module, ctrl, names: EXPORTS });
      helpers.push({ worker, ctrl: view, job: 0 });
    }
  }
  return { memory: kernels.memory, helpers };
}

/** Helper workers ready to take work (0 before they started, or without shared memory). */
export function workerCount(): number {
  return pool === null ? wanted : pool.helpers.filter((h) => Atomics.load(h.ctrl, 2) === 1).length;
}

/** Make sure the helpers exist for `kernels` (they start asynchronously). */
export function ensurePool(kernels: GemmKernels, malloc: (bytes: number) => number): void {
  if (pool === null || pool.memory !== kernels.memory) {
    stopKernelThreads();
    pool = startPool(kernels, malloc);
  }
}

/** Stop the helper workers (they keep the process alive otherwise). */
export function stopKernelThreads(): void {
  if (pool === null) return;
  for (const h of pool.helpers) {
    Atomics.store(h.ctrl, 0, -1);
    Atomics.notify(h.ctrl, 0);
  }
  pool = null;
}

/** Run `kind` once per argument list (each a disjoint part of the work), in parallel. */
export function parallelFor(kernels: GemmKernels, kind: KernelKind, parts: number[][]): void {
  const f = ({
    fwd: kernels.convForward,
    fwd4: kernels.convForward4,
    wgrad: kernels.convFilterGrad,
    wgradAny: kernels.convFilterGradAny,
    wgradRows: kernels.convFilterGradRows,
  } as const)[kind] as (...a: number[]) => void;
  const ready = pool === null ? [] : pool.helpers.filter((h) => Atomics.load(h.ctrl, 2) === 1);
  const busy: Helper[] = [];
  // Parts 1.. go to the helpers first (one each), the calling thread takes part 0 and the rest.
  for (const h of ready) {
    const k = 1 + busy.length;
    if (k >= parts.length || parts[k].length > MAX_ARGS) break;
    const args = parts[k];
    h.ctrl[3] = KINDS.indexOf(kind);
    h.ctrl[4] = args.length;
    for (let i = 0; i < args.length; i++) h.ctrl[5 + i] = args[i] | 0;
    h.job++;
    Atomics.store(h.ctrl, 0, h.job);
    Atomics.notify(h.ctrl, 0);
    busy.push(h);
  }
  for (let k = 0; k < parts.length; k++) {
    if (k === 0 || k > busy.length) f(...parts[k]);
  }
  for (const h of busy) {
    while (Atomics.load(h.ctrl, 1) !== h.job) Atomics.wait(h.ctrl, 1, h.ctrl[1]);
  }
}
