/**
 * The softmax over the last axis and its one-program gradient (`softmax_fused.ts`'s kernels) on
 * webgpu, in WGSL: a thread per pixel, its `C` values in registers' reach (`C` is small: the
 * classes of a segmentation). Forward `y = exp(l - max) / sum`; backward
 * `dx = dy y - sum_c(dy y) y` (tfjs's formula, which composes it from 4 programs).
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import { addKernels } from "../tfjs_internals.ts";
import {
  registerSoftmaxFused,
  SOFTMAX_GRAD_KERNEL,
  SOFTMAX_KERNEL,
  softmaxLayout,
} from "./softmax_fused.ts";
import { flat, reshaped } from "./webgpu_reduce.ts";
import type { WebgpuBackendLike } from "./webgpu_training.ts";

type TensorInfo = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

const WORKGROUP = 128;

/** A thread per row of `C` values; `mode` picks the forward or the gradient. */
class SoftmaxRowsProgram {
  readonly variableNames: string[];
  readonly uniforms = "rows : i32, channels : i32,";
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly dispatchLayout = { x: [0] };
  readonly outputShape: number[];
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;

  constructor(rows: number, channels: number, readonly mode: "forward" | "grad") {
    this.outputShape = [rows * channels];
    // tfjs spreads more than 65,535 workgroups over y and z; the code flattens them back
    this.dispatch = [Math.ceil(rows / WORKGROUP), 1, 1];
    this.variableNames = mode === "forward" ? ["logits"] : ["dy", "y"];
    this.shaderKey = `miSslSoftmaxRows_${mode}`;
  }

  getUserCode(): string {
    const body = this.mode === "forward"
      ? `
          var mx = logits[at];
          for (var j = at + 1; j < end; j = j + 1) { mx = max(mx, logits[j]); }
          var s = 0.0;
          for (var j = at; j < end; j = j + 1) { s = s + exp(logits[j] - mx); }
          for (var j = at; j < end; j = j + 1) { result[j] = exp(logits[j] - mx) / s; }`
      : `
          var s = 0.0;
          for (var j = at; j < end; j = j + 1) { s = s + dy[j] * y[j]; }
          for (var j = at; j < end; j = j + 1) { result[j] = dy[j] * y[j] - s * y[j]; }`;
    return `
      fn main(unused : i32) {
        let row = i32((workgroupId.z * numWorkgroups.y + workgroupId.y) * numWorkgroups.x +
          workgroupId.x) * ${WORKGROUP} + i32(localIndex);
        if (row < uniforms.rows) {
          let at = row * uniforms.channels;
          let end = at + uniforms.channels;
          ${body}
        }
      }
    `;
  }
}

function runRows(args: KernelArgs, mode: "forward" | "grad", inputs: TensorInfo[]): TensorInfo {
  const name = mode === "forward" ? SOFTMAX_KERNEL : SOFTMAX_GRAD_KERNEL;
  const { rows, channels } = softmaxLayout(name, ...inputs);
  const backend = args.backend as unknown as WebgpuBackendLike;
  const out = backend.runWebGPUProgram(
    new SoftmaxRowsProgram(rows, channels, mode),
    inputs.map(flat),
    "float32",
    [{ type: "int32", data: [rows] }, { type: "int32", data: [channels] }],
  );
  return reshaped(out, inputs[0].shape);
}

/** Forward: `{logits}` to the probabilities, 1 program. */
export function softmaxWebgpu(args: KernelArgs): TensorInfo {
  const { logits } = args.inputs as Record<string, TensorInfo>;
  return runRows(args, "forward", [logits]);
}

/** Gradient: `{dy, y}` to `dlogits`, 1 program. */
export function softmaxGradWebgpu(args: KernelArgs): TensorInfo {
  const { dy, y } = args.inputs as Record<string, TensorInfo>;
  return runRows(args, "grad", [dy, y]);
}

/** Register both kernels for webgpu (idempotent), and the gradient (`softmax_fused.ts`). */
export function registerWebgpuSoftmax(): void {
  registerSoftmaxFused();
  addKernels("webgpu", {
    [SOFTMAX_KERNEL]: softmaxWebgpu,
    [SOFTMAX_GRAD_KERNEL]: softmaxGradWebgpu,
  });
}
