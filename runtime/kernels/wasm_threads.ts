/**
 * Multithreading for the TensorFlow.js wasm backend under Deno.
 *
 * `@tensorflow/tfjs-backend-wasm` ships a threaded SIMD build (Emscripten pthreads, XNNPACK's
 * thread pool), but never uses it here: its `WASM_HAS_MULTITHREAD_SUPPORT` flag is hard-wired to
 * `false` whenever tfjs-core's `IS_NODE` is true, which it is under Deno (Deno defines
 * `process`). Forcing the flag is not enough: Emscripten, seeing `process`, takes its Node.js
 * path, replaces the global `Worker` by `worker_threads.Worker`, and hands it a `blob:` URL that
 * Node's (and Deno's) `worker_threads` refuse; the worker script itself would then also take the
 * Node.js path (`require`, `parentPort`).
 *
 * {@linkcode enableWasmThreads} makes it work with Deno's own web workers: during the backend's
 * initialisation the global `Worker` is a small adapter that gives Emscripten the Node.js-style
 * API it expects on the main thread (`on("message")`, `unref()`), and runs each pthread in a
 * module web worker whose bootstrap hides `process` (so that the worker side takes Emscripten's
 * web-worker path) and provides `importScripts` for the main script Emscripten sends as a Blob.
 * Shared `WebAssembly.Memory` and `WebAssembly.Module` cross to the workers by structured clone.
 *
 * @module
 */
import os from "node:os";
import { tf, tfWasm } from "../../deps.ts";
import { wasmBackendCreated } from "../tfjs_internals.ts";
import { markFixedSize, MAX_PAGES } from "./wasm_asm.ts";

/**
 * The bootstrap of each pthread worker (a module worker). It receives the `blob:` URL of
 * Emscripten's worker script in its own URL's hash, hides `process`, defines `importScripts`,
 * and serialises the incoming messages so that the asynchronous read of the main script (a
 * Blob) completes before the script's synchronous `importScripts` needs it. The queue starts
 * with the evaluation of Emscripten's worker script, which installs the message handler: a
 * message that arrived before it (the `load`) would otherwise find no handler and be dropped.
 */
const BOOTSTRAP = `
delete globalThis.process;
let mainScript = "";
let handler = null;
const workerScript = decodeURIComponent(location.hash.slice(1));
let queue = fetch(workerScript).then((r) => r.text()).then((text) => { (0, eval)(text); });
globalThis.importScripts = () => { (0, eval)(mainScript); };
Object.defineProperty(globalThis, "onmessage", {
  configurable: true,
  get: () => handler,
  set: (fn) => { handler = fn; },
});
globalThis.addEventListener("message", (e) => {
  queue = queue.then(async () => {
    const d = e.data;
    if (d && d.cmd === "load" && typeof d.urlOrBlob !== "string") {
      mainScript = await d.urlOrBlob.text();
    } else if (d && d.cmd === "load") {
      mainScript = await (await fetch(d.urlOrBlob)).text();
    }
    if (handler) handler(e);
  });
});
`;

let bootstrapUrl: string | null = null;

/** The pthread workers started and not yet terminated (each keeps the process alive). */
const live = new Set<PthreadWorker>();

/** Emscripten's view of a Node.js `worker_threads.Worker`, backed by a Deno web worker. */
class PthreadWorker {
  readonly #worker: Worker;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;

  constructor(url: string | URL) {
    bootstrapUrl ??= URL.createObjectURL(new Blob([BOOTSTRAP], { type: "text/javascript" }));
    this.#worker = new DenoWorker(`${bootstrapUrl}#${encodeURIComponent(String(url))}`, {
      type: "module",
    });
    live.add(this);
  }

  on(event: string, listener: (arg: unknown) => void): this {
    if (event === "message") {
      this.#worker.addEventListener("message", (e) => listener((e as MessageEvent).data));
    } else if (event === "error") {
      this.#worker.addEventListener("error", (e) => listener(e));
    }
    return this;
  }

  postMessage(message: unknown, transfer?: Transferable[]): void {
    this.#worker.postMessage(message, transfer ?? []);
  }

  terminate(): void {
    this.#worker.terminate();
    live.delete(this);
  }

  ref(): void {}
  unref(): void {}
}

const DenoWorker = globalThis.Worker;

/**
 * Terminate every pthread worker of the threaded build (a Deno web worker keeps the process
 * alive, and Emscripten's pool never ends them); returns how many there were. The threaded wasm
 * backend cannot run after this: `shutdownBackend` (`runtime/backend.ts`) removes it.
 */
export function terminatePthreadWorkers(): number {
  const n = live.size;
  for (const w of [...live]) w.terminate();
  return n;
}

let enabled: number | null = null;

/**
 * Make the next `tf.setBackend("wasm")` load the threaded SIMD build with `threads` threads
 * (the calling thread counts as one), of which XNNPACK's own pthread pool gets `xnnpackThreads`
 * (default: all; `initBackend` gives it 1 when this framework's kernels, which split their work on
 * the kernel pool of `wasm_pool.ts`, run the heavy work). Must be called before the wasm backend is
 * first initialised; returns false (and changes nothing) when that already happened, when
 * `threads` is below 2, or when this runtime lacks shared WebAssembly memory or SIMD.
 */
export function enableWasmThreads(threads: number, xnnpackThreads = threads): boolean {
  if (threads < 2) return false;
  if (enabled !== null) return enabled === threads;
  // Too late once the wasm backend exists (`tf.getBackend()` would itself initialise one).
  if (wasmBackendCreated()) return false;
  if (typeof SharedArrayBuffer === "undefined") return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    return false;
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  tfWasm.setThreadsCount(Math.max(1, Math.min(threads, xnnpackThreads)));
  enabled = threads;
  return true;
}

/**
 * Run `init` (the wasm backend's initialisation) with the global `Worker` replaced by the
 * pthread adapter, so that Emscripten's `global.Worker = worker_threads.Worker` has no effect
 * and its `new Worker(url)` makes a {@linkcode PthreadWorker}. Restores `Worker` afterwards.
 */
export async function withPthreadWorkers<T>(init: () => Promise<T>): Promise<T> {
  if (enabled === null) return await init();
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "Worker");
  // The backend caps its thread pool at half the logical cores (assuming two hyperthreads per
  // core), which Emscripten reads from `os.cpus()` on its Node.js path: report enough cores
  // for the requested count while the module initialises.
  const cpus = os.cpus;
  const wanted = enabled;
  const core = { model: "", speed: 0, times: { user: 0, nice: 0, sys: 0, idle: 0, irq: 0 } };
  os.cpus = () => Array.from({ length: 2 * wanted }, () => core);
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    get: () => PthreadWorker,
    set: () => {},
  });
  const Memory = WebAssembly.Memory;
  WebAssembly.Memory = fullSizeSharedMemory(Memory);
  try {
    return await init();
  } finally {
    if (descriptor) Object.defineProperty(globalThis, "Worker", descriptor);
    os.cpus = cpus;
    WebAssembly.Memory = Memory;
  }
}

/** Pages of the threaded build's heap: 4 GiB less one page (Emscripten keeps the heap's size
 * in 32 bits, so a heap of exactly 4 GiB reads as 0 and aborts). */
export const THREADED_HEAP_PAGES = MAX_PAGES - 1;

/** Shared memories made at their full size so far (tests check the threaded heap is one). */
let fullSize = 0;

/** Shared memories {@linkcode withPthreadWorkers} made at their full size. */
export function fullSizeMemoryCount(): number {
  return fullSize;
}

/**
 * `WebAssembly.Memory` for the threaded build's initialisation: the shared heap Emscripten asks
 * for (16 MiB, growable to 4 GiB) is made at its full size ({@linkcode THREADED_HEAP_PAGES}) from
 * the start, and cannot grow. The kernel modules then declare it so (`memoryImport` in
 * `wasm_asm.ts`) and are compiled without reloading its size before every access: V8 without a
 * trap handler (Deno) checks each access against the size, and reloads it for a shared memory
 * that may grow, which made the kernels 10-20 % slower on the threaded heap than on the unshared
 * one (docs/performance.md). The pages are reserved, not used: the process's resident memory
 * grows with what is written, as before. Where the full size cannot be had (a limit on virtual
 * memory), the heap is the growable one Emscripten asked for.
 */
function fullSizeSharedMemory(Memory: typeof WebAssembly.Memory): typeof WebAssembly.Memory {
  const make = function (descriptor: WebAssembly.MemoryDescriptor) {
    if (
      descriptor.shared && descriptor.maximum === MAX_PAGES &&
      descriptor.initial < THREADED_HEAP_PAGES
    ) {
      try {
        const pages = THREADED_HEAP_PAGES;
        const memory = new Memory({ ...descriptor, initial: pages, maximum: pages });
        markFixedSize(memory, pages);
        fullSize++;
        return memory;
      } catch {
        // no reservation of that size here: the growable heap
      }
    }
    return new Memory(descriptor);
  } as unknown as typeof WebAssembly.Memory;
  make.prototype = Memory.prototype;
  return make;
}
