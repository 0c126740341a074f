/**
 * Lower-memory back-propagation for tfjs-core 4.22.
 *
 * tfjs's `Engine.gradients` keeps every tensor saved for the backward pass and every
 * intermediate gradient until the whole backward pass ends, so its peak memory is about the
 * forward pass's saved tensors plus the gradient of every intermediate tensor. This replacement
 * runs the same operations in the same order (so the results are identical) but frees a tape
 * node's saved tensors and the gradients of its outputs as soon as that node has been
 * back-propagated: nothing later on the tape can need them. Peak memory drops to about the
 * saved tensors alone; on the U-Net step it also keeps the 224x224 benchmark within the wasm
 * backend's 4 GiB heap.
 *
 * Nested (higher-order) gradients keep tfjs's behaviour.
 *
 * @module
 */
import { tf } from "../deps.ts";
import {
  type EngineInternals,
  kernelMode,
  replaceEngineGradients,
  type TapeNode,
} from "./tfjs_internals.ts";

/** tfjs's `getFilteredNodesXToY`: the tape nodes on a path from `xs` to `y`, inputs pruned. */
function filteredNodes(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const tensorsFromX: Record<number, boolean> = {};
  const nodesFromX: Record<number, boolean> = {};
  for (const x of xs) tensorsFromX[x.id] = true;
  for (const node of tape) {
    for (const name in node.inputs) {
      if (tensorsFromX[node.inputs[name].id]) {
        for (const o of node.outputs) tensorsFromX[o.id] = true;
        nodesFromX[node.id] = true;
        break;
      }
    }
  }
  const tensorsLeadToY: Record<number, boolean> = { [y.id]: true };
  const nodesToY: Record<number, boolean> = {};
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => tensorsLeadToY[o.id])) {
      for (const name in node.inputs) {
        tensorsLeadToY[node.inputs[name].id] = true;
        nodesToY[node.id] = true;
      }
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX[node.id] || !nodesToY[node.id]) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) {
      if (tensorsFromX[node.inputs[name].id]) inputs[name] = node.inputs[name];
    }
    out.push({ ...node, inputs, outputs: node.outputs });
  }
  return out;
}

/** tfjs's `backpropagateGradients`, freeing what a node no longer needs once it is done. */
function backpropagate(
  grads: Record<number, tf.Tensor>,
  tape: TapeNode[],
  tidy: (f: () => tf.Tensor) => tf.Tensor,
  free: { keep: Set<number>; userDy: tf.Tensor | null } | null,
): void {
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    const dys = node.outputs.map((o) => grads[o.id] ?? null);
    if (node.gradient == null) {
      throw new Error(
        `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
      );
    }
    const inputGradients = node.gradient(dys);
    for (const name in node.inputs) {
      if (!(name in inputGradients)) {
        throw new Error(
          `Cannot backprop through input ${name}. Available gradients found: ${
            Object.keys(inputGradients)
          }.`,
        );
      }
      const dx = tidy(() => inputGradients[name]());
      if (dx.dtype !== "float32") {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must ` +
            `have 'float32' dtype, but has '${dx.dtype}'`,
        );
      }
      const x = node.inputs[name];
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has ` +
            `shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
        );
      }
      const current = grads[x.id];
      if (current == null) {
        grads[x.id] = dx;
      } else {
        grads[x.id] = tf.add(current, dx);
        current.dispose();
      }
    }
    if (free === null) continue;
    // Done with this node: its saved tensors and its outputs' gradients are not needed again
    // (an output's consumers come later on the tape and were back-propagated already).
    for (const t of node.saved ?? []) t.dispose();
    const held = new Set(Object.values(node.inputs).map((x) => grads[x.id]));
    for (const o of node.outputs) {
      const g = grads[o.id];
      if (g == null || free.keep.has(o.id) || g === free.userDy || held.has(g)) continue;
      g.dispose();
      delete grads[o.id];
    }
  }
}

/**
 * Replace `tf.engine().gradients` (used by `tf.grad`, `tf.grads`, `tf.variableGrads`, ...) with
 * the lower-memory version, through `tfjs_internals.ts` (which restores tfjs's own for
 * `kernels: builtin`). Idempotent; returns false (warned once) where the engine's internals are
 * not what this was written for, and tfjs's own back-propagation stays.
 */
export function installLowMemoryGradients(): boolean {
  return replaceEngineGradients(lowMemoryGradients);
}

const lowMemoryGradients = function (
  this: EngineInternals,
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor | null,
  allowNoGradients = false,
) {
  tf.util.assert(xs.length > 0, () => "gradients() received an empty list of xs.");
  if (dy != null && dy.dtype !== "float32") {
    throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  }
  const y = this.scopedRun(
    () => this.startTape(),
    () => this.endTape(),
    () => this.tidy("forward", f),
  );
  tf.util.assert(y instanceof tf.Tensor, () => "The result y returned by f() must be a tensor.");
  const tape = filteredNodes(this.state.activeTape!, xs, y);
  if (!allowNoGradients && tape.length === 0 && xs.length > 0) {
    throw new Error(
      "Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed " +
        "encloses all operations that lead from x to y.",
    );
  }
  return this.tidy("backward", () => {
    const topLevel = this.state.gradientDepth === 0;
    const grads: Record<number, tf.Tensor> = {};
    grads[y.id] = dy == null ? tf.ones(y.shape) : dy;
    backpropagate(
      grads,
      tape,
      (g) => this.tidy(g),
      topLevel ? { keep: new Set([...xs.map((x) => x.id), y.id]), userDy: dy ?? null } : null,
    );
    const result = xs.map((x) => grads[x.id]);
    if (topLevel) {
      for (const node of this.state.activeTape!) {
        for (const t of node.saved ?? []) t.dispose();
      }
      this.state.activeTape = null;
    }
    return { value: y, grads: result } as unknown as tf.Tensor;
  });
} as EngineInternals["gradients"];

type GradFunc = NonNullable<ReturnType<typeof tf.getGradient>>["gradFunc"];
let builtinSumGrad: GradFunc | null = null;

/**
 * The gradient of `Sum` broadcasts `dy` back to the input's shape. tfjs's multiplies it by
 * `tf.ones(x.shape)`, an array of ones built in JavaScript and copied onto the backend: for the
 * warp's sum over its 4 bilinear corners (`[4, 65536, 4]` at the ACDC-CPU shape) that took ~2.4
 * ms of a 500 ms step. This one multiplies by `tf.fill(x.shape, 1)` (a fill on the backend),
 * the same values (`dy * 1` is `dy`). Idempotent; with `kernels: builtin` tfjs's own runs.
 */
export function installSumGradient(): void {
  const config = tf.getGradient("Sum");
  if (config === undefined || builtinSumGrad !== null) return;
  const builtin = config.gradFunc;
  builtinSumGrad = builtin;
  tf.registerGradient({
    ...config,
    gradFunc: (dy, saved, attrs) => {
      if (kernelMode() === "builtin" || Array.isArray(dy)) return builtin(dy, saved, attrs);
      const [x] = saved;
      const shape = x.shape.slice();
      for (const axis of tf.util.parseAxisParam((attrs as { axis: number[] }).axis, x.shape)) {
        shape[axis] = 1;
      }
      const derX = tf.mul(tf.reshape(dy, shape), tf.fill(x.shape, 1, "float32"));
      return { x: () => derX };
    },
  });
}

/** Whether the `Sum` gradient in use is {@linkcode installSumGradient}'s. */
export function sumGradientInstalled(): boolean {
  const config = tf.getGradient("Sum");
  return builtinSumGrad !== null && config !== undefined && config.gradFunc !== builtinSumGrad;
}
