// deno-lint-ignore-file no-import-prefix -- this file is the one place that names packages.
/**
 * Every external dependency of the framework, with a full versioned `npm:` specifier.
 *
 * Programs that import `mod.ts` by URL do not see our import map, so nothing else in the
 * code base names a package directly: it imports from this file.
 *
 * @module
 */
/** TensorFlow.js core 4.22.0: the instance (engine, backends, kernels) the framework uses. */
export * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// tfjs-core registers neither its gradients nor its chained ops (`tensor.min()`) by itself. Its
// own modules that do cannot be loaded under Deno (extensionless imports), and the union package
// `@tensorflow/tfjs` that registers them would download ~250 MB of packages nothing here uses:
// runtime/tfjs_registrations.js is those modules bundled (runtime/tfjs_registrations_build.ts).
import "./runtime/tfjs_registrations.js";
// (the chained ops' types)
import type {} from "npm:@tensorflow/tfjs-core@4.22.0/dist/public/chained_ops/register_all_chained_ops.js";
export * as tfCpu from "npm:@tensorflow/tfjs-backend-cpu@4.22.0";
export * as tfWasm from "npm:@tensorflow/tfjs-backend-wasm@4.22.0";
export * as YAML from "npm:yaml@2.9.1";
export { z } from "npm:zod@3.25.76";
export type { ZodError, ZodIssue, ZodTypeAny } from "npm:zod@3.25.76";
export { Command, CommanderError, Option } from "npm:commander@12.1.0";
// Medical image formats (io/). nifti-reader-js parses NIfTI headers; fast-png decodes and
// encodes PNG slices. h5wasm instantiates its HDF5 WebAssembly module as soon as it is imported,
// so it is loaded on first use only, through this function.
export * as niftiReader from "npm:nifti-reader-js@0.8.0";
export { decode as decodePng, encode as encodePng } from "npm:fast-png@8.0.0";
/** The h5wasm module (HDF5 compiled to WebAssembly), imported on first call. */
export type H5wasm = typeof import("npm:h5wasm@0.10.3").default;
/** Import h5wasm on first use (importing it starts its WebAssembly module). */
export async function loadH5wasm(): Promise<H5wasm> {
  return (await import("npm:h5wasm@0.10.3")).default;
}
