/**
 * Backend selection. `wasm` (the default) and `cpu` come from the npm registry alone;
 * `tensorflow` / `tensorflow-gpu` are `@tensorflow/tfjs-node(-gpu)`, imported only when asked
 * for, since they download libtensorflow at install time.
 *
 * @module
 */
import { tf } from "../deps.ts";
import "../deps.ts";
import { UserError } from "./errors.ts";
import { registerWasmTrainingKernels } from "../plugins/kernels/wasm_training.ts";

/** Backends a recipe or the CLI can ask for. */
export const BACKENDS = ["auto", "wasm", "cpu", "tensorflow", "tensorflow-gpu"] as const;
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
  /** Whether `auto` may try tfjs-node(-gpu) first. @default {true} */
  probeNode?: boolean;
}

/**
 * Select and initialise a backend, returning the name tfjs reports (`wasm`, `cpu`,
 * `tensorflow`). On `wasm`, the training kernels it lacks are registered first.
 */
export async function initBackend(
  name: BackendName,
  options: InitBackendOptions = {},
): Promise<string> {
  if (!BACKENDS.includes(name)) {
    throw new UserError(`Unknown backend "${name}"; known backends: ${BACKENDS.join(", ")}`);
  }
  if (name === "tensorflow" || name === "tensorflow-gpu") {
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
  if (name === "auto" && (options.probeNode ?? true) && Deno.env.get("MISSL_PROBE_TFJS_NODE") === "1") {
    for (const n of ["tensorflow-gpu", "tensorflow"] as const) {
      try {
        await importNode(n);
        await setBackend("tensorflow");
        return tf.getBackend();
      } catch {
        // not installed: try the next one
      }
    }
  }
  const target = name === "auto" ? "wasm" : name;
  if (target === "wasm") {
    if (options.threads !== undefined) {
      const { setThreadsCount } = await import("../deps.ts").then((m) => m.tfWasm);
      setThreadsCount(options.threads);
    }
    await setBackend("wasm");
    registerWasmTrainingKernels();
  } else {
    await setBackend(target);
  }
  return tf.getBackend();
}

async function setBackend(name: string): Promise<void> {
  if (tf.getBackend() === name) return;
  const ok = await tf.setBackend(name);
  if (!ok) throw new UserError(`Cannot initialise the ${name} backend`);
  await tf.ready();
}
