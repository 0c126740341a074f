// deno-lint-ignore-file no-import-prefix -- this file is the one place that names packages.
/**
 * Every external dependency of the framework, with a full versioned `npm:` specifier.
 *
 * Programs that import `mod.ts` by URL do not see our import map, so nothing else in the
 * code base names a package directly: it imports from this file.
 *
 * @module
 */
export * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// tfjs-core registers no gradients by itself: the union package registers them (its node
// bundle holds them inline, while core's own `register_all_gradients` module cannot be loaded
// under Deno because of extensionless imports). We use its side effect only.
import "npm:@tensorflow/tfjs@4.22.0";
export * as tfCpu from "npm:@tensorflow/tfjs-backend-cpu@4.22.0";
export * as tfWasm from "npm:@tensorflow/tfjs-backend-wasm@4.22.0";
export * as YAML from "npm:yaml@2.9.1";
export { z } from "npm:zod@3.25.76";
export type { ZodError, ZodIssue, ZodTypeAny } from "npm:zod@3.25.76";
export { Command, CommanderError, Option } from "npm:commander@12.1.0";
