/**
 * Plugin failures as one line: a plugin that throws, or returns what the trainer cannot use (a
 * loss that is not a scalar, or not finite on the first step; logits or data of the wrong
 * shape), ends the run with a {@linkcode PluginError} naming the plugin's id, its recipe entry
 * and what was expected, instead of a stack trace from inside tfjs. The CLI prints it alone and
 * exits with code 2, as for every {@linkcode UserError}.
 *
 * @module
 */
import type { tf } from "../deps.ts";
import { UserError } from "./errors.ts";

/** Kinds of plugins, as messages name them. */
export type PluginKind = "dataset" | "model" | "transform" | "loss" | "regularizer";

/** A plugin of a recipe: its kind, its id and the recipe entry it comes from. */
export interface PluginRef {
  /** Which registry it is in. */
  kind: PluginKind;
  /** Its id (`type` in the recipe). */
  id: string;
  /** Its recipe entry: `dataset`, `model`, `transform`, `supervised`, `regularizers[1]`. */
  entry: string;
}

/** A plugin threw, or returned what the trainer cannot use. */
export class PluginError extends UserError {
  /** The plugin at fault. */
  readonly plugin: PluginRef;
  /**
   * A failure of `plugin`: its message is `Regularizer plugin "x" (recipe entry
   * regularizers[1]): <what>`.
   *
   * @param plugin The plugin at fault.
   * @param what What went wrong and what was expected, e.g. `loss() returned a tensor of shape
   *   [2, 4]; expected a scalar (shape [])`.
   */
  constructor(plugin: PluginRef, what: string, options?: ErrorOptions) {
    super(`${describePlugin(plugin)}: ${what}`, options);
    this.name = "UserError";
    this.plugin = plugin;
  }
}

/** `Regularizer plugin "kl" (recipe entry regularizers[1])`. */
export function describePlugin(plugin: PluginRef): string {
  const kind = plugin.kind[0].toUpperCase() + plugin.kind.slice(1);
  return `${kind} plugin "${plugin.id}" (recipe entry ${plugin.entry})`;
}

/** The first line of what was thrown. */
function firstLine(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.split("\n")[0];
}

/** A call of a plugin's method, as a failure names it. */
export interface PluginCall {
  /** The method, e.g. `loss()`. */
  method: string;
  /** What it should have done, e.g. `a scalar loss`. */
  expected: string;
}

/**
 * The error to throw for `error`, thrown by `plugin`'s `call.method` (`loss()`, `create()`, ...):
 * a {@linkcode UserError} as it is (it says what to fix already), and a refused permission
 * (the CLI says how to grant it), anything else as a {@linkcode PluginError}.
 */
export function pluginFailure(
  plugin: PluginRef,
  call: PluginCall,
  error: unknown,
): Error {
  if (error instanceof UserError) return error;
  // A refused permission stays itself: the CLI answers it with how to grant it (--grant).
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return error;
  }
  return new PluginError(
    plugin,
    `${call.method} threw ${firstLine(error)}; expected ${call.expected}`,
    { cause: error },
  );
}

/** Call `fn`, a call of `plugin`'s `method`, turning what it throws into a plugin failure. */
export function callPlugin<T>(
  plugin: PluginRef,
  call: PluginCall,
  fn: () => T,
): T {
  try {
    return fn();
  } catch (error) {
    throw pluginFailure(plugin, call, error);
  }
}

/** {@linkcode callPlugin} for a method that returns a promise. */
export async function callPluginAsync<T>(
  plugin: PluginRef,
  call: PluginCall,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw pluginFailure(plugin, call, error);
  }
}

/** `[2, 32, 32, 4]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Check that a loss plugin's `method` returned a scalar tensor.
 *
 * @throws {PluginError} When it returned something else.
 */
export function checkScalarLoss(plugin: PluginRef, method: string, value: unknown): tf.Scalar {
  const t = value as tf.Tensor | undefined;
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape)) {
    throw new PluginError(
      plugin,
      `${method} returned ${t === undefined ? "undefined" : typeof t}; expected a scalar tensor`,
    );
  }
  if (t.rank !== 0) {
    throw new PluginError(
      plugin,
      `${method} returned a tensor of shape ${formatShape(t.shape)}; expected a scalar ` +
        `(shape []): reduce the loss to one number, e.g. with tf.mean`,
    );
  }
  return t as tf.Scalar;
}

/**
 * Check that a model plugin's `apply()` returned logits of `expected` shape.
 *
 * @throws {PluginError} When it returned another shape.
 */
export function checkLogits(plugin: PluginRef, logits: unknown, expected: number[]): tf.Tensor4D {
  const t = logits as tf.Tensor | undefined;
  const shape = t !== null && typeof t === "object" && Array.isArray(t.shape) ? t.shape : null;
  if (shape === null || shape.join(",") !== expected.join(",")) {
    throw new PluginError(
      plugin,
      `apply() returned ${shape ? `logits of shape ${formatShape(shape)}` : String(t)}; ` +
        `expected ${formatShape(expected)} (batch, height, width, classes)`,
    );
  }
  return t as tf.Tensor4D;
}
