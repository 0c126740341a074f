/**
 * Runs the kernels of {@linkcode "./wasm_gemm.ts"} (GEMMs, gathers, and through its `call_batch`
 * any list of its functions: the batch-norm sweeps, ...), and the strided row copies of
 * {@linkcode "./wasm_misc.ts"} (row copies, x2 upsampling, max-pool gradient, bias addition), on parts of a range:
 * on the calling thread and, where the wasm backend's memory is shared (its threaded build, see
 * `wasm_threads.ts`), on helper workers that instantiate the same modules on the same memory.
 *
 * A helper waits (`Atomics.wait`) on a small control block in the shared heap; the calling
 * thread writes the job's parts (argument lists) into a table in the shared heap, bumps each
 * helper's job counter, and then every thread, the calling one included, claims the next part
 * with an atomic increment until none is left; the calling thread finally waits until the
 * helpers that took the job have signalled it done, and calls it off for a helper that has not
 * woken yet (a compare-exchange on the job's state: the helper then skips it). A thread that
 * starts late (a helper waking from sleep) or runs slower simply takes fewer parts. Each part
 * writes disjoint memory, so the result does not depend on which thread ran which part.
 *
 * Every wait passes `Atomics.wait` the very value it has just checked (one atomic load): a wait
 * that re-reads the counter for its expected value can sleep on a counter the helper has already
 * advanced between the check and the read, and then no notification ever comes. That lost
 * wake-up is what hung `threads: 2` runs (issue 15; `docs/performance.md`). A helper whose
 * kernel throws reports it in its control block, and a helper that makes no progress for
 * {@linkcode STALL_SLICES} seconds of waiting ends the wait with an error instead of a hang.
 *
 * @module
 */
import { isShared } from "./wasm_asm.ts";
import type { GemmKernels } from "./wasm_gemm.ts";
import { miscKernelsForMemory, miscModuleFor } from "./wasm_misc.ts";

/** Kernel names of {@linkcode parallelFor}. */
export type KernelKind =
  | "fwd"
  | "fwd4"
  | "wgrad"
  | "wgradAny"
  | "wgradRows"
  | "gather"
  | "batch"
  | "copy"
  | "up2"
  | "maxPool2Grad"
  | "addBias"
  | "mulBias";

const KINDS: KernelKind[] = [
  "fwd",
  "fwd4",
  "wgrad",
  "wgradAny",
  "wgradRows",
  "gather",
  "batch",
  "copy",
  "up2",
  "maxPool2Grad",
  "addBias",
  "mulBias",
];
// The GEMM module's kernels, then those of the data-movement module (`wasm_misc.ts`).
const EXPORTS = [
  "conv_fwd",
  "conv_fwd4",
  "conv_wgrad",
  "conv_wgrad_any",
  "conv_wgrad_rows",
  "gather_rows",
  "call_batch",
];
const MISC_EXPORTS = ["copy_rows", "up2", "max_pool2_grad", "add_bias", "mul_bias"];

// Control block (int32 slots) per helper: 0 job counter (-1: stop), 1 done counter, 2 ready,
// 3 kernel, 4 parts table (its heap address), 5 error (1: the job's kernel threw), 6 parts the
// helper ran in its last job, 7 state of the last job posted (below), 8 its number.
const SLOTS = 16;
const STATE = 7;
const JOB = 8;
// Posted: the helper may take it; running: the helper took it (the calling thread waits for
// it to be done); called off: the calling thread ran every part before the helper woke (it does
// not wait, and the helper, when it wakes, skips the job).
const POSTED = 1, RUNNING = 2, CALLED_OFF = 3;
/** Most arguments of one part. */
const MAX_ARGS = 26;
// Parts table (int32): 0 next part to claim, 1 part count, then one row per part: argument
// count, arguments.
const ROW = MAX_ARGS + 1;
const TABLE_HEAD = 2;
/** Parts one table holds; a job with more runs in rounds of this many. */
const TABLE_PARTS = 512;

/**
 * Milliseconds a thread of the pool spins (checks its counter without sleeping) before it sleeps
 * in `Atomics.wait`: the helper after each job, the calling thread before waiting for a helper.
 * A job posted to a sleeping helper cost ~50 us here (its wake-up, then the caller's), ~1.7 us
 * to a spinning one; a training step posts a few hundred (docs/performance.md).
 */
const SPIN_MS = 0.1;

/** One-second waits without progress after which a helper counts as stalled. */
export const STALL_SLICES = 300;

const HELPER = `
self.onmessage = (e) => {
  const { memory, module, ctrl, names, misc, miscNames } = e.data;
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const fns = names.map((n) => instance.exports[n]);
  if (misc !== null) {
    const miscInstance = new WebAssembly.Instance(misc, { env: { memory } });
    for (const n of miscNames) fns.push(miscInstance.exports[n]);
  }
  const c = new Int32Array(memory.buffer, ctrl, ${SLOTS});
  Atomics.store(c, 2, 1);
  let seen = 0;
  for (;;) {
    // Spin a little before sleeping: the next job of a step usually comes within microseconds,
    // and a wake-up from Atomics.wait costs tens of them.
    const until = performance.now() + ${SPIN_MS};
    while (Atomics.load(c, 0) === seen && performance.now() < until);
    // \`seen\` is the last count acted on: the wait returns at once when a newer job is posted.
    Atomics.wait(c, 0, seen);
    const posted = Atomics.load(c, 0);
    if (posted < 0) break;
    if (posted === seen) continue;
    seen = posted;
    // Take the job posted last unless the calling thread has called it off (it ran every part
    // itself before this thread woke); its number is in slot ${JOB}.
    if (Atomics.compareExchange(c, ${STATE}, ${POSTED}, ${RUNNING}) !== ${POSTED}) continue;
    const job = c[${JOB}];
    const fn = fns[c[3]];
    const t = new Int32Array(memory.buffer, c[4], ${TABLE_HEAD});
    const n = t[1];
    let ran = 0;
    try {
      for (;;) {
        const k = Atomics.add(t, 0, 1);
        if (k >= n) break;
        const row = new Int32Array(memory.buffer, c[4] + 4 * (${TABLE_HEAD} + k * ${ROW}), ${ROW});
        const args = [];
        for (let i = 1; i <= row[0]; i++) args.push(row[i]);
        fn(...args);
        ran++;
      }
    } catch (error) {
      // the parts not yet claimed are left to the calling thread
      Atomics.store(c, 5, 1);
      console.error("wasm kernel helper:", error);
    }
    c[6] = ran;
    Atomics.store(c, 1, job);
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
  /** Heap address of the parts table (0 without helpers). */
  table: number;
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
  const misc = miscModuleFor(kernels.memory);
  let table = 0;
  if (wanted > 0 && isShared(kernels.memory)) {
    table = malloc(4 * (TABLE_HEAD + TABLE_PARTS * ROW));
    const url = URL.createObjectURL(new Blob([HELPER], { type: "text/javascript" }));
    for (let k = 0; k < wanted; k++) {
      const ctrl = malloc(SLOTS * 4);
      const view = new Int32Array(kernels.memory.buffer, ctrl, SLOTS);
      view.fill(0);
      const worker = new Worker(url, { type: "module" });
      worker.postMessage({
        memory: kernels.memory,
        module: kernels.module,
        ctrl,
        names: EXPORTS,
        misc,
        miscNames: MISC_EXPORTS,
      });
      helpers.push({ worker, ctrl: view, job: 0 });
    }
  }
  return { memory: kernels.memory, helpers, table };
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

/**
 * Stop the helper workers (they keep the process alive otherwise); returns how many there were.
 * Kernels then run all their parts on the calling thread (until `ensurePool` starts new helpers
 * for a new memory).
 */
export function stopKernelThreads(): number {
  if (pool === null) return 0;
  const n = pool.helpers.length;
  for (const h of pool.helpers) {
    Atomics.store(h.ctrl, 0, -1);
    Atomics.notify(h.ctrl, 0);
  }
  pool = null;
  return n;
}

let helperParts = 0;
let splitParts = 0;

/**
 * Parts of the jobs shared with helpers so far (tests check that a kernel's work was split: which
 * thread runs which part depends on timing, see {@linkcode helperPartCount}).
 */
export function splitPartCount(): number {
  return splitParts;
}

/** Parts run on helper workers so far (tests check that a kernel's work was split). */
export function helperPartCount(): number {
  return helperParts;
}

/**
 * Run `kind` once per argument list (each a disjoint part of the work), in parallel: the calling
 * thread and the ready helpers claim the parts in order, one at a time, until all have run.
 */
export function parallelFor(kernels: GemmKernels, kind: KernelKind, parts: number[][]): void {
  const f = ({
    fwd: kernels.convForward,
    fwd4: kernels.convForward4,
    wgrad: kernels.convFilterGrad,
    wgradAny: kernels.convFilterGradAny,
    wgradRows: kernels.convFilterGradRows,
    gather: kernels.gatherRows,
    batch: kernels.callBatch,
    copy: kind === "copy" ? miscKernelsForMemory(kernels.memory)!.copyRows : undefined,
    up2: kind === "up2" ? miscKernelsForMemory(kernels.memory)!.up2 : undefined,
    maxPool2Grad: kind === "maxPool2Grad"
      ? miscKernelsForMemory(kernels.memory)!.maxPool2Grad
      : undefined,
    addBias: kind === "addBias" ? miscKernelsForMemory(kernels.memory)!.addBias : undefined,
    mulBias: kind === "mulBias" ? miscKernelsForMemory(kernels.memory)!.mulBias : undefined,
  } as const)[kind] as (...a: number[]) => void;
  // (a part with more arguments than a table row holds keeps the whole job on this thread)
  const ready = pool === null || parts.length < 2 || parts.some((p) => p.length > MAX_ARGS)
    ? []
    : pool.helpers.filter((h) => Atomics.load(h.ctrl, 2) === 1);
  if (ready.length === 0) {
    for (const p of parts) f(...p);
    return;
  }
  if (parts.length <= TABLE_PARTS) return runRound(f, kind, ready, parts);
  for (let start = 0; start < parts.length; start += TABLE_PARTS) {
    runRound(f, kind, ready, parts.slice(start, start + TABLE_PARTS));
  }
}

/** One round of {@linkcode parallelFor}: at most `TABLE_PARTS` parts, shared with `ready`. */
function runRound(
  f: (...a: number[]) => void,
  kind: KernelKind,
  ready: Helper[],
  parts: number[][],
): void {
  const table = pool!.table, n = parts.length;
  const t = new Int32Array(pool!.memory.buffer, table, TABLE_HEAD + n * ROW);
  for (let k = 0; k < n; k++) {
    const o = TABLE_HEAD + k * ROW, args = parts[k];
    t[o] = args.length;
    for (let i = 0; i < args.length; i++) t[o + 1 + i] = args[i] | 0;
  }
  t[1] = n;
  Atomics.store(t, 0, 0);
  const busy = ready.slice(0, n - 1);
  splitParts += n;
  for (const h of busy) {
    h.ctrl[3] = KINDS.indexOf(kind);
    h.ctrl[4] = table;
    h.job++;
    h.ctrl[JOB] = h.job;
    // the state before the counter: a helper that sees the new count finds the job posted
    Atomics.store(h.ctrl, STATE, POSTED);
    Atomics.store(h.ctrl, 0, h.job);
    Atomics.notify(h.ctrl, 0);
  }
  let failure: unknown = null;
  try {
    for (;;) {
      const k = Atomics.add(t, 0, 1);
      if (k >= n) break;
      f(...parts[k]);
    }
  } catch (error) {
    failure = error;
  }
  // The helpers must be done before the table (and the kernel's buffers) can be reused; one that
  // has not woken yet is called off instead (a wake-up costs tens of microseconds, more than many
  // jobs take).
  for (const h of busy) {
    if (Atomics.compareExchange(h.ctrl, STATE, POSTED, CALLED_OFF) === POSTED) continue;
    try {
      waitDone(h, kind);
    } catch (error) {
      failure ??= error;
    }
    helperParts += h.ctrl[6];
  }
  if (failure !== null) throw failure;
}

/**
 * Wait until `h` has done its current job. The value `Atomics.wait` compares against is the one
 * just loaded: reading the counter a second time for it (as this pool once did) loses the
 * wake-up when the helper finishes between the two reads.
 */
function waitDone(h: Helper, kind: KernelKind): void {
  let idle = 0;
  const until = performance.now() + SPIN_MS;
  while (Atomics.load(h.ctrl, 1) !== h.job && performance.now() < until);
  for (;;) {
    const done = Atomics.load(h.ctrl, 1);
    if (done === h.job) break;
    if (Atomics.wait(h.ctrl, 1, done, 1000) === "timed-out" && ++idle >= STALL_SLICES) {
      throw new Error(
        `wasm kernel helper stalled: no progress on job ${h.job} (${kind}) for ${idle} s ` +
          `(control block: job ${Atomics.load(h.ctrl, 0)}, done ${Atomics.load(h.ctrl, 1)})`,
      );
    }
  }
  if (Atomics.load(h.ctrl, 5) !== 0) {
    Atomics.store(h.ctrl, 5, 0);
    throw new Error(`wasm kernel helper: the ${kind} kernel failed (see the error above)`);
  }
}
