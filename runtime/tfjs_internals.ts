/**
 * The one place that touches TensorFlow.js internals: the engine's `gradients` method (replaced
 * by the lower-memory back-propagation of `gradients.ts`), the kernel registry where a built-in
 * kernel is replaced (the wasm training kernels), and the wasm backend's heap (the SIMD kernels
 * of `kernels/`). It was written against tfjs 4.22.0 ({@linkcode TFJS_VERSION}).
 *
 * Every accessor checks what it reads. Where an internal is missing or has another shape (a
 * different tfjs version), the caller falls back to tfjs's own behaviour, and
 * {@linkcode warnFallback} says so once per kind on standard error, with what is lost (memory or
 * speed, never results). A version other than 4.22.0 is reported once too.
 *
 * The `kernels` switch of a recipe picks between the two modes (see {@linkcode setKernelMode}):
 * `custom` (the default) installs everything above; `builtin` restores tfjs's own gradients and
 * kernels (for debugging, and for comparing), adding only what a backend lacks for training.
 *
 * @module
 */
import { tf, tfWasm } from "../deps.ts";

/** The tfjs version this module was written for. */
export const TFJS_VERSION = "4.22.0";

/** `custom`: our gradients and kernels; `builtin`: tfjs's own wherever it has one. */
export type KernelMode = "custom" | "builtin";

/** The kernel modes a recipe can ask for. */
export const KERNEL_MODES: readonly KernelMode[] = ["custom", "builtin"];

const warned = new Set<string>();

/**
 * Say once per `key` (on standard error) that a custom path is not used and what that costs,
 * e.g. `warnFallback("wasm-heap", "the SIMD kernels", "convolutions run on tfjs's kernels (slower)")`.
 */
export function warnFallback(key: string, what: string, lost: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(`mi-ssl: ${what} unavailable (tfjs ${tf.version_core}); ${lost}`);
}

/** The fallback keys warned about so far (for tests). */
export function fallbackWarnings(): string[] {
  return [...warned].sort();
}

/**
 * Whether tfjs-core and the wasm backend are the version this module was written for; warns
 * once when they are not (everything still checks what it reads).
 */
export function checkTfjsVersion(): boolean {
  const core = tf.version_core;
  const wasm = tfWasm.version_wasm;
  if (core === TFJS_VERSION && wasm === TFJS_VERSION) return true;
  if (!warned.has("version")) {
    warned.add("version");
    console.warn(
      `mi-ssl: runtime/tfjs_internals.ts was written for tfjs ${TFJS_VERSION}, this is ` +
        `tfjs-core ${core} / tfjs-backend-wasm ${wasm}; the custom kernels and gradients are ` +
        `used only where the internals they need are found (set kernels: builtin to use ` +
        `tfjs's own throughout)`,
    );
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Mode

let mode: KernelMode = "custom";

/** The current kernel mode. */
export function kernelMode(): KernelMode {
  return mode;
}

/**
 * Switch the process to `next`. Switching to `builtin` restores tfjs's engine `gradients` and
 * every kernel registered or replaced through this module; `custom` only records the mode (the
 * backend's `initBackend` then installs the custom parts).
 */
export function setKernelMode(next: KernelMode): void {
  if (!KERNEL_MODES.includes(next)) throw new Error(`Unknown kernel mode "${next}"`);
  mode = next;
  if (next === "builtin") {
    restoreEngineGradients();
    restoreBuiltinKernels();
  }
}

// ---------------------------------------------------------------------------------------------
// Engine

/** A recorded operation of tfjs's gradient tape. */
export interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
}

/** The parts of tfjs's `Engine` that back-propagation uses. */
export interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T>(nameOrFn: string | (() => T), fn?: () => T): T;
  gradients: (...args: unknown[]) => unknown;
}

/** tfjs's engine with the internals back-propagation needs, or null (warned once). */
export function engineInternals(): EngineInternals | null {
  const engine = tf.engine() as unknown as Partial<EngineInternals>;
  const ok = typeof engine.scopedRun === "function" && typeof engine.startTape === "function" &&
    typeof engine.endTape === "function" && typeof engine.tidy === "function" &&
    typeof engine.gradients === "function" && typeof engine.state === "object" &&
    typeof engine.state.gradientDepth === "number";
  if (!ok) {
    warnFallback(
      "engine",
      "the engine internals of the low-memory back-propagation",
      "tfjs's own back-propagation runs (it keeps every saved tensor and intermediate " +
        "gradient until the end of the backward pass: more memory, the same results)",
    );
    return null;
  }
  return engine as EngineInternals;
}

const ORIGINAL_GRADIENTS = Symbol.for("mi-ssl.originalGradients");

/**
 * Replace `tf.engine().gradients` (what `tf.grad`, `tf.variableGrads`, ... call) with `gradients`
 * (called with the engine as `this`). Idempotent; returns false where the internals are missing.
 */
export function replaceEngineGradients(gradients: EngineInternals["gradients"]): boolean {
  const engine = engineInternals() as (EngineInternals & { [ORIGINAL_GRADIENTS]?: unknown }) | null;
  if (engine === null) return false;
  if (engine[ORIGINAL_GRADIENTS] !== undefined) return true;
  engine[ORIGINAL_GRADIENTS] = engine.gradients;
  engine.gradients = gradients;
  return true;
}

/** Whether `tf.engine().gradients` is the replacement. */
export function engineGradientsReplaced(): boolean {
  return (tf.engine() as unknown as { [ORIGINAL_GRADIENTS]?: unknown })[ORIGINAL_GRADIENTS] !==
    undefined;
}

/** Put tfjs's own `gradients` back (no-op when it was not replaced). */
export function restoreEngineGradients(): void {
  const engine = tf.engine() as unknown as {
    gradients: unknown;
    [ORIGINAL_GRADIENTS]?: EngineInternals["gradients"];
  };
  const original = engine[ORIGINAL_GRADIENTS];
  if (original === undefined) return;
  engine.gradients = original;
  delete engine[ORIGINAL_GRADIENTS];
}

// ---------------------------------------------------------------------------------------------
// Kernel registry

/** Kernels registered through this module, by `backend/name`: what was there before, if any. */
const registered = new Map<string, { config: tf.KernelConfig; original?: tf.KernelConfig }>();

/**
 * Register `config`, replacing the kernel tfjs has under that name and backend (kept as
 * {@linkcode originalKernel}, the fallback). Idempotent for the same kernel function.
 */
export function replaceKernel(config: tf.KernelConfig): void {
  const key = `${config.backendName}/${config.kernelName}`;
  const existing = tf.getKernel(config.kernelName, config.backendName);
  if (existing?.kernelFunc === config.kernelFunc) return;
  const ours = registered.get(key);
  const original = ours !== undefined && existing === ours.config ? ours.original : existing;
  if (existing !== undefined) tf.unregisterKernel(config.kernelName, config.backendName);
  const full: tf.KernelConfig = {
    setupFunc: original?.setupFunc,
    disposeFunc: original?.disposeFunc,
    ...config,
  };
  tf.registerKernel(full);
  registered.set(key, { config: tf.getKernel(config.kernelName, config.backendName)!, original });
}

/** Register `config` only where the backend has no kernel of that name. */
export function addKernel(config: tf.KernelConfig): void {
  if (tf.getKernel(config.kernelName, config.backendName) !== undefined) return;
  tf.registerKernel(config);
  registered.set(`${config.backendName}/${config.kernelName}`, {
    config: tf.getKernel(config.kernelName, config.backendName)!,
  });
}

/** {@linkcode addKernel} for each of `kernels` (kernel name to function) on `backendName`. */
export function addKernels(backendName: string, kernels: Record<string, unknown>): void {
  for (const [kernelName, kernelFunc] of Object.entries(kernels)) {
    addKernel({ kernelName, backendName, kernelFunc: kernelFunc as tf.KernelFunc });
  }
}

/** The kernel tfjs had under `name` before {@linkcode replaceKernel} replaced it. */
export function originalKernel(name: string, backendName: string): tf.KernelConfig | undefined {
  const ours = registered.get(`${backendName}/${name}`);
  if (ours !== undefined) return ours.original;
  return tf.getKernel(name, backendName);
}

/** Names (`backend/kernel`) of the kernels registered through this module. */
export function customKernels(): string[] {
  return [...registered.keys()].sort();
}

/** Unregister every kernel registered here, putting back what tfjs had before. */
export function restoreBuiltinKernels(): void {
  for (const [key, { config, original }] of registered) {
    const current = tf.getKernel(config.kernelName, config.backendName);
    if (current !== undefined) tf.unregisterKernel(config.kernelName, config.backendName);
    if (original !== undefined) tf.registerKernel(original);
    registered.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// Backend memory, for kernels written in JavaScript

/** Float32 data of a kernel's tensors, and new outputs, on one backend. */
export interface KernelMemory {
  /** A new float32 output (allocate outputs first: the wasm heap may move). */
  alloc(shape: number[]): tf.TensorInfo;
  /** The float32 values of a tensor, in place (a view on the wasm heap, the cpu array). */
  view(info: tf.TensorInfo): Float32Array;
}

/**
 * The memory of `backend` for kernels that loop over values in JavaScript: the wasm backend's
 * `makeOutput` / `typedArrayFromHeap`, else the cpu backend's `makeTensorInfo` and data map.
 */
export function kernelMemory(backend: unknown): KernelMemory {
  const b = backend as {
    makeOutput?: (shape: number[], dtype: string) => tf.TensorInfo;
    typedArrayFromHeap?: (info: tf.TensorInfo) => Float32Array;
    data?: { get(id: unknown): { values: Float32Array } };
    makeTensorInfo?: (shape: number[], dtype: string, values?: Float32Array) => tf.TensorInfo;
  };
  if (b.makeOutput && b.typedArrayFromHeap) {
    return {
      alloc: (shape) => b.makeOutput!(shape, "float32"),
      view: (info) => b.typedArrayFromHeap!(info),
    };
  }
  if (b.makeTensorInfo && b.data) {
    return {
      alloc: (shape) =>
        b.makeTensorInfo!(shape, "float32", new Float32Array(shape.reduce((a, d) => a * d, 1))),
      view: (info) => b.data!.get(info.dataId).values,
    };
  }
  throw new Error(
    `mi-ssl: no JavaScript access to the memory of the ${tf.getBackend()} backend ` +
      `(tfjs ${tf.version_core}); set kernels: builtin`,
  );
}

// ---------------------------------------------------------------------------------------------
// The wasm backend

/** The Emscripten module of the wasm backend, as far as the kernels use it. */
export interface WasmModule {
  asm?: { memory?: unknown };
  wasmMemory?: unknown;
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
}

/**
 * The wasm backend's Emscripten module and heap memory, or null (warned once) where they
 * cannot be found: the SIMD kernels then give way to tfjs's.
 */
export function wasmHeap(
  backend: unknown,
): { module: WasmModule; memory: WebAssembly.Memory } | null {
  const module = (backend as { wasm?: WasmModule } | null)?.wasm;
  const memory = module?.asm?.memory ?? module?.wasmMemory;
  if (module === undefined || !(memory instanceof WebAssembly.Memory)) {
    warnFallback(
      "wasm-heap",
      "the wasm backend's heap (its Emscripten module)",
      "the SIMD convolution, batch-norm and data-movement kernels give way to tfjs's own " +
        "(slower, the same results)",
    );
    return null;
  }
  return { module, memory };
}

/** Byte offset on the wasm heap of a tensor of the wasm backend. */
export function wasmOffset(backend: unknown, info: tf.TensorInfo): number {
  return (backend as { dataIdMap: { get(id: unknown): { memoryOffset: number } } })
    .dataIdMap.get(info.dataId).memoryOffset;
}

/** Whether the wasm backend has been created (its threading can no longer change). */
export function wasmBackendCreated(): boolean {
  const registry = (tf.engine() as unknown as { registry?: Record<string, unknown> }).registry;
  return registry?.wasm !== undefined;
}
