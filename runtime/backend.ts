/**
 * Backend selection. `wasm` (the default) and `cpu` come from the npm registry alone;
 * `tensorflow` / `tensorflow-gpu` are `@tensorflow/tfjs-node(-gpu)`, imported only when asked
 * for and installed (they download libtensorflow at install time; importing one that is not
 * installed would fetch it and change `deno.lock`); `webgpu` is `@tensorflow/tfjs-backend-webgpu`
 * on Deno's built-in WebGPU (`webgpu.ts`), imported only when chosen.
 *
 * @module
 */
import { tf, tfWasm } from "../deps.ts";
import { UserError } from "../errors.ts";
import { registerWasmTrainingKernels } from "./kernels/wasm_training.ts";
import {
  enableWasmThreads,
  terminatePthreadWorkers,
  withPthreadWorkers,
} from "./kernels/wasm_threads.ts";
import { setKernelThreads, stopKernelThreads } from "./kernels/wasm_pool.ts";
import { installLowMemoryGradients, installSumGradient } from "./gradients.ts";
import { checkTfjsVersion, type KernelMode, setKernelMode } from "./tfjs_internals.ts";
import { registerAdamKernel } from "./kernels/adam.ts";
import { registerCpuFixes } from "./kernels/cpu_fixes.ts";
import { registerWebgpuTrainingKernels } from "./kernels/webgpu_training.ts";
import { describeAdapter, initWebgpu, probeAdapter, webgpuAvailable } from "./webgpu.ts";

/** Backends a recipe or the CLI can ask for. */
export const BACKENDS = ["auto", "wasm", "cpu", "tensorflow", "tensorflow-gpu", "webgpu"] as const;
/** One of {@linkcode BACKENDS}. */
export type BackendName = typeof BACKENDS[number];

const NODE_PACKAGES: Record<"tensorflow" | "tensorflow-gpu", string> = {
  "tensorflow": "@tensorflow/tfjs-node@4.22.0",
  "tensorflow-gpu": "@tensorflow/tfjs-node-gpu@4.22.0",
};

/** How to install tfjs-node(-gpu), shown when it cannot be loaded. */
export function installHint(name: "tensorflow" | "tensorflow-gpu"): string {
  const pkg = NODE_PACKAGES[name];
  return `Install it where libtensorflow can be downloaded: \`deno install --allow-scripts=npm:${pkg} npm:${pkg}\` ` +
    `(or \`npm install ${pkg}\` beside the project), then run with backend: ${name}. ` +
    `See README "Backends".`;
}

async function importNode(name: "tensorflow" | "tensorflow-gpu"): Promise<void> {
  // A computed specifier keeps Deno from fetching the package unless this backend is chosen.
  const specifier = ["npm:", NODE_PACKAGES[name]].join("");
  await import(specifier);
}

/** Options of {@linkcode initBackend}. */
export interface InitBackendOptions {
  /** Threads for wasm (only where the threaded build can run). */
  threads?: number;
  /** Whether `auto` may try tfjs-node(-gpu) first (when its binding is installed). @default {true} */
  probeNode?: boolean;
  /**
   * `custom`: the low-memory back-propagation, the fused Adam and batch-norm kernels and (on
   * wasm) the SIMD training kernels; `builtin`: tfjs's own gradients and kernels, plus (on
   * wasm) plain loops for the two kernels it lacks for training. For the whole process.
   * @default {"custom"}
   */
  kernels?: KernelMode;
  /** Where to say which WebGPU adapter was chosen or passed over (the run's first lines). */
  log?: (line: string) => void;
}

/**
 * Select and initialise a backend, returning the name tfjs reports (`wasm`, `cpu`,
 * `tensorflow`). On `wasm`, the training kernels it lacks are registered first. The custom
 * gradients and kernels (`options.kernels`) are installed here, not on import.
 */
export async function initBackend(
  name: BackendName,
  options: InitBackendOptions = {},
): Promise<string> {
  if (!BACKENDS.includes(name)) {
    throw new UserError(`Unknown backend "${name}"; known backends: ${BACKENDS.join(", ")}`);
  }
  const kernels = options.kernels ?? "custom";
  checkTfjsVersion();
  setKernelMode(kernels);
  if (kernels === "custom") {
    installLowMemoryGradients();
    installSumGradient();
    registerAdamKernel();
  }
  if (name === "tensorflow" || name === "tensorflow-gpu") {
    // Importing a package that is not installed would make Deno download it (tfjs-node pulls in
    // tfjs's whole union package) and write it into the project's deno.lock, only to fail on
    // the missing native binding: look for the binding first.
    if (!nodeBindingInstalled(name)) {
      throw new UserError(
        `Cannot use backend "${name}": ${NODE_PACKAGES[name]} is not installed (no native ` +
          `binding in ./node_modules or Deno's npm cache). ${installHint(name)}`,
      );
    }
    try {
      await importNode(name);
    } catch (error) {
      throw new UserError(
        `Cannot use backend "${name}": ${NODE_PACKAGES[name]} could not be loaded ` +
          `(${(error as Error).message.split("\n")[0]}). ${installHint(name)}`,
      );
    }
    await setBackend("tensorflow");
    return tf.getBackend();
  }
  if (name === "auto" && (options.probeNode ?? true)) {
    for (const n of ["tensorflow-gpu", "tensorflow"] as const) {
      if (!nodeBindingInstalled(n)) continue;
      try {
        await importNode(n);
        await setBackend("tensorflow");
        return tf.getBackend();
      } catch {
        // not installed: try the next one
      }
    }
  }
  if (name === "webgpu") {
    const adapter = await initWebgpu();
    if (kernels === "custom") registerWebgpuTrainingKernels();
    options.log?.(`backend webgpu | adapter ${describeAdapter(adapter)}`);
    return tf.getBackend();
  }
  if (name === "auto" && webgpuAvailable()) {
    // `auto` takes WebGPU only on a GPU: a software adapter (lavapipe) is slower than wasm.
    const adapter = await probeAdapter();
    if (adapter !== null && !adapter.software) {
      await initWebgpu();
      if (kernels === "custom") registerWebgpuTrainingKernels();
      options.log?.(`backend auto -> webgpu | adapter ${describeAdapter(adapter)}`);
      return tf.getBackend();
    }
    options.log?.(
      adapter === null
        ? "backend auto -> wasm | no WebGPU adapter"
        : `backend auto -> wasm | WebGPU adapter ${describeAdapter(adapter)} is not a GPU`,
    );
  }
  const target = name === "auto" ? "wasm" : name;
  if (target === "wasm" && threadedWasmShutDown) {
    throw new UserError(
      "The threaded wasm backend was shut down (shutdownBackend) and cannot run again in this " +
        "process; start a new one",
    );
  }
  if (target === "wasm") {
    // With this framework's kernels the threads split the heavy work on the kernel pool
    // (wasm_pool.ts); XNNPACK keeps one thread for the small ops it still runs: its pthread pool
    // would wake a thread for each (a 128 px forward pass took 46 ms with 2 XNNPACK threads, 38
    // ms with 1, docs/performance.md).
    const threaded = options.threads !== undefined &&
      enableWasmThreads(options.threads, kernels === "custom" ? 1 : options.threads);
    if (options.threads !== undefined && !threaded) tfWasm.setThreadsCount(options.threads);
    await withPthreadWorkers(() => setBackend("wasm"));
    registerWasmTrainingKernels({ replace: kernels === "custom" });
    setKernelThreads(threaded ? options.threads! : tfWasm.getThreadsCount());
  } else {
    await setBackend(target);
    if (target === "cpu") {
      registerCpuFixes();
      // tfjs's cpu backend advises installing tfjs-node on its first tensor in Deno / Node; for
      // `predict --backend cpu` and the tests that is noise (auto already takes tfjs-node)
      const cpu = tf.backend() as unknown as { firstUse?: boolean };
      if (typeof cpu.firstUse === "boolean") cpu.firstUse = false;
    }
  }
  return tf.getBackend();
}

let threadedWasmShutDown = false;

/**
 * End the threads the wasm backend started, so that the program can exit: with `threads` above
 * 1 its helper workers (this framework's kernel pool and the threaded build's pthreads) keep a
 * Deno process alive after its last line. Call it once, at the end of a program that imports
 * `mod.ts` and trained or predicted with threads (the command line ends with `Deno.exit`). A threaded
 * wasm backend is removed (its threads are gone; `initBackend("wasm")` then throws); any other
 * backend, and wasm without threads, stays usable. Returns the number of workers ended.
 *
 * @example
 * ```ts
 * import { initBackend, shutdownBackend } from "../mod.ts";
 * await initBackend("wasm", { threads: 2 });
 * // ... train, predict ...
 * shutdownBackend();
 * ```
 */
export function shutdownBackend(): number {
  const helpers = stopKernelThreads();
  const pthreads = terminatePthreadWorkers();
  if (pthreads > 0) {
    threadedWasmShutDown = true;
    if ("wasm" in tf.engine().registryFactory) {
      tf.removeBackend("wasm");
    }
  }
  return helpers + pthreads;
}

/**
 * Whether tfjs-node(-gpu)'s native binding is on disk (in `node_modules` beside the working
 * directory or in Deno's npm cache). `auto` imports the package only then: importing it where
 * it was never installed would make Deno download a package whose binding cannot work.
 */
export function nodeBindingInstalled(name: "tensorflow" | "tensorflow-gpu"): boolean {
  const [scope, rest] = NODE_PACKAGES[name].slice(1).split("/");
  const [pkg, version] = rest.split("@");
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  const home = env("HOME") ?? "";
  const denoDir = env("DENO_DIR") ?? `${env("XDG_CACHE_HOME") ?? `${home}/.cache`}/deno`;
  const roots = [
    `${Deno.cwd()}/node_modules/@${scope}/${pkg}`,
    `${denoDir}/npm/registry.npmjs.org/@${scope}/${pkg}/${version}`,
  ];
  for (const root of roots) {
    for (const napi of ["napi-v8", "napi-v9", "napi-v7", "napi-v6"]) {
      try {
        Deno.statSync(`${root}/lib/${napi}/tfjs_binding.node`);
        return true;
      } catch {
        // not here
      }
    }
  }
  return false;
}

async function setBackend(name: string): Promise<void> {
  if (tf.getBackend() === name) return;
  const ok = await tf.setBackend(name);
  if (!ok) throw new UserError(`Cannot initialise the ${name} backend`);
  await tf.ready();
}
