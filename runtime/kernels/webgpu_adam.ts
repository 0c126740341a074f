/**
 * The fused Adam update (`MiSslAdam`, see `adam.ts`) for `@tensorflow/tfjs-backend-webgpu`: three
 * WGSL dispatches per variable (the new weights, first and second moments, each computed from
 * `w, g, m, v` in one pass) instead of the dozen element-wise kernels `Adam` composes otherwise
 * (`core/optimizer.ts`). tfjs's programs have one output each, so the three results are three
 * programs over the same inputs; the inputs and outputs are bound flat, so a variable of any
 * shape uses the same three pipelines.
 *
 * ```ts
 * import { registerWebgpuAdamKernel } from "./webgpu_adam.ts";
 * registerWebgpuAdamKernel(); // with kernels: custom, after tf.setBackend("webgpu")
 * ```
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernel } from "../tfjs_internals.ts";
import { ADAM_KERNEL } from "./adam.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";

type TensorInfo = tf.TensorInfo;

/** Which of Adam's three results a program writes. */
type AdamOutput = "w" | "m" | "v";

const WORKGROUP = 128;
/** WebGPU's guaranteed `maxComputeWorkgroupsPerDimension`. */
const MAX_GROUPS = 65535;

/** One of Adam's three results for every element of a flat float32 variable. */
class AdamProgram {
  readonly variableNames = ["weight", "grad", "moment1", "moment2"];
  readonly uniforms =
    "stepSize : f32, beta1 : f32, oneMinusBeta1 : f32, beta2 : f32, oneMinusBeta2 : f32, " +
    "epsilon : f32, c2 : f32, weightDecay : f32,";
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly size = true;
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [0] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;
  readonly #output: AdamOutput;

  constructor(n: number, output: AdamOutput) {
    this.outputShape = [n];
    this.#output = output;
    this.shaderKey = `miSslAdam_${output}`;
    // tfjs's `main(index)` flattens the workgroup id over x, y and z (bounds-checked below)
    const groups = Math.ceil(n / WORKGROUP);
    this.dispatch = groups <= MAX_GROUPS
      ? [groups, 1, 1]
      : [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS), 1];
  }

  getUserCode(): string {
    const result = {
      m: "m1",
      v: "v1",
      w: "weight[index] - (m1 / (sqrt(v1 / uniforms.c2) + uniforms.epsilon)) * uniforms.stepSize",
    }[this.#output];
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var gi = grad[index];
          if (uniforms.weightDecay > 0.0) {
            gi = gi + uniforms.weightDecay * weight[index];
          }
          let m1 = uniforms.beta1 * moment1[index] + uniforms.oneMinusBeta1 * gi;
          let v1 = uniforms.beta2 * moment2[index] + uniforms.oneMinusBeta2 * gi * gi;
          setOutputAtIndex(index, ${result});
        }
      }
    `;
  }
}

/**
 * One Adam update of a float32 variable on webgpu: inputs `w, g, m, v`, outputs `[w', m', v']`
 * (the interface of `adamKernel` in `adam.ts`), in three dispatches.
 */
export function adamKernelWebgpu(args: Parameters<tf.KernelFunc>[0]): TensorInfo[] {
  const { w, g, m, v } = args.inputs as Record<string, TensorInfo>;
  const { stepSize, beta1, beta2, epsilon, c2, weightDecay } = args.attrs as Record<
    string,
    number
  >;
  const backend = args.backend as unknown as WebgpuBackendLike;
  const n = w.shape.reduce((a, d) => a * d, 1);
  // bound flat: a view of the same data (nothing is copied or dispatched)
  const flat = (t: TensorInfo): TensorInfo => ({ dataId: t.dataId, shape: [n], dtype: t.dtype });
  const inputs = [w, g, m, v].map(flat);
  const uniforms = [stepSize, beta1, 1 - beta1, beta2, 1 - beta2, epsilon, c2, weightDecay].map(
    (x) => ({ type: "float32", data: [x] }),
  );
  return (["w", "m", "v"] as const).map((output) => {
    const out = backend.runWebGPUProgram(new AdamProgram(n, output), inputs, "float32", uniforms);
    // the program's output is this tensor's only owner: hand it back in the variable's shape
    return { dataId: out.dataId, shape: w.shape, dtype: out.dtype };
  });
}

/**
 * Register the fused Adam update for webgpu (idempotent). `initBackend` does with
 * `kernels: custom`; without it `Adam` (core/optimizer.ts) composes tfjs's kernels.
 */
export function registerWebgpuAdamKernel(): void {
  addKernel({
    kernelName: ADAM_KERNEL,
    backendName: "webgpu",
    kernelFunc: adamKernelWebgpu as unknown as tf.KernelFunc,
  });
}
